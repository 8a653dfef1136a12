"""Deciding the parts of a claim on one comparable group of rows (analysis/rulebook.py).

A part compares two arms, each a setup at a guidance scale and a training-set size: by
default the group's main ones (its most common values: the Figure-10 grid), or for the
appendix claims the highest guidance (>= 5, LDM's typical 5-10), the lowest (< 5), or the
largest set size. A rank part correlates two metrics across setups, with a bootstrap
over concepts. Every missing arm, metric or reference says which.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import rulebook as rb
from analysis import style
from analysis.effects import concept_pairs, has_metric
from analysis.table import CONCEPT_COLUMN, N_BOOT, SEED, SETUP_COLUMN, paired_bootstrap

GUIDANCE = "eval.guidance"
SETSIZE = ("concept.n_images", "train_images")   # where a row keeps its number of training images
HIGH_GUIDANCE = 5.0     # appendix A: "LDM's typical guidance scales (5-10)" are the high ones
MAIN, HIGH, LOW, MAX = "main", "high", "low", "max"
# Where to get the rows an arm needs, for the "rows missing" reason.
# Metrics the references lack: their span is the single word's own value (rulebook).
OWN_SPAN = {"embedding_dist_init": "single-word's distance", "training.steps": "single-word's steps"}
SWEEP_HINT = {GUIDANCE: "a guidance sweep: experiments/guidance_bipartite.yaml, guidance_pivotal.yaml",
              "setsize": "the set-size sweep: experiments/setsize.yaml"}


@dataclass(frozen=True)
class Arm:
    setup: str
    guidance: str = MAIN    # MAIN, HIGH or LOW
    n_images: str = MAIN    # MAIN or MAX


@dataclass(frozen=True)
class Part:
    setup: Arm
    metric: str
    expect: str
    reference: Arm = Arm("single_word")
    check: bool = False     # a mechanism check: shown, not in the verdict
    optional: bool = False  # a metric some evaluators lack (DINO where model.dino=false): without rows, left out of the verdict


@dataclass(frozen=True)
class RankPart:
    """Spearman's rank correlation, across `setups`, of their mean x and mean y."""
    setups: tuple
    x: str
    y: str
    expect: str


@dataclass(frozen=True)
class Group:
    """Parts decided together by one quantifier (rulebook: all / many / any)."""
    label: str
    quantifier: str
    parts: tuple


@dataclass
class Result:
    item: object
    verdict: str = rb.NOT_DECIDABLE
    reason: str = ""
    effect: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    d: float = math.nan
    n_concepts: int = 0
    arms: tuple = ()            # the concrete (setup, guidance, set size) of each arm
    children: list = field(default_factory=list)


# The grid's guidance and set size when a sweep runs every value equally often: the public
# evaluation script's guidance (docs/reference.md, "Evaluation") and the paper's five images (appendix B).
PREFERRED = {GUIDANCE: 5.0, "setsize": 5}


def _mode(s: pd.Series, prefer: float):
    """The most common value; a tie goes to the one nearest `prefer`."""
    counts = s.dropna().value_counts()
    if counts.empty:
        return None
    tied = counts[counts == counts.max()].index
    return min(tied, key=lambda v: (abs(float(v) - prefer), float(v)))


def setsize_column(df: pd.DataFrame) -> str | None:
    return next((c for c in SETSIZE if c in df.columns and df[c].notna().any()), None)


