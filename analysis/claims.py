"""The paper's claims, decided from a results table: effect, paired 95% interval, verdict.

    python analysis/claims.py results.csv -o claims.md [--where concept.kind=object]

Each claim is a few parts; a part compares one setup with a reference setup on one
metric (analysis/effects.py: the paired difference over the same concepts and seeds,
two-level bootstrap). The verdict rule, here and in docs/analysis.md:

  a part expecting the setup HIGHER (LOWER): holds when the 95% interval excludes 0 on
      that side, contradicted when it excludes 0 on the other side, else undecided;
  a part expecting COMPARABLE: holds when the interval lies inside +-margin,
      contradicted when it lies wholly outside it (lo > margin or hi < -margin), else
      undecided;
  a part expecting NO GAIN (higher is better): holds when hi < +margin, contradicted
      when lo > 0, else undecided;
  margin: 0.02 for CLIP/DINO cosines, 0.05 for oracle accuracies (shares of attributes);
  a claim is contradicted when any part is, holds when every part does, else undecided.
  A part whose setup, reference or metric the table lacks (or whose guidance condition
  the rows do not meet) is undecided with the reason.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import protocol, style  # noqa: E402
from analysis.effects import REFERENCE, concept_pairs, format_effect, has_metric  # noqa: E402
from analysis.table import (add_row_options, N_BOOT, SEED, SETUP_COLUMN, atomic_write_text, fail, load_results,  # noqa: E402
                            paired_bootstrap, short_name, where)

HIGHER, LOWER, COMPARABLE, NO_GAIN = "higher", "lower", "comparable", "no gain"
HOLDS, CONTRADICTED, UNDECIDED = "holds", "contradicted", "undecided"


def margin(metric: str) -> float:
    """How close counts as 'comparable' / 'no gain': a share of attributes moves in
    bigger steps than a cosine."""
    return 0.05 if "oracle" in metric else 0.02


def part_verdict(expect: str, lo: float, hi: float, m: float) -> str:
    """The verdict rule for one part (see the module doc)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return UNDECIDED
    if expect == HIGHER:
        return HOLDS if lo > 0 else CONTRADICTED if hi < 0 else UNDECIDED
    if expect == LOWER:
        return HOLDS if hi < 0 else CONTRADICTED if lo > 0 else UNDECIDED
    if expect == COMPARABLE:
        return HOLDS if -m < lo and hi < m else CONTRADICTED if lo > m or hi < -m else UNDECIDED
    if expect == NO_GAIN:
        return HOLDS if hi < m else CONTRADICTED if lo > 0 else UNDECIDED
    raise ValueError(f"unknown expectation {expect!r}")


def claim_verdict(parts: list[str]) -> str:
    if CONTRADICTED in parts:
        return CONTRADICTED
    return HOLDS if parts and all(p == HOLDS for p in parts) else UNDECIDED


@dataclass(frozen=True)
class Part:
    setup: str
    metric: str
    expect: str
    reference: str = REFERENCE
    min_guidance: float | None = None   # the paper's statement is about s >= this


@dataclass(frozen=True)
class Claim:
    text: str
    section: str
    parts: tuple


def _pp(setups, metric, expect, **kw):
    return tuple(Part(s, metric, expect, **kw) for s in setups)


MULTI = ("two_word", "three_word")
CAPTIONS = ("human_captions_short", "human_captions_long")
REC, EDIT = "reconstruction_clip", "editability_clip_meanemb"
CLAIMS = (
    Claim("Single-word reconstruction is comparable to sampling the training images (image-only)",
          "§5.3, first observation", (Part("single_word", REC, COMPARABLE, reference="image_only"),)),
    Claim("More pseudo-words raise reconstruction and lower editability",
          "§5.3, second and third observations; Fig. 10(a)",
          _pp(MULTI, REC, HIGHER) + _pp(MULTI, EDIT, LOWER)),
    Claim("The learning rate moves the single word along the curve (high: reconstruction; low: editability)",
          "§5.3, third observation; Fig. 10(a) caption",
          (Part("high_lr", REC, HIGHER), Part("high_lr", EDIT, LOWER),
           Part("low_lr", REC, LOWER), Part("low_lr", EDIT, HIGHER))),
    Claim("Regularization toward the coarse word and a low learning rate favour editability over detail",
          "§5.2 Regularization; §5.3, third observation",
          (Part("regularized", EDIT, HIGHER), Part("regularized", REC, LOWER),
           Part("regularized", "embedding_dist_init", LOWER), Part("low_lr", EDIT, HIGHER))),
    Claim("Human captions reconstruct the concept worse than the learned word",
          "§5.3, fourth observation; §1 contributions",
          _pp(CAPTIONS, REC, LOWER) + _pp(CAPTIONS, "reconstruction_oracle_unnamed", LOWER)),
    Claim("Human captions also diminish editability", "§5.3, fourth observation", _pp(CAPTIONS, EDIT, LOWER)),
    Claim("Per-image tokens and progressive extensions bring no gain",
          "§5 introduction; §5.2 Progressive extensions, Per-image tokens",
          _pp(("per_image_tokens", "progressive"), REC, NO_GAIN)
          + _pp(("per_image_tokens", "progressive"), EDIT, NO_GAIN)),
    Claim("Bipartite inversion reconstructs best, and loses the concept's structure under edits at high guidance",
          "Appendix A; Fig. 11 caption",
          (Part("bipartite_inversion", REC, HIGHER), Part("bipartite_inversion", REC, HIGHER, reference="pivotal_tuning"),
           Part("bipartite_inversion", "identity_oracle_named", LOWER, min_guidance=5.0))),
    Claim("Pivotal tuning improves reconstruction (shape) and loses editability at high guidance",
          "Appendix A; Fig. 11 caption",
          (Part("pivotal_tuning", REC, HIGHER), Part("pivotal_tuning", "reconstruction_oracle_shape", HIGHER),
           Part("pivotal_tuning", EDIT, LOWER, min_guidance=5.0))),
)


