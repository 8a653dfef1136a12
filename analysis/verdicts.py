"""Deciding the parts of a claim on one comparable group of rows (analysis/rulebook.py).

A part compares two arms, each a setup at a guidance scale and a training-set size: by
default the group's main ones (its most common values: the Figure-10 grid), or for the
appendix claims the highest guidance (>= 5, LDM's typical 5-10), the lowest (< 5), the
largest set size or a named one. A guidance part (DiffPart) takes the difference of two
setups' guidance effects, (setup high - low) - (reference high - low). A rank part
correlates two metrics across setups, with a bootstrap over concepts. Every part says its
n (concepts, samples per prompt); every missing arm, metric, column or reference says which.
A part's verdict is recomputed at any multiple of d (`verdict_at`: the sensitivity table).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import rulebook as rb
from analysis import style
from analysis.effects import _row_scores, concept_pairs, has_metric
from analysis.table import CONCEPT_COLUMN, N_BOOT, SEED, SETUP_COLUMN, Pair, paired_bootstrap

GUIDANCE = "eval.guidance"
SETSIZE = ("concept.n_images", "train_images")   # where a row keeps its number of training images
HIGH_GUIDANCE = 5.0     # appendix A: "LDM's typical guidance scales (5-10)" are the high ones
MAIN, HIGH, LOW, MAX = "main", "high", "low", "max"
# Where to get the rows an arm needs, for the "rows missing" reason.
# Metrics the learned setups do not spread on: their span is the single word's own value (rulebook).
OWN_SPAN = {"training.steps": "single-word's steps"}
# Metrics that take another's d: a variant of it on the same scale, or one only a few setups have.
D_LIKE = {"reconstruction_clip_heldout": "reconstruction_clip", "training.steps_to_reference_loss": "training.steps"}
NOT_LEARNED = style.REFERENCES + style.HUMAN_CAPTIONS + ("initializer_word",)
LEVELS = ("d1", "d2", "d3")     # edit difficulty: prompts asking one change, two, three or more
SWEEP_HINT = {GUIDANCE: "a guidance sweep: experiments/guidance_bipartite.yaml, guidance_pivotal.yaml",
              "setsize": "the set-size sweep: experiments/setsize.yaml"}


@dataclass(frozen=True)
class Arm:
    setup: str
    guidance: str = MAIN    # MAIN, HIGH or LOW
    n_images: object = MAIN  # MAIN, MAX or a number of training images


@dataclass(frozen=True)
class Part:
    setup: Arm
    metric: str
    expect: str
    reference: Arm = Arm("single_word")
    check: bool = False     # a mechanism check: shown, not in the verdict
    optional: bool = False  # a metric some evaluators lack (DINO where model.dino=false): without rows, left out of the verdict
    size: str | None = None     # the paper's size word: rb.LARGE ("considerably", "severe") or rb.PALTRY
    reference_metric: str = ""  # the reference arm's metric where it differs (X1: P+'s steps to the word's loss vs its budget)
    hint: str = ""              # where a missing column comes from


@dataclass(frozen=True)
class DiffPart:
    """(setup at the highest guidance - at the lowest) - (reference, the same): how much more
    the setup's metric moves with guidance than the reference's, paired by concept."""
    setup: str
    metric: str
    expect: str
    reference: str = "single_word"
    size: str | None = None
    check: bool = False
    optional: bool = False


@dataclass(frozen=True)
class RankPart:
    """Spearman's rank correlation, across `setups`, of their mean x and mean y."""
    setups: tuple
    x: str
    y: str
    expect: str
    size: str | None = None
    check: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Group:
    """Parts decided together by one quantifier (rulebook: all / many / any)."""
    label: str
    quantifier: str
    parts: tuple
    check: bool = False
    optional: bool = False


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
    n_samples: int = 0          # samples per prompt of the setup's rows
    ref_mean: float = math.nan  # the reference's mean, for the ceiling / floor rule
    arms: tuple = ()            # the concrete (setup, guidance, set size) of each arm
    children: list = field(default_factory=list)
    judged: bool = False        # the verdict follows from the interval and d (else: reason, or a check)


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


