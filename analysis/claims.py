"""The paper's claims, decided from a results table: effect, paired 95% interval, verdict.

    python analysis/claims.py results.csv -o claims.md [--where COLUMN=VALUE ...]

Each claim quotes the paper (DVAR's claim, which the harness also tests, quotes Voronov et
al. 2023, arXiv 2302.04841) and is made of parts (analysis/verdicts.py): one setup
against a reference on one metric, or a rank correlation across setups. The rulebook,
which gives each part and then each claim its verdict, is analysis/rulebook.py (and
docs/analysis.md, "The claims"). A table that holds several comparable groups (objects
and styles, two evaluation protocols) gets one section per group, never pooled: the
object claims (§5 and the appendices measure objects) on object rows, §4.3's on style
rows. Inside a group, a part takes the Figure-10 grid (the group's most common guidance
and training-set size) unless it names the guidance or set size the paper speaks of.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from analysis import protocol, style  # noqa: E402
from analysis import rulebook as rb  # noqa: E402
from analysis.effects import format_effect  # noqa: E402
from analysis.table import (add_row_options, N_BOOT, SETUP_COLUMN, atomic_write_text, fail,  # noqa: E402
                            load_results, short_name, where)
from analysis.verdicts import (HIGH, LOW, MAX, OWN_SPAN, Arm, Group, Part, RankPart, Result, Rows,  # noqa: E402
                               decide_item)

REC, EDIT = "reconstruction_clip", "editability_clip_meanemb"
RISE, FALL, SAME, NO_GAIN = rb.RISE, rb.FALL, rb.COMPARABLE, rb.NO_GAIN
MULTI = ("two_word", "three_word", "progressive")                # the multi-word baselines
CAPTIONS = ("human_captions_short", "human_captions_long")
EXTENSIONS = ("two_word", "three_word", "progressive", "regularized", "per_image_tokens")  # §5.2's additions
LEARNED = ("single_word",) + EXTENSIONS + ("high_lr", "low_lr")   # §5.2's learned embeddings
BASELINES = LEARNED[1:] + CAPTIONS                                # Figure 10(a) besides ours and the references
RANKED = LEARNED + CAPTIONS + ("pivotal_tuning", "bipartite_inversion")   # every setup but the references
STEPS = "training.steps"
DVAR_PAPER = "Voronov et al. 2023, DVAR (arXiv 2302.04841)"


@dataclass(frozen=True)
class Claim:
    id: str
    text: str           # the claim, in the harness's words
    quote: str          # the paper's words
    section: str
    parts: tuple
    quantifier: str = rb.ALL
    paper: str = ""     # whose words the quote is: "" = Textual Inversion (Gal et al. 2022)
    paraphrase: bool = False   # the source's finding in our words (its text is not in shared/paper)


def _p(setup, metric, expect, reference="single_word", **kw):
    return Part(setup if isinstance(setup, Arm) else Arm(setup), metric, expect,
                reference if isinstance(reference, Arm) else Arm(reference), **kw)


def _each(setups, metric, expect, **kw):
    return tuple(_p(s, metric, expect, **kw) for s in setups)


def _dvar_claim(cid: str) -> Claim:
    """DVAR against the fixed budget: far fewer steps, the same reconstruction and editability."""
    return Claim(cid, "DVAR early stopping (single_word_dvar) stops far earlier than the fixed budget at the same "
                 "quality: fewer inversion steps, reconstruction and editability comparable",
                 "makes adaptation up to 8 times faster with no significant drops in quality", "Abstract",
                 (_p("single_word_dvar", STEPS, FALL), _p("single_word_dvar", REC, SAME),
                  _p("single_word_dvar", EDIT, SAME)), paper=DVAR_PAPER)


OBJECT_CLAIMS = (
    Claim("1", "Single-word reconstruction is comparable to sampling the training images (image-only)",
          "the semantic reconstruction quality of our method [...] is comparable to simply sampling random "
          "images from the training set", "§5.3, first observation",
          (_p("single_word", REC, SAME, "image_only"),)),
    Claim("2a", "Against every multi-word baseline, the single word reconstructs comparably and edits better",
          "the single-word method achieves comparable reconstruction quality, and considerably improved "
          "editability over all multi-word baselines", "§5.3, second observation",
          sum(((_p("single_word", REC, SAME, m), _p("single_word", EDIT, RISE, m)) for m in MULTI), ())),
    Claim("2b", "More pseudo-words move along the curve: more reconstruction, less editability",
          "embeddings that lie closer to the true word distribution (e.g. due to [...] fewer pseudo-words [...]) "
          "can be more easily modified, but fail to capture the details of the target",
          "§5.3, third observation", _each(MULTI, REC, RISE) + _each(MULTI, EDIT, FALL)),
    Claim("3", "The learning rate moves the single word along the curve (high: reconstruction; low: editability)",
          "our single-embedding model can be moved along this curve by simply changing the learning rate",
          "§5.3, third observation; Fig. 10(a) caption",
          (_p("high_lr", REC, RISE), _p("high_lr", EDIT, FALL), _p("low_lr", REC, FALL), _p("low_lr", EDIT, RISE))),
    Claim("4", "Regularization toward the coarse word trades detail for editability",
          "embeddings that lie closer to the true word distribution (e.g. due to regularization [...]) can be "
          "more easily modified, but fail to capture the details of the target",
          "§5.3, third observation; §5.2 Regularization",
          (_p("regularized", EDIT, RISE), _p("regularized", REC, FALL),
           _p("regularized", "embedding_dist_init", FALL, check=True))),
    Claim("5", "Human captions reconstruct the concept worse than the learned word",
          "the use of human descriptions for the concepts not only fails to capture their likeness",
          "§5.3, fourth observation",
          _each(CAPTIONS, REC, FALL) + _each(CAPTIONS, "reconstruction_oracle_unnamed", FALL)),
    Claim("6", "Human captions also diminish editability", "but also leads to diminished editability",
          "§5.3, fourth observation", _each(CAPTIONS, EDIT, FALL)),
    Claim("7", "No extension dominates the single word (better on both reconstruction and editability)",
          "these additional complexities fail to improve upon the initial representation", "§3; §5.2",
          tuple(Group(style.style(s).label, rb.ANY, (_p(s, REC, NO_GAIN), _p(s, EDIT, NO_GAIN))) for s in EXTENSIONS)),
    Claim("8", "Bipartite inversion loses the concept's structure under edits at high guidance, and follows "
          "the prompt poorly at low guidance",
          "when using LDM's typical guidance [...] scales (5-10), the denoiser network is unable to maintain the "
          "original object's structure through prompt changes. When reducing the guidance scale, the outline of "
          "the original image becomes visible. However, alignment with the prompt is poor.", "Appendix A",
          (_p(Arm("bipartite_inversion", HIGH), "identity_oracle_named", FALL, Arm("bipartite_inversion", LOW)),
           _p(Arm("bipartite_inversion", HIGH), EDIT, RISE, Arm("bipartite_inversion", LOW)))),
    Claim("9", "Pivotal tuning improves reconstruction and collapses editing at high guidance",
          "naïve applications of this approach lead to improved shape preservation, but also to a severe "
          "collapse of editing at high guidance scales", "Appendix A",
          (_p("pivotal_tuning", REC, RISE),
           _p(Arm("pivotal_tuning", HIGH), EDIT, FALL, Arm("single_word", HIGH)))),
    Claim("10", "The learned setups trace a distortion-editability curve: reconstruction and editability "
          "rank oppositely",
          "we observe that our baselines outline a distortion-editability trade-off curve",
          "§5.3, third observation; §1", (RankPart(LEARNED, REC, EDIT, FALL),)),
    Claim("11", "Many of the baselines reconstruct comparably to image-only",
          "the semantic reconstruction quality of our method and many of the baselines is comparable to simply "
          "sampling random images from the training set", "§5.3, first observation",
          _each(BASELINES, REC, SAME, reference="image_only"), rb.MANY),
    Claim("12", "Long captions edit worse than short ones",
          "By using long captions, we increase the chance of the model ignoring our desired setting",
          "§5.3, fourth observation", (_p("human_captions_long", EDIT, FALL, "human_captions_short"),)),
    Claim("13", "CLIP and the oracle rank the setups alike (the stand-in for the user study)",
          "demonstrate that the CLIP-based results align with human preference", "Fig. 10(b) caption; §5.4",
          (RankPart(RANKED, REC, "reconstruction_oracle", RISE), RankPart(RANKED, EDIT, "editability_oracle", RISE))),
    Claim("14", "More training images: farther from the initializer, less editable, paltry reconstruction gain",
          "Using additional images leads to optimized embeddings which reside farther away from real word "
          "embeddings, harming editability [...] offers paltry improvement in reconstruction",
          "Appendix B; Fig. 12 caption",
          (_p(Arm("single_word", n_images=MAX), "embedding_dist_init", RISE),
           _p(Arm("single_word", n_images=MAX), EDIT, FALL), _p(Arm("single_word", n_images=MAX), REC, NO_GAIN))),
    Claim("15", "Across guidance: bipartite reconstructs better than the single word; pivotal tuning follows "
          "prompts less at high guidance than at low",
          "Bipartite inversion allows for more accurate reconstructions without modifying the model [...] Pivotal "
          "tuning [...] fail to adhere to simple prompts at high guidance scales", "Fig. 11 caption",
          (_p("bipartite_inversion", REC, RISE),
           _p(Arm("pivotal_tuning", HIGH), EDIT, FALL, Arm("pivotal_tuning", LOW)))),
    _dvar_claim("16"),
)
STYLE_CLAIMS = (
    Claim("S1", "A learned word captures a style: the style's images are reconstructed better than without it",
          "our model can also find pseudo-words representing a specific, unknown style", "§4.3",
          (_p("single_word", REC, RISE, "prompt_only"),
           _p("single_word", "reconstruction_oracle", RISE, "prompt_only"))),
    _dvar_claim("S2"),
)
# The paper's successors (issue 21) on the same protocol: each source's own claim against
# textual inversion. On the toy world the orderings are decided, not the sources' numbers.
NETI_TRUNCATED = "neti@most"    # the most truncated NeTI rows in the table (claims_for names it)
SUCCESSOR_CLAIMS = (
    Claim("X1", "P+ (a word per cross-attention layer) reconstructs better than the single word, with no loss "
          "of editability beyond d",
          "the extended space P+ is more expressive and precise than the textual-inversion space, and its "
          "per-layer words stay editable", "Abstract; §5",
          (_p("xti", REC, RISE), _p("single_word", EDIT, NO_GAIN, "xti")),
          paper="Voynov et al. 2023, P+ (arXiv 2303.09522)", paraphrase=True),
    Claim("X2", "Less truncation moves NeTI along the curve: more reconstruction, less editability",
          "nested dropout orders the network's output by importance, so truncating it at inference trades "
          "reconstruction for editability", "Abstract; §4.3",
          (_p("neti", REC, RISE, NETI_TRUNCATED), _p("neti", EDIT, FALL, NETI_TRUNCATED)),
          paper="Alaluf et al. 2023, NeTI (arXiv 2305.15391)", paraphrase=True),
    Claim("X3", "DreamBooth (trained as a LoRA) beats textual inversion on DINO, CLIP-I and CLIP-T",
          "Textual Inversion 0.569 / 0.780 / 0.255, DreamBooth (Stable Diffusion) 0.668 / 0.803 / 0.305 "
          "(DINO / CLIP-I / CLIP-T)", "Table 1",
          (_p("dreambooth_lora", "dreambench_dino", RISE, optional=True),
           _p("dreambooth_lora", "dreambench_clip_i", RISE), _p("dreambooth_lora", "dreambench_clip_t", RISE)),
          paper="Ruiz et al. 2023, DreamBooth"),
    Claim("X4", "Custom Diffusion follows the text better than textual inversion at comparable image alignment",
          "text-alignment 0.7602 vs 0.6126, image-alignment 0.7440 vs 0.7524 (Custom Diffusion vs Textual "
          "Inversion)", "Table, the CustomConcept101 benchmark",
          (_p("custom_diffusion", "dreambench_clip_t_clipscore", RISE),
           _p("custom_diffusion", "dreambench_clip_i_clipscore", SAME)),
          paper="Kumari et al. 2023, Custom Diffusion"),
)
CLAIMS = OBJECT_CLAIMS + STYLE_CLAIMS + SUCCESSOR_CLAIMS


@dataclass
class Decided:
    claim: Claim
    verdict: str
    results: list


def claims_for(df: pd.DataFrame) -> tuple:
    """The claims of one comparable group: §4.3's on styles, the paper's on objects, and the
    successors' where the table has a successor's rows."""
    kinds = set(df[protocol.CONCEPT_KIND].dropna()) if protocol.CONCEPT_KIND in df.columns else set()
    own = STYLE_CLAIMS if kinds == {"style"} else OBJECT_CLAIMS
    setups = set(df[SETUP_COLUMN])
    if not setups & set(style.SUCCESSORS):
        return own
    return own + tuple(_truncation_named(c, setups) for c in SUCCESSOR_CLAIMS)


def _truncation_named(claim: Claim, setups: set) -> Claim:
    """NeTI's claim against the most truncated NeTI rows there are (analysis/table.py names
    them neti@N); without any, the part says its rows are missing."""
    cut = sorted((s for s in setups if s.startswith("neti@")), key=lambda s: int(s.partition("@")[2]))
    if not cut:
        return claim
    parts = tuple(replace(p, reference=Arm(cut[0])) if p.reference.setup == NETI_TRUNCATED else p
                  for p in claim.parts)
    return replace(claim, parts=parts)


def chosen(claims, ids) -> tuple:
    """The claims whose id is in `ids` or starts with one of them ("X": the successors')."""
    return tuple(c for c in claims if not ids or any(c.id == i or c.id.startswith(i) for i in ids))


def decide(df: pd.DataFrame, claims=None, n_boot: int = N_BOOT) -> list[Decided]:
    """Every claim of one comparable group (the claims for its concept kind by default).
    Refuses rows of different protocols; guidance and set size may vary (their claims)."""
    protocol.require_comparable(df, ignore=protocol.SWEPT)
    rows = Rows(df)
    out = []
    for c in claims if claims is not None else claims_for(df):
        results = [decide_item(rows, p, n_boot) for p in c.parts]
        judged = [r.verdict for r in results if not getattr(r.item, "check", False)
                  and not (getattr(r.item, "optional", False) and r.verdict == rb.NOT_DECIDABLE)]
        out.append(Decided(c, rb.claim_verdict(judged, c.quantifier), results))
    return out


EXPECT_MARK = {RISE: "↑", FALL: "↓", SAME: "≈", NO_GAIN: "no gain"}
VERDICT_MARK = {rb.HOLDS: "✅ holds", rb.SMALL: "✅ holds (small)", rb.NOT_DECIDABLE: "⬜ not decidable here",
                rb.UNDECIDED: "❔ undecided", rb.NEGLIGIBLE: "➖ negligible", rb.CONTRADICTED: "❌ contradicted"}


def _arm_text(setup, g, n, main_g, main_n) -> str:
    at = ([f"s={g:g}"] if g is not None and g != main_g else []) + \
         ([f"{n:g} images"] if n is not None and n != main_n else [])
    return style.style(setup).label + (f" ({', '.join(at)})" if at else "")


def _wanted(arm: Arm) -> str:
    """An arm the rows could not supply, as the paper names it."""
    at = ([f"{arm.guidance} guidance"] if arm.guidance != "main" else []) + \
         (["most training images"] if arm.n_images != "main" else [])
    return style.style(arm.setup).label + (f" ({', '.join(at)})" if at else "")


def result_text(r: Result, rows: Rows | None = None) -> str:
    """One part as a line: what is compared, the effect and interval, the verdict."""
    item = r.item
    if isinstance(item, Group):
        inner = "; ".join(result_text(k, rows) for k in r.children)
        return f"{item.label}, {item.quantifier} of: {inner} ⇒ {r.verdict}"
    if isinstance(item, RankPart):
        n = len(r.arms) or len(item.setups)
        what = (f"rank correlation of {short_name(item.x)} and {short_name(item.y)} across {n} setups, "
                f"expect {'> 0' if item.expect == RISE else '< 0'}")
    else:
        g0, n0 = (rows.g_main, rows.n_main) if rows else (None, None)
        a, b = (_arm_text(*x, g0, n0) for x in r.arms) if r.arms else (_wanted(item.setup), _wanted(item.reference))
        what = f"{a} vs {b}, {short_name(item.metric)}, " \
               f"expect {EXPECT_MARK[item.expect]}"
        if item.check:
            return f"mechanism check, not in the verdict: {what}: {format_effect(r.effect, r.lo, r.hi)}"
    effect = f": {format_effect(r.effect, r.lo, r.hi)}" if r.n_concepts else ""
    if r.reason:
        left_out = " (optional: not in the verdict)" if getattr(item, "optional", False) else ""
        return f"{what}{effect} → {r.verdict}{left_out}: {r.reason}"
    return f"{what}{effect} → {r.verdict}"


def _metrics(items) -> list[str]:
    out = []
    for it in items:
        if isinstance(it, Group):
            out += _metrics(it.parts)
        elif isinstance(it, Part):
            out.append(it.metric)
        elif isinstance(it, RankPart):
            out += [it.x, it.y]
    return list(dict.fromkeys(out))


def _cell(text: str) -> str:
    """Markdown table cell: a literal | (||v - v_init||, |image-only − prompt-only|) is escaped."""
    return text.replace("|", "\\|")


def d_table(rows: Rows, claims) -> list[str]:
    lines = ["| metric | span | d = " + f"{rb.FRACTION:g} × span |", "| --- | --- | --- |"]
    for m in _metrics(p for c in claims for p in c.parts):
        how = OWN_SPAN.get(m, "|image-only − prompt-only|")
        span = rows.span(m)
        lines.append(f"| {_cell(short_name(m))} | {_cell(how)} = {span:.3f} | {rows.d(m):.3f} |" if span == span else
                     f"| {_cell(short_name(m))} | {_cell(how)}: rows missing | not set (its parts: not decidable) |")
    if any(isinstance(p, RankPart) for c in claims for p in c.parts):
        lines.append(f"| rank correlation | its range, −1 to +1 = {rb.CORRELATION_SPAN:g} | "
                     f"{rb.smallest_effect(rb.CORRELATION_SPAN):.3f} |")
    return lines


def totals(verdicts) -> str:
    n = Counter(verdicts)
    return ", ".join(f"{n[v]} {v}" for v in rb.STRENGTH)


def section(values: dict, df: pd.DataFrame, n_boot: int, ids=()) -> tuple[list[str], list[str]]:
    """A comparable group's markdown, and its claims' verdicts (none: a line saying so)."""
    picked = chosen(claims_for(df), ids)
    if not picked:
        return [f"## {protocol.title(values, df)}", "", f"No claim of --claims {' '.join(ids)} applies here.", ""], []
    decided = decide(df, picked, n_boot=n_boot)
    rows = Rows(df)
    at = ", ".join(x for x in (f"guidance {rows.g_main:g}" if rows.g_main is not None else "",
                               f"{rows.n_main:g} training images" if rows.n_main is not None else "") if x)
    lines = [f"## {protocol.title(values, df)}", "",
             f"Grid rows: {at or 'all'}; a part that names another guidance or set size says so. "
             "Smallest effect of interest d per metric, on the grid rows:", "",
             *d_table(rows, [x.claim for x in decided]), "",
             "| # | claim | the paper | parts: effect [95% interval] → part verdict | verdict |",
             "| --- | --- | --- | --- | --- |"]
    for x in decided:
        c = x.claim
        cells = "<br>".join(_cell(result_text(r, rows)) for r in x.results)
        quant = " (many: at least half the parts)" if c.quantifier == rb.MANY else ""
        where = f"{c.paper}, {c.section}" if c.paper else c.section
        said = f"{_cell(c.quote)} (paraphrased)" if c.paraphrase else f"“{_cell(c.quote)}”"
        lines.append(f"| {c.id} | {_cell(c.text)}{quant} | {said} ({where}) | {cells} | "
                     f"{VERDICT_MARK[x.verdict]} |")
    verdicts = [x.verdict for x in decided]
    lines += ["", f"Totals: {totals(verdicts)}.", ""]
    return lines, verdicts


def rows_origin(csv: str | Path) -> str:
    """What made a table's rows, from collect.py's sidecar `<table>.jobs.json`: the commits
    the rows were computed at and the sweeps' command lines ("" without a sidecar)."""
    side = Path(csv).with_name(Path(csv).stem + ".jobs.json")
    try:
        info = json.loads(side.read_text())
    except (OSError, ValueError):
        return ""
    shas = ", ".join(f"{(c['sha'] or 'no git')[:7]}{' (dirty)' if c['dirty'] else ''}: {c['rows']} rows"
                     for c in info.get("commits", []))
    cmds = "; ".join(f"`{c['command']}`" for c in info.get("commands", []))
    if not shas and not cmds:
        return ""
    return (f"Its rows ({side.name}): computed at commit {shas or 'unrecorded'}; "
            f"by {cmds or 'an unrecorded command'}.")


def to_markdown(df: pd.DataFrame, source: str = "", command: str = "", n_boot: int = N_BOOT, ids=(),
                origin: str = "") -> str:
    groups = protocol.comparable_groups(df, ignore=protocol.SWEPT)
    lines = [f"# The paper's claims{' in ' + source if source else ''}", ""]
    if command:
        lines += [f"Made by `{command}`.", ""]
    if origin:
        lines += [origin, ""]
    lines += ["Effect: setup − reference, mean over the concepts both have; interval: paired 95% two-level "
              "bootstrap (concepts, then samples; analysis/effects.py); a rank correlation's interval redraws "
              "concepts. ↑/↓: predicted rise/fall; ≈: comparable; no gain: not better. The rulebook "
              "(analysis/rulebook.py; docs/analysis.md, \"The claims\"): d = "
              f"{rb.FRACTION:g} × |image-only − prompt-only| per metric; a rise holds if lo > 0 (small if hi < d), "
              "else is negligible if −d < lo and hi < d, else contradicted if hi < 0 (a fall mirrors it); "
              "comparable holds inside (−d, d); "
              "no gain holds if hi < d, is contradicted if lo > d; a part is not decidable here at the metric's "
              "ceiling or floor or with rows missing. A claim takes its weakest part's verdict (\"many\": the "
              "verdict at least half its parts reach), in the order " + " > ".join(rb.STRENGTH) + ".", ""]
    if len(groups) > 1:
        lines += [f"The rows hold {len(groups)} protocols that are not comparable; each has its own section.", ""]
    everything = []
    for values, rows in groups:
        sec, verdicts = section(values, rows, n_boot, ids)
        lines += sec
        everything += verdicts
    if len(groups) > 1:
        lines += [f"All sections: {totals(everything)}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Decide the paper's claims from a results table.")
    ap.add_argument("csv", help="results table from analysis/collect.py")
    ap.add_argument("-o", "--out", required=True, help="markdown file to write")
    ap.add_argument("--claims", nargs="+", default=[], metavar="ID",
                    help="only these claims (an id or its start: X = the successors' X1-X4)")
    add_row_options(ap)
    args = ap.parse_args(argv)
    command = " ".join(["python analysis/claims.py", args.csv] + (["--where", *args.where] if args.where else [])
                       + (["--claims", *args.claims] if args.claims else []) + ["-o", args.out])
    try:
        df = where(load_results(args.csv), args.where)
        if df.empty:
            raise ValueError(f"no ok rows in {args.csv} match {args.where}")
        known = {c.id for c in CLAIMS}
        unknown = [i for i in args.claims if not any(k == i or k.startswith(i) for k in known)]
        if unknown:
            raise ValueError(f"--claims {' '.join(unknown)}: no such claim (ids: {', '.join(sorted(known))})")
        text = to_markdown(df, Path(args.csv).name, command, args.n_boot, args.claims, rows_origin(args.csv))
    except (FileNotFoundError, ValueError) as e:
        return fail(e)
    atomic_write_text(Path(args.out), text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