@dataclass
class PartResult:
    part: Part
    effect: float = np.nan
    lo: float = np.nan
    hi: float = np.nan
    n_concepts: int = 0
    verdict: str = UNDECIDED
    reason: str = ""


def decide_part(df: pd.DataFrame, part: Part, n_boot: int = N_BOOT, seed: int = SEED) -> PartResult:
    res = PartResult(part)
    setups = set(df[SETUP_COLUMN])
    for s in (part.setup, part.reference):
        if s not in setups:
            res.reason = f"no rows of {s}"
            return res
    if not has_metric(df, part.metric):
        res.reason = f"the table has no {part.metric}"
        return res
    if part.min_guidance is not None and "eval.guidance" in df.columns:
        g = pd.to_numeric(df["eval.guidance"], errors="coerce").dropna()
        if len(g) and g.max() < part.min_guidance:
            res.reason = f"the paper's statement is about guidance >= {part.min_guidance:g}; rows use {g.max():g}"
            return res
    pairs = concept_pairs(df[df[SETUP_COLUMN] == part.setup], df[df[SETUP_COLUMN] == part.reference], part.metric)
    if not pairs:
        res.reason = f"no concept has {part.metric} for both {part.setup} and {part.reference}"
        return res
    est = paired_bootstrap(pairs, n_boot, seed=seed)
    res.effect, res.lo, res.hi, res.n_concepts = est.mean, est.lo, est.hi, est.n_concepts
    res.verdict = part_verdict(part.expect, est.lo, est.hi, margin(part.metric))
    return res


def decide(df: pd.DataFrame, claims=CLAIMS, n_boot: int = N_BOOT) -> list[tuple[Claim, str, list[PartResult]]]:
    """Every claim's verdict and its parts. Refuses rows of different protocols."""
    protocol.require_comparable(df)
    out = []
    for c in claims:
        parts = [decide_part(df, p, n_boot) for p in c.parts]
        out.append((c, claim_verdict([p.verdict for p in parts]), parts))
    return out


def _label(setup: str) -> str:
    return style.style(setup).label


def part_text(r: PartResult) -> str:
    p = r.part
    what = f"{_label(p.setup)} vs {_label(p.reference)}, {short_name(p.metric)}, expect {EXPECT_MARK[p.expect]}"
    if r.reason:
        return f"{what}: undecided ({r.reason})"
    return f"{what}: {format_effect(r.effect, r.lo, r.hi)} → {r.verdict}"


EXPECT_MARK = {HIGHER: "↑", LOWER: "↓", COMPARABLE: "≈", NO_GAIN: "no gain"}


VERDICT_MARK = {HOLDS: "✅ holds", CONTRADICTED: "❌ contradicted", UNDECIDED: "❔ undecided"}


def to_markdown(decided, df: pd.DataFrame, source: str = "", command: str = "") -> str:
    lines = [f"# The paper's claims{' in ' + source if source else ''}", "",
             f"Rows: {protocol.describe(df)}.", ""]
    if command:
        lines += [f"Made by `{command}`.", ""]
    lines += [
             "Effect: setup − reference, mean over the concepts both have; interval: paired 95% two-level "
             "bootstrap (concepts, then samples; analysis/effects.py). ↑/↓: the setup should score higher/lower "
             "than the reference; ≈: within ±margin; no gain: not above +margin (margin 0.02 for CLIP, 0.05 "
             "for oracle shares). Verdict rule: docs/analysis.md (\"The claims\").", "",
             "| # | claim | paper | effect [95% interval] per part | verdict |", "| --- | --- | --- | --- | --- |"]
    for i, (c, verdict, parts) in enumerate(decided, 1):
        cells = "<br>".join(part_text(p) for p in parts)
        lines.append(f"| {i} | {c.text} | {c.section} | {cells} | {VERDICT_MARK[verdict]} |")
    counts = pd.Series([v for _, v, _ in decided]).value_counts()
    lines += ["", "Totals: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in (HOLDS, CONTRADICTED, UNDECIDED)) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Decide the paper's claims from a results table.")
    ap.add_argument("csv", help="results table from analysis/collect.py")
    ap.add_argument("-o", "--out", required=True, help="markdown file to write")
    add_row_options(ap)
    args = ap.parse_args(argv)
    try:
        df = where(load_results(args.csv), args.where)
        if df.empty:
            raise ValueError(f"no ok rows in {args.csv} match {args.where}")
        decided = decide(df, n_boot=args.n_boot)
    except (FileNotFoundError, ValueError) as e:
        return fail(e)
    out = Path(args.out)
    command = " ".join(["python analysis/claims.py", args.csv] + (["--where", *args.where] if args.where else [])
                       + ["-o", args.out])
    atomic_write_text(out, to_markdown(decided, df, Path(args.csv).name, command))
    for c, v, _ in decided:
        print(f"{v:12s} {c.text}", file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
