"""The rulebook: how a part of a claim, and then the claim, gets its verdict.

Equivalence testing, as a reviewer reads an effect: an interval that excludes 0 shows a
direction, an interval inside (-d, d) shows that no effect worth naming is there. The rule
cuts both ways: every verdict for the paper has its mirror against it, the verdict of the
same interval with its sign flipped (`MIRROR`; claims.md prints the table, `truth_table()`).

Smallest effect of interest. d = FRACTION x spread, per metric, on the same rows the claims
are decided on; spread = the standard deviation, across the learned setups (every setup
that learns something: the single word, its extensions and rates, the appendix methods,
the successors; not the references or the human captions), of their means over concepts
on the Figure-10 grid. Why: the claims are about where the learned setups sit relative to
each other on Figure 10(a), and each axis of that figure is read on its own scale; a
share of each metric's own spread across those setups treats reconstruction and
editability alike, whatever range the evaluator gives each (the earlier d, a tenth of
|image-only - prompt-only|, was 27% of the learned setups' CLIP reconstruction range but
57% of their editability range, because image-only's CLIP editability is negative).
FRACTION = 0.5: half a standard deviation of the setups, the conventional "medium"
standardized effect (Cohen's 0.5), here on the setups' own spread, not on noise. The
sensitivity table of claims.md redecides every claim at d/2 and 2d and marks a verdict
that changes "fragile". Metrics the learned setups do not spread on: the inversion steps
(training.steps, one fixed budget for all) take OWN_FRACTION = 0.1 of the single word's
own budget (an early stop must save a tenth of it), a rank correlation 0.1 of its range, 2
(d = 0.2).

Parts. A part compares a setup with a reference on one metric (or ranks setups on two
metrics) and has a paired 95% interval [lo, hi] of setup - reference (analysis/effects.py):
  * predicted RISE: holds if lo > 0 ("small" when also hi < d); reversed if hi < 0
    ("small" when also lo > -d); negligible if -d < lo <= 0 <= hi < d (neither direction
    shown and neither can reach d); else undecided. A predicted FALL mirrors it.
  * a size word of the paper: a LARGE rise ("considerably", "severe") holds only if
    lo > d; a rise shown but inside d (0 < lo, hi < d) is "smaller than said". A PALTRY
    rise ("paltry improvement") holds if the effect is inside d and not shown negative
    (-d < lo, hi < d, hi >= 0); beyond d (lo > d) it is "larger than said". Both reverse
    as a plain rise does.
  * COMPARABLE: holds if -d < lo and hi < d; contradicted if lo >= d or hi <= -d; else
    undecided (its mirror is itself).
  * NO GAIN (not better; higher is better): contradicted by any significant gain (lo > 0),
    "small" when hi < d; holds if lo <= 0 and hi < d; else undecided. NO LOSS mirrors it.
  * not decidable here, with the reason: fewer than MIN_CONCEPTS concepts (n = ...); the
    reference sits at the metric's ceiling (a rise, no gain) or floor (a fall, no loss),
    within d of a bound the metric cannot pass (an oracle share's 1 or 0; for a rank
    correlation, every setup ranked sits there); or rows are missing (which setup, at
    which guidance or set size, which metric or column, or the setups that set d).

Claims. Verdicts are ordered from strongest to weakest (`STRENGTH`). A claim takes the
k-th strongest of its parts' verdicts: k = every part for a claim about all its parts (as
strong as its weakest part), k = half the parts, rounded up, for "many" (the paper's "many
of the baselines"), k = 1 for "any" (an existential claim: the learning rate CAN move the
word, one rate is enough; and inside claim 7, an extension does not dominate the single
word when ANY of its metrics shows no gain). Mechanism checks are shown with their effect
and take no part in the verdict.
"""
from __future__ import annotations

import math

FRACTION = 0.5                  # of each metric's spread (SD) across the learned setups
OWN_FRACTION = 0.1              # of the single word's own budget (training.steps)
CORRELATION_SPAN = 2.0          # a rank correlation runs from -1 to +1
CORRELATION_FRACTION = 0.1
MIN_CONCEPTS = 4                # fewer: the part is not decidable here
SENSITIVITY = (0.5, 2.0)        # d is scaled by these for the sensitivity table

