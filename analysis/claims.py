"""The paper's claims, decided from a results table: effect, paired 95% interval, verdict.

    python analysis/claims.py results.csv -o claims.md [--where COLUMN=VALUE ...]

Each claim quotes the paper (DVAR's claim, which the harness also tests, quotes Voronov et
al. 2023, arXiv 2302.04841; the successors' claims quote their sources) and is made of
parts (analysis/verdicts.py): one setup against a reference on one metric, a difference of
two setups' guidance effects, or a rank correlation across setups. The rulebook, which
gives each part and then each claim its verdict, is analysis/rulebook.py (and
docs/analysis.md, "The claims"); claims.md prints its table, each part's n, and each
claim's verdict at half and double d (the sensitivity table). A table that holds several
comparable groups (objects and styles, two evaluation protocols) gets one section per
group, never pooled: the object claims (§5 and the appendices measure objects) on object
rows, §4.3's on style rows. Inside a group, a part takes the Figure-10 grid (the group's
most common guidance and training-set size) unless it names the guidance or set size the
paper speaks of. A claim the toy world was built to make true is a positive control there
(its own table), not evidence.
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
from analysis.verdicts import (D_LIKE, HIGH, LOW, MAX, OWN_SPAN, Arm, DiffPart, Group, Part, RankPart,  # noqa: E402
                               Result, Rows, decide_item, verdict_at)

REC, EDIT = "reconstruction_clip", "editability_clip_meanemb"
REC_HELDOUT = "reconstruction_clip_heldout"   # against one fixed held-out image set per concept
RISE, FALL, SAME, NO_GAIN, NO_LOSS = rb.RISE, rb.FALL, rb.COMPARABLE, rb.NO_GAIN, rb.NO_LOSS
MULTI = ("two_word", "three_word", "progressive")                # the multi-word baselines
CAPTIONS = ("human_captions_short", "human_captions_long")
EXTENSIONS = ("two_word", "three_word", "progressive", "regularized", "per_image_tokens")  # §5.2's additions
LEARNED = ("single_word",) + EXTENSIONS + ("high_lr", "low_lr")   # §5.2's learned embeddings
BASELINES = LEARNED[1:] + CAPTIONS                                # Figure 10(a) besides ours and the references
RANKED = LEARNED + CAPTIONS + ("pivotal_tuning", "bipartite_inversion")   # every setup but the references
STEPS = "training.steps"
STEPS_TO_REFERENCE = "training.steps_to_reference_loss"   # P+'s step at the single word's final fixed-batch loss
DVAR_PAPER = "Voronov et al. 2023, DVAR (arXiv 2302.04841)"
HELDOUT_HINT = ("rows from `python run.py -m +experiment=setsize`, which score reconstruction against one fixed "
                "held-out image set per concept (a folder concept's needs concept.heldout_path)")
STEPS_HINT = "the inversion's step at the single word's final fixed-batch loss (a row column still to come)"
# docs/toyworld.md, "Gates": what the toy world was built to make true. On its rows these
# claims are positive controls (the instrument finds what was put there), not evidence.
CONTROL_CAPTIONS = ("built in: no caption can name the unnamed attributes (accent, outline; captions.py), and the "
                    "single word beating the long captions on them was a pretraining gate (docs/toyworld.md, Gates)")
CONTROL_STYLE = ("built in: one input vector draws each style (the style stage's existence gate) and the default "
                 "single word beating prompt-only was its inversion gate (docs/toyworld.md, ToyWorld 3)")


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
    metrics: str = ""   # how the source defines the metrics its numbers are on (successors)
    control: str = ""   # why the toy world makes it true by construction ("" = evidence)
    port: object = None  # f(rows) -> what the toy port lacks of the source's method ("" = nothing)


def _p(setup, metric, expect, reference="single_word", **kw):
    return Part(setup if isinstance(setup, Arm) else Arm(setup), metric, expect,
                reference if isinstance(reference, Arm) else Arm(reference), **kw)


def _each(setups, metric, expect, **kw):
    return tuple(_p(s, metric, expect, **kw) for s in setups)


def _dvar_claim(cid: str) -> Claim:
    """DVAR against the fixed budget: far fewer steps, the same reconstruction and editability,
    on CLIP and on the oracle (where the rows have it)."""
    return Claim(cid, "DVAR early stopping (single_word_dvar) stops far earlier than the fixed budget at the same "
                 "quality: fewer inversion steps, reconstruction and editability comparable (CLIP and oracle)",
                 "makes adaptation up to 8 times faster with no significant drops in quality", "Abstract",
                 (_p("single_word_dvar", STEPS, FALL), _p("single_word_dvar", REC, SAME),
                  _p("single_word_dvar", EDIT, SAME),
                  _p("single_word_dvar", "reconstruction_oracle", SAME, optional=True),
                  _p("single_word_dvar", "editability_oracle", SAME, optional=True)), paper=DVAR_PAPER)


def _rate(setup, rec, edit) -> Group:
    return Group(style.style(setup).label, rb.ALL, (_p(setup, REC, rec), _p(setup, EDIT, edit)))


OBJECT_CLAIMS = (
    Claim("1", "Single-word reconstruction is comparable to sampling the training images (image-only)",
          "the semantic reconstruction quality of our method [...] is comparable to simply sampling random "
          "images from the training set", "§5.3, first observation",
          (_p("single_word", REC, SAME, "image_only"),)),
    Claim("2a", "Against every multi-word baseline, the single word reconstructs comparably and edits "
          "considerably better (beyond d)",
          "the single-word method achieves comparable reconstruction quality, and considerably improved "
          "editability over all multi-word baselines", "§5.3, second observation",
          sum(((_p("single_word", REC, SAME, m), _p("single_word", EDIT, RISE, m, size=rb.LARGE)) for m in MULTI), ())),
    Claim("2b", "More pseudo-words move along the curve: more reconstruction, less editability",
          "embeddings that lie closer to the true word distribution (e.g. due to [...] fewer pseudo-words [...]) "
          "can be more easily modified, but fail to capture the details of the target",
          "§5.3, third observation", _each(MULTI, REC, RISE) + _each(MULTI, EDIT, FALL)),
    Claim("3", "Changing the learning rate moves the single word along the curve: one rate (high: more "
          "reconstruction, less editability; or low: the opposite) moves it on both axes (the other rate shown)",
          "our single-embedding model can be moved along this curve by simply changing the learning rate",
          "§5.3, third observation; Fig. 10(a) caption",
          (_rate("high_lr", RISE, FALL), _rate("low_lr", FALL, RISE)), rb.ANY),
    Claim("4", "Regularization toward the coarse word trades detail for editability",
          "embeddings that lie closer to the true word distribution (e.g. due to regularization [...]) can be "
          "more easily modified, but fail to capture the details of the target",
          "§5.3, third observation; §5.2 Regularization",
          (_p("regularized", EDIT, RISE), _p("regularized", REC, FALL),
           _p("regularized", "embedding_dist_init", FALL, check=True))),
    Claim("5", "Human captions reconstruct the concept worse than the learned word",
          "the use of human descriptions for the concepts not only fails to capture their likeness",
          "§5.3, fourth observation",
          _each(CAPTIONS, REC, FALL) + _each(CAPTIONS, "reconstruction_oracle_unnamed", FALL),
          control=CONTROL_CAPTIONS),
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
    Claim("9", "Pivotal tuning improves reconstruction, and its editing collapses severely (beyond d) at high "
          "guidance: against the single word there, and more than the single word's own editing falls with guidance",
          "naïve applications of this approach lead to improved shape preservation, but also to a severe "
          "collapse of editing at high guidance scales", "Appendix A",
          (_p("pivotal_tuning", REC, RISE),
           _p(Arm("pivotal_tuning", HIGH), EDIT, FALL, Arm("single_word", HIGH), size=rb.LARGE),
           DiffPart("pivotal_tuning", EDIT, FALL, size=rb.LARGE))),
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
    Claim("13", "CLIP and the ground truth (the toy world's oracle; people in the paper) rank the setups alike",
          "demonstrate that the CLIP-based results align with human preference", "Fig. 10(b) caption; §5.4",
          (RankPart(RANKED, REC, "reconstruction_oracle", RISE), RankPart(RANKED, EDIT, "editability_oracle", RISE))),
    Claim("14", "Over every larger training set (at least twice the grid's): farther from the initializer, less "
          "editable, a paltry (inside d) reconstruction gain on held-out images",
          "Significant increases to dataset sizes leads to larger deviation from the real-word distribution. This "
          "impacts editability and offers paltry improvement in reconstruction", "Fig. 12 caption; Appendix B",
          (_p(Arm("single_word", n_images=MAX), "embedding_dist_init", RISE),
           _p(Arm("single_word", n_images=MAX), EDIT, FALL),
           _p(Arm("single_word", n_images=MAX), REC_HELDOUT, RISE, size=rb.PALTRY, hint=HELDOUT_HINT))),
    Claim("14b", "About 5 images is best: no other set size beats the grid's on both held-out reconstruction "
          "and editability",
          "Our approach shows the best results with ~ 5 images", "Fig. 12 caption; Appendix B",
          (Group("another set size", rb.ANY, (_p(Arm("single_word", n_images=MAX), REC_HELDOUT, NO_GAIN, hint=HELDOUT_HINT),
                                              _p(Arm("single_word", n_images=MAX), EDIT, NO_GAIN))),)),
    Claim("15", "Across guidance: bipartite reconstructs better than the single word; pivotal tuning follows "
          "prompts less at high guidance than at low, and loses more with guidance than the single word does",
          "Bipartite inversion allows for more accurate reconstructions without modifying the model [...] Pivotal "
          "tuning [...] fail to adhere to simple prompts at high guidance scales", "Fig. 11 caption",
          (_p("bipartite_inversion", REC, RISE),
           _p(Arm("pivotal_tuning", HIGH), EDIT, FALL, Arm("pivotal_tuning", LOW)),
           DiffPart("pivotal_tuning", EDIT, FALL))),
    _dvar_claim("16"),
    Claim("17", "Distance to the word distribution sets the trade-off: across the learned setups, the farther "
          "from the initializer, the better the reconstruction and the worse the editability",
          "embeddings that lie closer to the true word distribution [...] can be more easily modified, but fail to "
          "capture the details of the target. In contrast, deviating far from the word distribution enables "
          "improved reconstruction at the cost of severely diminished editing capabilities",
          "§5.3, third observation",
          (RankPart(LEARNED, "embedding_dist_init", REC, RISE), RankPart(LEARNED, "embedding_dist_init", EDIT, FALL))),
    Claim("18", "Some extension is actively harmful: the single word dominates it (no gain on either axis, "
          "worse on one)",
          "applying the prior art in a naïve way is either unhelpful or actively harmful", "§1",
          tuple(Group(style.style(s).label, rb.ALL,
                      (_p(s, REC, NO_GAIN), _p(s, EDIT, NO_GAIN),
                       Group("worse on one", rb.ANY, (_p(s, REC, FALL), _p(s, EDIT, FALL)))))
                for s in EXTENSIONS), rb.ANY),
    Claim("19", "Bipartite inversion's structure is lost for complex prompts at high guidance: under edits that "
          "ask three or more changes it keeps less identity at the highest guidance than at the lowest (one-change "
          "edits shown beside)",
          "their structure is lost for complex prompts in high guidance scales", "Fig. 11 caption; Appendix A",
          (_p(Arm("bipartite_inversion", HIGH), "identity_oracle_d3", FALL, Arm("bipartite_inversion", LOW)),
           _p(Arm("bipartite_inversion", HIGH), "identity_oracle_d1", FALL, Arm("bipartite_inversion", LOW),
              check=True))),
)
STYLE_CLAIMS = (
    Claim("S1", "A learned word captures a style: the style's images are reconstructed better than without it",
          "our model can also find pseudo-words representing a specific, unknown style", "§4.3",
          (_p("single_word", REC, RISE, "prompt_only"),
           _p("single_word", "reconstruction_oracle", RISE, "prompt_only")), control=CONTROL_STYLE),
    _dvar_claim("S2"),
)


def _on(df: pd.DataFrame, setup: str, col: str) -> bool:
    """Did `setup`'s rows run with the flag `col` on (False when the rows do not say)?"""
    return col in df.columns and df.loc[df[SETUP_COLUMN] == setup, col].astype(str).str.lower() \
        .isin(("true", "1", "1.0")).any()