class Rows:
    """A comparable group's rows, and the arms and spans the parts need from them."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        self.n_col = setsize_column(df)
        self.g_main = _mode(df[GUIDANCE], PREFERRED[GUIDANCE]) if GUIDANCE in df.columns else None
        self.n_main = _mode(df[self.n_col], PREFERRED["setsize"]) if self.n_col else None
        self.main = self._at(df, self.g_main, self.n_main)
        self._spans: dict = {}

    def _at(self, rows, g, n):
        if g is not None and GUIDANCE in rows.columns:
            rows = rows[rows[GUIDANCE] == g]
        if n is not None and self.n_col:
            rows = rows[rows[self.n_col] == n]
        return rows

    def arm(self, arm: Arm, partner: Arm | None = None):
        """(rows, guidance, set size) of an arm, or (None, reason). A HIGH or LOW arm
        whose partner arm is the same kind takes a scale both setups were run at."""
        rows = self.df[self.df[SETUP_COLUMN] == arm.setup]
        g, n = self.g_main, self.n_main
        if arm.guidance != MAIN:
            have = set(rows[GUIDANCE].dropna()) if GUIDANCE in rows.columns else set()
            if partner is not None and partner.guidance == arm.guidance and GUIDANCE in self.df.columns:
                have &= set(self.df.loc[self.df[SETUP_COLUMN] == partner.setup, GUIDANCE].dropna())
            have = {v for v in have if (v >= HIGH_GUIDANCE if arm.guidance == HIGH else v < HIGH_GUIDANCE)}
            if not have:
                want = f">= {HIGH_GUIDANCE:g}" if arm.guidance == HIGH else f"< {HIGH_GUIDANCE:g}"
                return None, f"rows missing ({arm.setup} at guidance {want}; from {SWEEP_HINT[GUIDANCE]})"
            g = max(have) if arm.guidance == HIGH else min(have)
        if arm.n_images == MAX:
            have = {v for v in rows[self.n_col].dropna() if self.n_main is None or v > self.n_main} \
                if self.n_col else set()
            if not have:
                more = f"more than {self.n_main:g}" if self.n_main is not None else "several numbers of"
                return None, f"rows missing ({arm.setup} with {more} training images; from {SWEEP_HINT['setsize']})"
            n = max(have)
        rows = self._at(rows, g, n)
        if rows.empty:
            return None, f"rows missing ({arm.setup}{describe_at(g, n)})"
        return (rows, g, n), ""

    def span(self, metric: str) -> float:
        """|image-only - prompt-only| on the main rows; a metric the references lack
        (OWN_SPAN: the distance to the initializer, the inversion steps) takes the single word's own."""
        if metric not in self._spans:
            m = self.main
            if metric in OWN_SPAN:
                rows = m[m[SETUP_COLUMN] == "single_word"]
                v = float(rows.groupby(CONCEPT_COLUMN)[metric].mean().mean()) if has_metric(rows, metric) else math.nan
            else:
                pairs = concept_pairs(m[m[SETUP_COLUMN] == "image_only"], m[m[SETUP_COLUMN] == "prompt_only"], metric) \
                    if metric in m.columns else []
                v = abs(float(np.mean([p.a.mean() - p.b.mean() for p in pairs]))) if pairs else math.nan
            self._spans[metric] = v
        return self._spans[metric]

    def d(self, metric: str) -> float:
        return rb.smallest_effect(self.span(metric))


def describe_at(g, n) -> str:
    bits = ([f"s={g:g}"] if g is not None else []) + ([f"{n:g} images"] if n is not None else [])
    return f" at {', '.join(bits)}" if bits else ""


def _missing_d(metric: str) -> str:
    if metric in OWN_SPAN:
        return f"rows missing ({OWN_SPAN[metric]} ({metric}), which sets d)"
    return f"rows missing (image_only and prompt_only with {metric}: their span sets d)"


def decide_part(rows: Rows, part: Part, n_boot: int = N_BOOT, seed: int = SEED) -> Result:
    res = Result(part, d=rows.d(part.metric))
    a, why = rows.arm(part.setup, part.reference)
    b, why_b = rows.arm(part.reference, part.setup)
    if a is None or b is None:
        res.reason = why or why_b
        return res
    res.arms = ((part.setup.setup, a[1], a[2]), (part.reference.setup, b[1], b[2]))
    if not (has_metric(a[0], part.metric) and has_metric(b[0], part.metric)):
        res.reason = f"rows missing (no {part.metric} for {part.setup.setup} or {part.reference.setup})"
        return res
    pairs = concept_pairs(a[0], b[0], part.metric)
    if not pairs:
        res.reason = (f"rows missing (no concept has {part.metric} for both {part.setup.setup} "
                      f"and {part.reference.setup})")
        return res
    est = paired_bootstrap(pairs, n_boot, seed=seed)
    res.effect, res.lo, res.hi, res.n_concepts = est.mean, est.lo, est.hi, est.n_concepts
    if part.check:      # shown, not judged
        res.verdict = ""
        return res
    if not math.isfinite(res.d):
        res.reason = _missing_d(part.metric)
        return res
    ref_mean = float(np.mean([p.b.mean() for p in pairs]))
    bound = rb.at_bound(part.expect, part.metric, ref_mean, res.d)
    if bound:
        res.reason = (f"the reference sits at the metric's {bound} ({part.reference.setup} {ref_mean:.3f}, "
                      f"within d of {1 if bound == 'ceiling' else 0})")
        return res
    res.verdict = rb.part_verdict(part.expect, res.lo, res.hi, res.d)
    return res