RISE, FALL, COMPARABLE, NO_GAIN, NO_LOSS = "rise", "fall", "comparable", "no gain", "no loss"
LARGE, PALTRY = "large", "paltry"       # the paper's size words ("considerably", "severe"; "paltry")
HOLDS, SMALL, NOT_DECIDABLE = "holds", "holds (small)", "not decidable here"
UNDECIDED, NEGLIGIBLE = "undecided", "negligible"
SMALLER, LARGER = "smaller than said", "larger than said"
REVERSED, REVERSED_SMALL = "reversed", "reversed (small)"
CONTRADICTED, CONTRADICTED_SMALL = "contradicted", "contradicted (small)"
NOT_REPRODUCED = "not reproduced"   # a claim of a successor whose toy port lacks a defining part
# Strongest first: a claim's verdict is the k-th of its parts' in this order.
STRENGTH = (HOLDS, SMALL, NOT_DECIDABLE, UNDECIDED, SMALLER, LARGER, NEGLIGIBLE, REVERSED_SMALL,
            CONTRADICTED_SMALL, REVERSED, CONTRADICTED, NOT_REPRODUCED)
AGAINST = (LARGER, REVERSED_SMALL, CONTRADICTED_SMALL, REVERSED, CONTRADICTED)   # against the paper
# A verdict and the verdict of the mirrored interval, where the mirror is another verdict.
MIRROR = {HOLDS: REVERSED, SMALL: REVERSED_SMALL, SMALLER: REVERSED_SMALL}
MIRROR_EXPECT = {RISE: FALL, FALL: RISE, NO_GAIN: NO_LOSS, NO_LOSS: NO_GAIN, COMPARABLE: COMPARABLE}
ALL, MANY, ANY = "all", "many", "any"


def smallest_effect(spread: float, fraction: float = FRACTION) -> float:
    return fraction * abs(spread)


def part_verdict(expect: str, lo: float, hi: float, d: float, size: str | None = None) -> str:
    """The verdict of one part from its 95% interval and the metric's d (module doc)."""
    if not all(map(math.isfinite, (lo, hi, d))):
        return UNDECIDED
    if expect == FALL:  # the mirror image of a rise
        expect, lo, hi = RISE, -hi, -lo
    if expect == NO_LOSS:
        expect, lo, hi = NO_GAIN, -hi, -lo
    if expect == RISE:
        if hi < 0:
            return REVERSED_SMALL if lo > -d else REVERSED
        if size == PALTRY:
            if lo > d:
                return LARGER
            return HOLDS if -d < lo and hi < d else UNDECIDED
        if lo > 0:
            if size == LARGE:
                return HOLDS if lo > d else SMALLER if hi < d else UNDECIDED
            return SMALL if hi < d else HOLDS
        return NEGLIGIBLE if -d < lo and hi < d else UNDECIDED
    if expect == COMPARABLE:
        return HOLDS if -d < lo and hi < d else CONTRADICTED if lo >= d or hi <= -d else UNDECIDED
    if expect == NO_GAIN:
        if lo > 0:
            return CONTRADICTED_SMALL if hi < d else CONTRADICTED
        return HOLDS if hi < d else UNDECIDED
    raise ValueError(f"unknown expectation {expect!r}")


# Intervals in units of d that visit every region of the table; each is printed with its mirror.
PROBES = ((0.2, 0.8), (0.2, 1.6), (1.2, 1.8), (-0.5, 0.5), (-0.5, 1.5), (-1.5, 1.5), (0.0, 0.5))
KINDS = ((RISE, None), (RISE, LARGE), (RISE, PALTRY), (COMPARABLE, None), (NO_GAIN, None))


def truth_table() -> list[tuple]:
    """(expectation, size, (lo, hi), verdict, mirrored expectation, its verdict) in units of d:
    every interval beside its mirror, each verdict computed by part_verdict."""
    out = []
    for expect, size in KINDS:
        for lo, hi in PROBES:
            for a, b in ((lo, hi), (-hi, -lo)):
                out.append((expect, size, (a, b), part_verdict(expect, a, b, 1.0, size),
                            MIRROR_EXPECT[expect], part_verdict(MIRROR_EXPECT[expect], -b, -a, 1.0, size)))
    return out


def bounds(metric: str) -> tuple[float, float] | None:
    """The values a metric cannot pass: an oracle score is a share of attributes."""
    return (0.0, 1.0) if "oracle" in metric else None


def at_bound(expect: str, metric: str, reference: float, d: float) -> str | None:
    """'ceiling' / 'floor' when the reference leaves the predicted move no room of size d."""
    b = bounds(metric)
    if b is None or not (math.isfinite(reference) and math.isfinite(d)):
        return None
    if expect in (RISE, NO_GAIN) and reference > b[1] - d:
        return "ceiling"
    if expect in (FALL, NO_LOSS) and reference < b[0] + d:
        return "floor"
    return None


def claim_verdict(verdicts: list[str], quantifier: str = ALL) -> str:
    """The k-th strongest part verdict: k = all parts, half of them (rounded up) or one."""
    if not verdicts:
        return NOT_DECIDABLE
    ranked = sorted(verdicts, key=STRENGTH.index)
    k = {ALL: len(ranked), MANY: math.ceil(len(ranked) / 2), ANY: 1}[quantifier]
    return ranked[k - 1]