PRIOR = "method.inversion.prior_preservation"


def _dreambooth_port(df: pd.DataFrame) -> str:
    miss = ["a rank-4 LoRA on the UNet's attention, not the whole UNet fine-tuned (method=dreambooth runs that)"]
    if not (_on(df, "dreambooth_lora", PRIOR) or _on(df, "dreambooth_lora", "method.inversion.learner_args.prior_preservation")):
        miss.append("no class-specific prior preservation loss")
    return "; ".join(miss)


def _dreambooth_whole_port(df: pd.DataFrame) -> str:
    if not _on(df, "dreambooth", PRIOR):
        return "no class-specific prior preservation loss"
    return ""


def _neti_port(df: pd.DataFrame) -> str:
    if _on(df, "neti", "method.inversion.learner_args.output_bypass"):
        return ""
    return ("no textual bypass (the authors' default output_bypass, which their abstract credits with the gain in "
            "convergence and visual fidelity)")


def _custom_diffusion_port(df: pd.DataFrame) -> str:
    if not _on(df, "custom_diffusion", PRIOR):
        return "no prior preservation"
    return "its prior preservation draws the model's own class samples, not retrieved real images (the authors' --real_prior)"


def _dreambooth_claim(cid: str, who: str, setup: str, port) -> Claim:
    """DreamBooth's Table 1 claim, decided on the rows of `setup`."""
    return Claim(cid, f"{who} beats textual inversion on DINO, CLIP-I and CLIP-T",
                 "Textual Inversion 0.569 / 0.780 / 0.255, DreamBooth (Stable Diffusion) 0.668 / 0.803 / 0.305 "
                 "(DINO / CLIP-I / CLIP-T)", "Table 1",
                 (_p(setup, "dreambench_dino", RISE, optional=True),
                  _p(setup, "dreambench_clip_i", RISE), _p(setup, "dreambench_clip_t", RISE)),
                 paper="Ruiz et al. 2023, DreamBooth",
                 metrics="DINO: mean pairwise cosine of ViT-S/16 DINO embeddings, generated vs real images; CLIP-I: "
                         "the same with CLIP image embeddings; CLIP-T: mean cosine of prompt and image CLIP embeddings "
                         "(plain cosines; the toy world's DINO is its CLIP tower, docs/harness.md)",
                 port=port)