def _spearman_cols(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho down each column of x and y (setups x replicates), ties averaged."""
    # pandas ranks as scipy.stats.rankdata does (ties averaged); scipy is not a dependency
    rx, ry = (pd.DataFrame(a).rank(axis=0, method="average").to_numpy() for a in (x, y))
    rx, ry = rx - rx.mean(axis=0), ry - ry.mean(axis=0)
    den = np.sqrt((rx ** 2).sum(axis=0) * (ry ** 2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=0) / den, np.nan)


def decide_rank(rows: Rows, part: RankPart, n_boot: int = N_BOOT, seed: int = SEED) -> Result:
    """Rank correlation of the setups' means over the concepts all of them have; the
    interval redraws those concepts with replacement (a concept bootstrap)."""
    res = Result(part, d=rb.smallest_effect(rb.CORRELATION_SPAN))
    m = rows.main
    if not (has_metric(m, part.x) and has_metric(m, part.y)):
        res.reason = f"rows missing (no {part.x if not has_metric(m, part.x) else part.y})"
        return res
    m = m[m[SETUP_COLUMN].isin(part.setups)]
    means = m.groupby([SETUP_COLUMN, CONCEPT_COLUMN])[[part.x, part.y]].mean().dropna()
    setups = sorted(set(means.index.get_level_values(0)))
    if len(setups) < 3:
        res.reason = f"rows missing (ranking needs 3 or more of {', '.join(part.setups)}; the rows have {len(setups)})"
        return res
    concepts = set.intersection(*(set(means.loc[s].index) for s in setups))
    if len(concepts) < 2:
        res.reason = "rows missing (fewer than 2 concepts have every ranked setup)"
        return res
    concepts = sorted(concepts)
    x = np.array([[means.loc[(s, c), part.x] for c in concepts] for s in setups])
    y = np.array([[means.loc[(s, c), part.y] for c in concepts] for s in setups])
    for metric, v in ((part.x, x), (part.y, y)):   # no room to rank: every setup at a bound
        d, b = rows.d(metric), rb.bounds(metric)
        if b and math.isfinite(d):
            mean = v.mean(axis=1)
            side = "ceiling" if (mean > b[1] - d).all() else "floor" if (mean < b[0] + d).all() else None
            if side:
                res.reason = f"every ranked setup sits at the {side} of {metric} (within d = {d:.3f} of it)"
                return res
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(concepts), (n_boot, len(concepts)))
    boot = _spearman_cols(x[:, pick].mean(axis=2), y[:, pick].mean(axis=2))
    res.effect = float(_spearman_cols(x.mean(axis=1)[:, None], y.mean(axis=1)[:, None])[0])
    lo, hi = (float(v) for v in np.nanquantile(boot, [0.025, 0.975]))
    # A rank statistic at its bound (-1 or +1) can sit outside its own percentile interval
    # (redrawn concepts only break ties away from it); widen the interval to hold it.
    res.lo, res.hi = min(lo, res.effect), max(hi, res.effect)
    res.n_concepts, res.arms = len(concepts), tuple((s, rows.g_main, rows.n_main) for s in style.order(setups))
    res.verdict = rb.part_verdict(part.expect, res.lo, res.hi, res.d)
    return res


def decide_item(rows: Rows, item, n_boot: int = N_BOOT) -> Result:
    if isinstance(item, Group):
        kids = [decide_item(rows, p, n_boot) for p in item.parts]
        return Result(item, rb.claim_verdict([k.verdict for k in kids], item.quantifier), children=kids)
    if isinstance(item, RankPart):
        return decide_rank(rows, item, n_boot)
    return decide_part(rows, item, n_boot)