def with_levels(df: pd.DataFrame) -> pd.DataFrame:
    """identity_oracle_d1/d2/d3 from each row's per-prompt scores: identity under the edit
    prompts that ask one change, two, three or more (tinv/metrics/protocol.py's levels)."""
    if "per_prompt" not in df.columns or all(f"identity_oracle_{lv}" in df.columns for lv in LEVELS):
        return df
    cols = {lv: [] for lv in LEVELS}
    for cell in df["per_prompt"]:
        by = {lv: [] for lv in LEVELS}
        try:
            prompts = json.loads(cell) if isinstance(cell, str) else []
        except ValueError:
            prompts = []
        for p in prompts:
            asked = p.get("attributes") or {}
            if p.get("role") == "editability" and asked and p.get("identity_oracle") is not None:
                by[f"d{min(len(asked), 3)}"].append(float(p["identity_oracle"]))
        for lv in LEVELS:
            cols[lv].append(float(np.mean(by[lv])) if by[lv] else math.nan)
    if not any(np.isfinite(v).any() for v in map(np.asarray, cols.values())):
        return df
    return df.assign(**{f"identity_oracle_{lv}": v for lv, v in cols.items()})


def learned(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of setups that learn something (the row's method.learns, else by name)."""
    if "method.learns" in df.columns and df["method.learns"].notna().any():
        return df[df["method.learns"].astype(str).str.lower().isin(("true", "1", "1.0"))]
    return df[~df[SETUP_COLUMN].isin(NOT_LEARNED)]


class Rows:
    """A comparable group's rows, and the arms and spans the parts need from them."""

    def __init__(self, df: pd.DataFrame):
        self.df = df = with_levels(df)
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

    def sizes(self, setup: str = "single_word") -> list:
        """The set sizes the setup was run at, at the grid's guidance."""
        if not self.n_col:
            return []
        rows = self.df[self.df[SETUP_COLUMN] == setup]
        if self.g_main is not None and GUIDANCE in rows.columns:
            rows = rows[rows[GUIDANCE] == self.g_main]
        return sorted(rows[self.n_col].dropna().unique())

    def guidance_pair(self, setups) -> tuple | None:
        """(lowest < 5, highest >= 5) guidance every one of `setups` was run at."""
        if GUIDANCE not in self.df.columns:
            return None
        have = set.intersection(*(set(self.df.loc[self.df[SETUP_COLUMN] == s, GUIDANCE].dropna()) for s in setups))
        hi = [v for v in have if v >= HIGH_GUIDANCE]
        lo = [v for v in have if v < HIGH_GUIDANCE]
        return (min(lo), max(hi)) if hi and lo else None

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
        elif arm.n_images != MAIN:
            n = arm.n_images
        rows = self._at(rows, g, n)
        if rows.empty:
            return None, f"rows missing ({arm.setup}{describe_at(g, n)})"
        return (rows, g, n), ""

    def span(self, metric: str) -> float:
        """The spread d is a share of (rulebook): the standard deviation, across the learned
        setups on the grid rows, of their means over concepts; OWN_SPAN metrics take the
        single word's own value, D_LIKE ones another metric's spread."""
        metric = D_LIKE.get(metric, metric)
        if metric not in self._spans:
            m = self.main
            if metric in OWN_SPAN:
                rows = m[m[SETUP_COLUMN] == "single_word"]
                v = float(rows.groupby(CONCEPT_COLUMN)[metric].mean().mean()) if has_metric(rows, metric) else math.nan
            else:
                rows = learned(m)
                means = rows.groupby([SETUP_COLUMN, CONCEPT_COLUMN])[metric].mean().groupby(level=0).mean().dropna() \
                    if metric in rows.columns else pd.Series(dtype=float)
                v = float(means.std(ddof=1)) if len(means) >= 3 else math.nan
            self._spans[metric] = v
        return self._spans[metric]

    def fraction(self, metric: str) -> float:
        return rb.OWN_FRACTION if D_LIKE.get(metric, metric) in OWN_SPAN else rb.FRACTION

    def d(self, metric: str) -> float:
        return rb.smallest_effect(self.span(metric), self.fraction(metric))

    def samples_per_prompt(self, rows: pd.DataFrame) -> int:
        if "eval.num_samples" in rows.columns and rows["eval.num_samples"].notna().any():
            return int(rows["eval.num_samples"].mode().iloc[0])
        return 0


def describe_at(g, n) -> str:
    bits = ([f"s={g:g}"] if g is not None else []) + ([f"{n:g} images"] if n is not None else [])
    return f" at {', '.join(bits)}" if bits else ""


def _undecidable(res, part) -> str | None:
    """Why a measured part cannot be judged: fewer concepts than the rulebook's minimum, or no d."""
    if res.n_concepts < rb.MIN_CONCEPTS:
        return too_few(res.n_concepts)
    if not math.isfinite(res.d):
        return _missing_d(part.metric)
    return None


def _missing_d(metric: str) -> str:
    metric = D_LIKE.get(metric, metric)
    if metric in OWN_SPAN:
        return f"rows missing ({OWN_SPAN[metric]} ({metric}), which sets d)"
    return f"rows missing (3 or more learned setups with {metric}: their spread sets d)"


def too_few(n: int) -> str:
    return f"n = {n} concept{'s' if n != 1 else ''}, fewer than {rb.MIN_CONCEPTS}"


def verdict_at(res: Result, scale: float = 1.0) -> str:
    """The part's (or group's) verdict with d scaled: the sensitivity table's."""
    item = res.item
    if isinstance(item, Group):
        return rb.claim_verdict([verdict_at(k, scale) for k in res.children if not k.item.check], item.quantifier)
    if not res.judged:
        return res.verdict
    d = res.d * scale
    metric = getattr(item, "metric", "")
    if metric:
        bound = rb.at_bound(item.expect, metric, res.ref_mean, d)
        if bound:
            return rb.NOT_DECIDABLE
    return rb.part_verdict(item.expect, res.lo, res.hi, d, item.size)


def _judge(res: Result) -> Result:
    """Set the verdict from the interval, or the reason a part at a bound is not decidable."""
    res.judged = True
    res.verdict = verdict_at(res)
    item = res.item
    if res.verdict == rb.NOT_DECIDABLE and getattr(item, "metric", ""):
        bound = rb.at_bound(item.expect, item.metric, res.ref_mean, res.d)
        ref = item.reference.setup if isinstance(item, Part) else item.reference
        res.reason = (f"the reference sits at the metric's {bound} ({ref} {res.ref_mean:.3f}, "
                      f"within d of {1 if bound == 'ceiling' else 0})")
    return res


def _column_missing(df: pd.DataFrame, metric: str, hint: str) -> str:
    if metric not in df.columns:
        return f"rows missing (no column {metric}" + (f"; {hint})" if hint else ")")
    return ""


def decide_part(rows: Rows, part: Part, n_boot: int = N_BOOT, seed: int = SEED) -> Result:
    res = Result(part, d=rows.d(part.metric))
    ref_metric = part.reference_metric or part.metric
    missing = _column_missing(rows.df, part.metric, part.hint) or _column_missing(rows.df, ref_metric, part.hint)
    if missing:
        res.reason = missing
        return res
    a, why = rows.arm(part.setup, part.reference)
    b, why_b = rows.arm(part.reference, part.setup)
    if a is None or b is None:
        res.reason = why or why_b
        return res
    res.arms = ((part.setup.setup, a[1], a[2]), (part.reference.setup, b[1], b[2]))
    res.n_samples = rows.samples_per_prompt(a[0])
    if not (has_metric(a[0], part.metric) and has_metric(b[0], ref_metric)):
        res.reason = f"rows missing (no {part.metric} for {part.setup.setup} or {ref_metric} for {part.reference.setup})"
        return res
    if ref_metric != part.metric:   # one value per row on each side, paired by concept
        b_rows = b[0].drop(columns=[c for c in (part.metric, f"scores.{part.metric}") if c in b[0].columns])
        b_rows = b_rows.assign(**{part.metric: b[0][ref_metric]})
        pairs = concept_pairs(a[0].drop(columns=[f"scores.{part.metric}"], errors="ignore"), b_rows, part.metric)
    else:
        pairs = concept_pairs(a[0], b[0], part.metric)
    if not pairs:
        res.reason = (f"rows missing (no concept has {part.metric} for both {part.setup.setup} "
                      f"and {part.reference.setup})")
        return res
    est = paired_bootstrap(pairs, n_boot, seed=seed)
    res.effect, res.lo, res.hi, res.n_concepts = est.mean, est.lo, est.hi, est.n_concepts
    res.ref_mean = float(np.mean([p.b.mean() for p in pairs]))
    if part.check:      # shown, not judged
        res.verdict = ""
        return res
    res.reason = _undecidable(res, part) or res.reason
    if res.reason:
        return res
    return _judge(res)


def _concept_values(rows: pd.DataFrame, metric: str) -> dict:
    """{concept: per-sample scores of its one row (or its rows' values, concatenated)}."""
    out = {}
    for concept, r in rows.groupby(CONCEPT_COLUMN, sort=True):
        v = np.concatenate([_row_scores(x, metric) for _, x in r.iterrows()]) if len(r) else np.empty(0)
        if np.isfinite(v).any():
            out[concept] = v
    return out


def decide_diff(rows: Rows, part: DiffPart, n_boot: int = N_BOOT, seed: int = SEED) -> Result:
    """The setup's guidance effect minus the reference's, per concept: sample-paired where
    the four rows sampled the same seeds, else by concept means."""
    res = Result(part, d=rows.d(part.metric))
    pair = rows.guidance_pair((part.setup, part.reference))
    if pair is None:
        res.reason = (f"rows missing ({part.setup} and {part.reference} at a guidance < {HIGH_GUIDANCE:g} and one "
                      f">= {HIGH_GUIDANCE:g}; from {SWEEP_HINT[GUIDANCE]})")
        return res
    g_lo, g_hi = pair
    n = rows.n_main
    cells = {}
    for s in (part.setup, part.reference):
        for g in (g_hi, g_lo):
            r = rows._at(rows.df[rows.df[SETUP_COLUMN] == s], g, n)
            cells[(s, g)] = _concept_values(r, part.metric) if part.metric in r.columns else {}
    res.arms = ((part.setup, g_hi, n), (part.setup, g_lo, n), (part.reference, g_hi, n), (part.reference, g_lo, n))
    concepts = sorted(set.intersection(*(set(c) for c in cells.values())))
    if not concepts:
        res.reason = f"rows missing (no concept has {part.metric} for {part.setup} and {part.reference} at s={g_lo:g} and s={g_hi:g})"
        return res
    pairs = []
    for c in concepts:
        ah, al, bh, bl = (cells[(part.setup, g_hi)][c], cells[(part.setup, g_lo)][c],
                          cells[(part.reference, g_hi)][c], cells[(part.reference, g_lo)][c])
        if len({len(ah), len(al), len(bh), len(bl)}) == 1 and len(ah) > 1:
            keep = np.isfinite(ah) & np.isfinite(al) & np.isfinite(bh) & np.isfinite(bl)
            pairs.append(Pair(ah[keep] - al[keep], bh[keep] - bl[keep], True))
        else:
            pairs.append(Pair(np.array([np.nanmean(ah) - np.nanmean(al)]), np.array([np.nanmean(bh) - np.nanmean(bl)]), True))
    est = paired_bootstrap(pairs, n_boot, seed=seed)
    res.effect, res.lo, res.hi, res.n_concepts = est.mean, est.lo, est.hi, est.n_concepts
    res.n_samples = rows.samples_per_prompt(rows._at(rows.df[rows.df[SETUP_COLUMN] == part.setup], g_hi, n))
    res.reason = _undecidable(res, part) or res.reason
    if res.reason:
        return res
    res.judged = True
    res.verdict = rb.part_verdict(part.expect, res.lo, res.hi, res.d, part.size)
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
    res = Result(part, d=rb.smallest_effect(rb.CORRELATION_SPAN, rb.CORRELATION_FRACTION))
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
    res.n_samples = rows.samples_per_prompt(m)
    if res.n_concepts < rb.MIN_CONCEPTS:
        res.reason = too_few(res.n_concepts)
        return res
    res.judged = True
    res.verdict = rb.part_verdict(part.expect, res.lo, res.hi, res.d, part.size)
    return res


def decide_item(rows: Rows, item, n_boot: int = N_BOOT) -> Result:
    if isinstance(item, Group):
        kids = [decide_item(rows, p, n_boot) for p in item.parts]
        res = Result(item, children=kids)
        res.verdict = verdict_at(res)
        return res
    if isinstance(item, RankPart):
        return decide_rank(rows, item, n_boot)
    if isinstance(item, DiffPart):
        return decide_diff(rows, item, n_boot)
    return decide_part(rows, item, n_boot)