# The paper's successors (issue 21) on the same protocol: each source's own claim against
# textual inversion, in its words, on its metrics' definitions. On the toy world the
# orderings are decided, not the sources' numbers.
NETI_TRUNCATED = "neti@most"    # the most truncated NeTI rows in the table (claims_for names it)
SUCCESSOR_CLAIMS = (
    Claim("X1", "P+ (a word per cross-attention layer) reconstructs better than the single word, loses no "
          "editability beyond d, and converges faster (reaches the single word's final fixed-batch loss in fewer "
          "steps than the single word's budget)",
          "We show that XTI is more expressive and precise, and converges faster than the original Textual "
          "Inversion (TI) space. The extended inversion method does not involve any noticeable trade-off between "
          "reconstruction and editability", "Abstract",
          (_p("xti", REC, RISE), _p("xti", EDIT, NO_LOSS),
           _p("xti", STEPS_TO_REFERENCE, FALL, reference_metric=STEPS, hint=STEPS_HINT)),
          paper="Voynov et al. 2023, P+ (arXiv 2303.09522)",
          metrics="P+ scores as Textual Inversion does: reconstruction as CLIP image-image similarity to the "
                  "concept's images, editability as CLIP image-text similarity to the prompt without the word; "
                  "convergence as the optimization's progress per step",
          port=lambda df: ""),
    Claim("X2", "NeTI reconstructs better than the single word at no loss of editability beyond d, and its "
          "nested-dropout truncation moves it along the curve (untruncated: more reconstruction, less editability)",
          "A key aspect of text-to-image personalization methods is the manner in which the target concept is "
          "represented [...] resulting in a compact, yet expressive, representation [...] providing users control "
          "over the reconstruction and editability of the learned concept using a single trained model",
          "Abstract",
          (_p("neti", REC, RISE), _p("neti", EDIT, NO_LOSS),
           _p("neti", REC, RISE, NETI_TRUNCATED), _p("neti", EDIT, FALL, NETI_TRUNCATED)),
          paper="Alaluf et al. 2023, NeTI (arXiv 2305.15391)",
          metrics="NeTI scores as Textual Inversion does: CLIP image similarity to the concept's images "
                  "(reconstruction) and CLIP text similarity to the prompt (editability)",
          port=_neti_port),
    _dreambooth_claim("X3", "DreamBooth (trained as a LoRA)", "dreambooth_lora", _dreambooth_port),
    # the same claim on the method as its paper runs it (the whole UNet, prior preservation):
    # experiments/successors_controls.yaml has its rows
    _dreambooth_claim("X3b", "DreamBooth as its paper runs it (the whole UNet fine-tuned, prior preservation)",
                      "dreambooth", _dreambooth_whole_port),
    Claim("X4", "Custom Diffusion follows the text better than textual inversion at comparable image alignment",
          "text-alignment 0.7602 vs 0.6126, image-alignment 0.7440 vs 0.7524 (Custom Diffusion vs Textual "
          "Inversion)", "Table, the CustomConcept101 benchmark",
          (_p("custom_diffusion", "dreambench_clip_t_clipscore", RISE),
           _p("custom_diffusion", "dreambench_clip_i", SAME)),
          paper="Kumari et al. 2023, Custom Diffusion",
          metrics="text alignment: CLIPScore (2.5 x max(cosine, 0)) of image and prompt; image alignment: the "
                  "plain CLIP cosine of generated and target images",
          port=_custom_diffusion_port),
)
CLAIMS = OBJECT_CLAIMS + STYLE_CLAIMS + SUCCESSOR_CLAIMS


@dataclass
class Decided:
    claim: Claim
    verdict: str
    results: list
    control: bool = False       # a positive control of this world, not evidence
    missing: str = ""           # what the toy port lacks, where its claim reads "not reproduced"
    sensitivity: tuple = ()     # the verdicts at rb.SENSITIVITY's multiples of d


def claims_for(df: pd.DataFrame) -> tuple:
    """The claims of one comparable group: §4.3's on styles, the paper's on objects, and the
    successors' where the table has a successor's rows; named for the rows' set sizes,
    NeTI truncations and convergence column."""
    kinds = set(df[protocol.CONCEPT_KIND].dropna()) if protocol.CONCEPT_KIND in df.columns else set()
    own = STYLE_CLAIMS if kinds == {"style"} else OBJECT_CLAIMS
    rows = Rows(df)
    own = tuple(_sizes_named(c, rows) for c in own)
    setups = set(df[SETUP_COLUMN])
    if not setups & set(style.SUCCESSORS):
        return own
    return own + tuple(_steps_named(_truncation_named(c, setups), df) for c in SUCCESSOR_CLAIMS)


def _sizes_named(claim: Claim, rows: Rows) -> Claim:
    """Figure 12 over every set size the rows hold: claim 14 at each size at least twice the
    grid's ("significant increases"), 14b against every other size; without a set-size
    sweep the parts say which rows are missing."""
    if claim.id not in ("14", "14b") or rows.n_main is None:
        return claim
    sizes = [n for n in rows.sizes() if n != rows.n_main]
    if claim.id == "14":
        sizes = [n for n in sizes if n >= 2 * rows.n_main]
    if not sizes:
        return claim
    template = claim.parts if claim.id == "14" else claim.parts[0].parts

    def at(n):
        return tuple(replace(p, setup=replace(p.setup, n_images=n)) for p in template)
    quant = rb.ALL if claim.id == "14" else rb.ANY
    return replace(claim, parts=tuple(Group(f"{n:g} images", quant, at(n)) for n in sizes))


def _steps_named(claim: Claim, df: pd.DataFrame) -> Claim:
    """X1's convergence part reads the column the rows have (training.steps_to_reference*)."""
    have = [c for c in df.columns if c.startswith("training.steps_to_reference")]
    if not have or STEPS_TO_REFERENCE in df.columns:
        return claim
    return replace(claim, parts=tuple(replace(p, metric=have[0]) if isinstance(p, Part) and p.metric == STEPS_TO_REFERENCE
                                      else p for p in claim.parts))


def _truncation_named(claim: Claim, setups: set) -> Claim:
    """NeTI's claim against the most truncated NeTI rows there are (analysis/table.py names
    them neti@N); without any, the part says its rows are missing."""
    cut = sorted((s for s in setups if s.startswith("neti@")), key=lambda s: int(s.partition("@")[2]))
    if not cut:
        return claim
    parts = tuple(replace(p, reference=Arm(cut[0])) if isinstance(p, Part) and p.reference.setup == NETI_TRUNCATED
                  else p for p in claim.parts)
    return replace(claim, parts=parts)


def chosen(claims, ids) -> tuple:
    """The claims whose id is in `ids` or starts with one of them ("X": the successors')."""
    return tuple(c for c in claims if not ids or any(c.id == i or c.id.startswith(i) for i in ids))


def is_toyworld(df: pd.DataFrame) -> bool:
    """Rows of the built-in toy world, whose construction makes the control claims true."""
    for col in ("model.evaluator", "eval_protocol.evaluator", "model.name", "model"):   # ToyWorld 3 or 4
        if col in df.columns and df[col].notna().any():
            return bool(df[col].dropna().astype(str).str.startswith("toyworld").all())
    return False


def _judged(results) -> list:
    return [r for r in results if not getattr(r.item, "check", False)
            and not (getattr(r.item, "optional", False) and r.verdict == rb.NOT_DECIDABLE)]


def claim_at(claim: Claim, results: list, scale: float = 1.0) -> str:
    return rb.claim_verdict([verdict_at(r, scale) for r in _judged(results)], claim.quantifier)


def decide(df: pd.DataFrame, claims=None, n_boot: int = N_BOOT) -> list[Decided]:
    """Every claim of one comparable group (the claims for its concept kind by default).
    Refuses rows of different protocols; guidance and set size may vary (their claims)."""
    protocol.require_comparable(df, ignore=protocol.SWEPT)
    rows = Rows(df)
    toy = is_toyworld(df)
    out = []
    for c in claims if claims is not None else claims_for(df):
        results = [decide_item(rows, p, n_boot) for p in c.parts]
        verdict = claim_at(c, results)
        missing = c.port(df) if c.port else ""
        if missing and verdict in rb.AGAINST:
            verdict = rb.NOT_REPRODUCED
        out.append(Decided(c, verdict, results, control=toy and bool(c.control), missing=missing,
                           sensitivity=tuple(claim_at(c, results, s) for s in rb.SENSITIVITY)))
    return out


EXPECT_MARK = {RISE: "↑", FALL: "↓", SAME: "≈", NO_GAIN: "no gain", NO_LOSS: "no loss"}
SIZE_MARK = {rb.LARGE: " beyond d", rb.PALTRY: " inside d (paltry)"}
VERDICT_MARK = {rb.HOLDS: "✅ holds", rb.SMALL: "✅ holds (small)", rb.NOT_DECIDABLE: "⬜ not decidable here",
                rb.UNDECIDED: "❔ undecided", rb.SMALLER: "➗ smaller than said", rb.LARGER: "➗ larger than said",
                rb.NEGLIGIBLE: "➖ negligible", rb.REVERSED_SMALL: "🔄 reversed (small)",
                rb.CONTRADICTED_SMALL: "❌ contradicted (small)", rb.REVERSED: "🔄 reversed",
                rb.CONTRADICTED: "❌ contradicted", rb.NOT_REPRODUCED: "🚧 not reproduced"}


def verdict_text(x: Decided) -> str:
    mark = VERDICT_MARK[x.verdict]
    if x.verdict == rb.NOT_REPRODUCED:
        return f"{mark} (toy port: {x.missing})"
    return mark


def _arm_text(setup, g, n, main_g, main_n) -> str:
    at = ([f"s={g:g}"] if g is not None and g != main_g else []) + \
         ([f"{n:g} images"] if n is not None and n != main_n else [])
    return style.style(setup).label + (f" ({', '.join(at)})" if at else "")


def _wanted(arm: Arm) -> str:
    """An arm the rows could not supply, as the paper names it."""
    at = ([f"{arm.guidance} guidance"] if arm.guidance != "main" else []) + \
         (["most training images" if arm.n_images == MAX else f"{arm.n_images:g} images"]
          if arm.n_images != "main" else [])
    return style.style(arm.setup).label + (f" ({', '.join(at)})" if at else "")


def n_text(r: Result) -> str:
    """A part's n: its concepts and the setup's samples per prompt."""
    if not r.n_concepts:
        return ""
    return f"n = {r.n_concepts} concept{'s' if r.n_concepts != 1 else ''}" + \
        (f" × {r.n_samples} samples/prompt" if r.n_samples else "")


def result_text(r: Result, rows: Rows | None = None) -> str:
    """One part as a line: what is compared, the effect and interval, its n, the verdict."""
    item = r.item
    if isinstance(item, Group):
        inner = "; ".join(result_text(k, rows) for k in r.children)
        return f"{item.label}, {item.quantifier} of: {inner} ⇒ {r.verdict}"
    g0, n0 = (rows.g_main, rows.n_main) if rows else (None, None)
    if isinstance(item, RankPart):
        n = len(r.arms) or len(item.setups)
        what = (f"rank correlation of {short_name(item.x)} and {short_name(item.y)} across {n} setups, "
                f"expect {'> 0' if item.expect == RISE else '< 0'}")
    elif isinstance(item, DiffPart):
        if r.arms:
            (_, gh, _), (_, gl, _) = r.arms[:2]
            span = f"s={gh:g} − s={gl:g}"
        else:
            span = "highest − lowest guidance"
        what = (f"guidance effect ({span}) of {style.style(item.setup).label} minus "
                f"{style.style(item.reference).label}'s, {short_name(item.metric)}, "
                f"expect {EXPECT_MARK[item.expect]}{SIZE_MARK.get(item.size, '')}")
    else:
        a, b = (_arm_text(*x, g0, n0) for x in r.arms) if r.arms else (_wanted(item.setup), _wanted(item.reference))
        metric = short_name(item.metric) + (f" vs its {short_name(item.reference_metric)}"
                                            if item.reference_metric else "")
        what = f"{a} vs {b}, {metric}, expect {EXPECT_MARK[item.expect]}{SIZE_MARK.get(item.size, '')}"
        if item.check:
            return (f"mechanism check, not in the verdict: {what}: {format_effect(r.effect, r.lo, r.hi)}"
                    + (f" ({n_text(r)})" if r.n_concepts else ""))
    effect = f": {format_effect(r.effect, r.lo, r.hi)} ({n_text(r)})" if r.n_concepts else ""
    if r.reason:
        left_out = " (optional: not in the verdict)" if getattr(item, "optional", False) else ""
        return f"{what}{effect} → {r.verdict}{left_out}: {r.reason}"
    return f"{what}{effect} → {r.verdict}"


def _metrics(items) -> list[str]:
    out = []
    for it in items:
        if isinstance(it, Group):
            out += _metrics(it.parts)
        elif isinstance(it, (Part, DiffPart)):
            out.append(it.metric)
        elif isinstance(it, RankPart):
            out += [it.x, it.y]
    return list(dict.fromkeys(out))


def _cell(text: str) -> str:
    """Markdown table cell: a literal | (||v - v_init||, |image-only − prompt-only|) is escaped."""
    return text.replace("|", "\\|")


def d_table(rows: Rows, claims) -> list[str]:
    lines = ["| metric | spread | d |", "| --- | --- | --- |"]
    for m in _metrics(p for c in claims for p in c.parts):
        base = D_LIKE.get(m, m)
        how = OWN_SPAN.get(base, "SD of the learned setups' means") + (f" (that of {short_name(base)})" if base != m else "")
        span = rows.span(m)
        lines.append(f"| {_cell(short_name(m))} | {_cell(how)} = {span:.3f} | {rows.fraction(m):g} × spread = "
                     f"{rows.d(m):.3f} |" if span == span else
                     f"| {_cell(short_name(m))} | {_cell(how)}: rows missing | not set (its parts: not decidable) |")
    if any(isinstance(p, RankPart) for c in claims for p in c.parts):
        lines.append(f"| rank correlation | its range, −1 to +1 = {rb.CORRELATION_SPAN:g} | "
                     f"{rb.CORRELATION_FRACTION:g} × range = "
                     f"{rb.smallest_effect(rb.CORRELATION_SPAN, rb.CORRELATION_FRACTION):.3f} |")
    return lines


def totals(verdicts) -> str:
    n = Counter(verdicts)
    return ", ".join(f"{n[v]} {v}" for v in rb.STRENGTH if v != rb.NOT_REPRODUCED or n[v])


def _claim_row(x: Decided, rows: Rows) -> str:
    c = x.claim
    cells = "<br>".join(_cell(result_text(r, rows)) for r in x.results)
    quant = {rb.MANY: " (many: at least half the parts)", rb.ANY: " (any: one part suffices)"}.get(c.quantifier, "")
    where = f"{c.paper}, {c.section}" if c.paper else c.section
    said = f"{_cell(c.quote)} (paraphrased)" if c.paraphrase else f"“{_cell(c.quote)}”"
    if c.metrics:
        said += f" Metrics: {_cell(c.metrics)}."
    return f"| {c.id} | {_cell(c.text)}{quant} | {said} ({where}) | {cells} | {_cell(verdict_text(x))} |"


HEADER = ["| # | claim | the source | parts: effect [95% interval] (n) → part verdict | verdict |",
          "| --- | --- | --- | --- | --- |"]


def sensitivity_table(decided) -> list[str]:
    lines = ["| # | " + " | ".join(f"d × {s:g}" for s in (rb.SENSITIVITY[0], 1, rb.SENSITIVITY[1])) + " | |",
             "| --- | --- | --- | --- | --- |"]
    for x in decided:
        at = (x.sensitivity[0], claim_at(x.claim, x.results), x.sensitivity[1])
        fragile = "fragile" if len(set(at)) > 1 else ""
        lines.append(f"| {x.claim.id} | " + " | ".join(at) + f" | {fragile} |")
    return lines


def section(values: dict, df: pd.DataFrame, n_boot: int, ids=(), decided=None) -> tuple[list[str], list[str]]:
    """A comparable group's markdown, and its evidence claims' verdicts (none: a line saying so).
    `decided`: the group's claims decided already (the report decides them once for the
    page and the sweep's W&B run)."""
    picked = chosen(claims_for(df), ids)
    if not picked:
        return [f"## {protocol.title(values, df)}", "", f"No claim of --claims {' '.join(ids)} applies here.", ""], []
    decided = decide(df, picked, n_boot=n_boot) if decided is None else decided
    rows = Rows(df)
    at = ", ".join(x for x in (f"guidance {rows.g_main:g}" if rows.g_main is not None else "",
                               f"{rows.n_main:g} training images" if rows.n_main is not None else "") if x)
    evidence = [x for x in decided if not x.control]
    controls = [x for x in decided if x.control]
    lines = [f"## {protocol.title(values, df)}", "",
             f"Grid rows: {at or 'all'}; a part that names another guidance or set size says so. "
             "Smallest effect of interest d per metric, on the grid rows:", "",
             *d_table(rows, [x.claim for x in decided]), "", *HEADER]
    lines += [_claim_row(x, rows) for x in evidence]
    verdicts = [x.verdict for x in evidence]
    lines += ["", f"Totals: {totals(verdicts)} (positive controls not counted).", ""]
    if controls:
        lines += ["Positive controls, not evidence: the toy world was built to make these true (docs/toyworld.md, "
                  "Gates); they show the instrument finds what was put there.", "", *HEADER]
        lines += [_claim_row(x, rows) + "" for x in controls]
        lines += ["", "Why each is a control: " + "; ".join(f"{x.claim.id}: {x.claim.control}" for x in controls) + ".",
                  ""]
    lines += ["Sensitivity: each claim's verdict with every d halved and doubled; a verdict that changes is "
              "fragile.", "", *sensitivity_table(decided), ""]
    fragile = sum(len({*x.sensitivity, x.verdict if x.verdict != rb.NOT_REPRODUCED else claim_at(x.claim, x.results)})
                  > 1 for x in decided)
    lines += [f"{fragile} of {len(decided)} verdicts are fragile.", ""]
    return lines, verdicts


def rulebook_table() -> list[str]:
    """The truth table the parts follow (rulebook.truth_table), in units of d: each interval
    beside its mirror (the same interval, sign flipped). ↓ mirrors ↑, no loss mirrors no gain."""
    lines = ["| expectation | interval (units of d) | verdict | mirrored interval | verdict |",
             "| --- | --- | --- | --- | --- |"]
    for expect, size, (lo, hi), v, _, _ in rb.truth_table()[::2]:
        m_v = rb.part_verdict(expect, -hi, -lo, 1.0, size)
        lines.append(f"| {EXPECT_MARK[expect]}{SIZE_MARK.get(size, '')} | [{lo:+.1f}, {hi:+.1f}] | {v} | "
                     f"[{0.0 - hi:+.1f}, {0.0 - lo:+.1f}] | {m_v} |")
    return lines


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
                decided=None, origin: str = "") -> str:
    """claims.md; `decided`: each comparable group's decided claims, in the groups' order
    (protocol.comparable_groups), when they were decided already; `origin`: what made the rows
    (`rows_origin`)."""
    groups = protocol.comparable_groups(df, ignore=protocol.SWEPT)
    lines = [f"# The paper's claims{' in ' + source if source else ''}", ""]
    if command:
        lines += [f"Made by `{command}`.", ""]
    if origin:
        lines += [origin, ""]
    lines += ["Effect: setup − reference, mean over the concepts both have; interval: paired 95% two-level "
              "bootstrap (concepts, then samples; analysis/effects.py); a rank correlation's interval redraws "
              "concepts. ↑/↓: predicted rise/fall; ≈: comparable; no gain / no loss: not better / not worse; "
              "\"beyond d\": the paper's \"considerably\" or \"severe\"; \"paltry\": inside d. n: the concepts a part "
              "rests on × the setup's samples per prompt; a part on fewer than "
              f"{rb.MIN_CONCEPTS} concepts is not decidable here.", "",
              f"Smallest effect of interest: d = {rb.FRACTION:g} × the standard deviation, across the learned "
              "setups (every setup that learns something; not the references or the captions), of their means over "
              "concepts on the grid rows, per metric. Why: the claims are about where the learned setups sit "
              "relative to each other on Figure 10(a), each axis on its own scale; a share of each metric's own "
              "spread across them treats reconstruction and editability alike (the earlier d, a tenth of "
              "|image-only − prompt-only|, was 27% of the learned setups' CLIP reconstruction range but 57% of "
              f"their editability range). {rb.FRACTION:g}: half a standard deviation, the conventional medium "
              f"standardized effect. The inversion steps take {rb.OWN_FRACTION:g} × the single word's budget; a "
              f"rank correlation {rb.CORRELATION_FRACTION:g} × its range.", "",
              "The rulebook (analysis/rulebook.py; docs/analysis.md, \"The claims\"), every verdict beside the verdict "
              "of its mirrored interval (a predicted fall ↓ mirrors a rise, no loss mirrors no gain); a part is also not decidable here at the metric's ceiling or floor, on "
              "fewer than 4 concepts, or with rows missing. A claim takes its weakest part's verdict (\"many\": the "
              "verdict at least half its parts reach; \"any\": its strongest), in the order "
              + " > ".join(rb.STRENGTH[:-1]) + ". A successor's claim against the source whose toy port lacks a "
              "defining part of the method reads \"not reproduced\", with what is missing.", "",
              *rulebook_table(), ""]
    if len(groups) > 1:
        lines += [f"The rows hold {len(groups)} protocols that are not comparable; each has its own section.", ""]
    everything = []
    for i, (values, rows) in enumerate(groups):
        sec, verdicts = section(values, rows, n_boot, ids, decided[i] if decided is not None else None)
        lines += sec
        everything += verdicts
    if len(groups) > 1:
        lines += [f"All sections: {totals(everything)} (positive controls not counted).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Decide the paper's claims from a results table.")
    ap.add_argument("csv", help="results table from analysis/collect.py")
    ap.add_argument("-o", "--out", required=True, help="markdown file to write")
    ap.add_argument("--claims", nargs="+", default=[], metavar="ID",
                    help="only these claims (an id or its start: X = the successors' X1-X4 and X3b)")
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
        text = to_markdown(df, Path(args.csv).name, command, args.n_boot, args.claims, origin=rows_origin(args.csv))
    except (FileNotFoundError, ValueError) as e:
        return fail(e)
    atomic_write_text(Path(args.out), text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
