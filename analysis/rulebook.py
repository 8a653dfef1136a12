"""The rulebook: how a part of a claim, and then the claim, gets its verdict.

Equivalence testing, as a reviewer reads an effect: an interval that excludes 0 shows a
direction, an interval inside (-d, d) shows that no effect worth naming is there.

Smallest effect of interest. d = FRACTION x span, per metric, on the same rows the
claims are decided on; span = |image-only - prompt-only|, the mean over concepts of the
two reference setups' difference: the whole distance between a model that copies the
training images and one that ignores the concept. FRACTION = 0.1: a setup must move a
tenth of the way from one reference to the other before the difference counts. The
paper reads its claims off Figure 10(a), whose axes run from one reference to the other;
a tenth of that range is the smallest gap that shows as two separate points there, and
because it is a share of the span it scales with the evaluator (the toy CLIP's span is
0.675 on reconstruction, a real CLIP's a few hundredths to a few tenths). Metrics the
references lack: the distance to the initializer takes the single word's own distance
as its span, the inversion steps (training.steps) the single word's own steps, so an
early stop must save a tenth of the budget to count; a rank correlation takes its range, 2 (from -1 to +1), so d = 0.2.

Parts. A part compares a setup with a reference on one metric (or ranks setups on two
metrics) and has a paired 95% interval [lo, hi] of setup - reference (analysis/effects.py):
  * predicted RISE, checked in this order: holds if lo > 0, marked "small" when also
    hi < d; negligible if -d < lo <= 0 and hi < d (the predicted effect is ruled out, and
    so is any opposite effect worth naming); contradicted if hi < 0 (an opposite effect
    that may reach d); else undecided. A predicted FALL mirrors it.
  * COMPARABLE: holds if -d < lo and hi < d; contradicted if lo > d or hi < -d; else undecided.
  * NO GAIN (not better; higher is better): holds if hi < d; contradicted if lo > d; else
    undecided.
  * not decidable here, with the reason: the reference sits at the metric's ceiling (a
    rise or no-gain part) or floor (a fall part), i.e. within d of a bound the metric
    cannot pass (an oracle share's 1 or 0; for a rank correlation, every setup ranked
    sits there), so the predicted move has no room; or rows are missing (which setup, at
    which guidance or training-set size, or which metric, or the references that set d).

Claims. Verdicts are ordered from strongest to weakest: holds, holds (small), not
decidable here, undecided, negligible, contradicted. A claim takes the k-th strongest of
its parts' verdicts: k = every part for a claim about all its parts (so it is as strong
as its weakest part), k = half the parts, rounded up, for a claim about "many" of them
(the paper's "many of the baselines"), k = 1 for "any" (used inside a claim: an
extension does not dominate the single word when ANY of its metrics shows no gain).
Mechanism checks (e.g. the distance to the initializer beside regularization) are shown
with their effect and take no part in the verdict.
"""
from __future__ import annotations

import math

FRACTION = 0.1
CORRELATION_SPAN = 2.0          # a rank correlation runs from -1 to +1

RISE, FALL, COMPARABLE, NO_GAIN = "rise", "fall", "comparable", "no gain"
HOLDS, SMALL, NOT_DECIDABLE = "holds", "holds (small)", "not decidable here"
UNDECIDED, NEGLIGIBLE, CONTRADICTED = "undecided", "negligible", "contradicted"
# Strongest first: a claim's verdict is the k-th of its parts' in this order.
STRENGTH = (HOLDS, SMALL, NOT_DECIDABLE, UNDECIDED, NEGLIGIBLE, CONTRADICTED)
ALL, MANY, ANY = "all", "many", "any"


def smallest_effect(span: float) -> float:
    return FRACTION * abs(span)


def part_verdict(expect: str, lo: float, hi: float, d: float) -> str:
    """The verdict of one part from its 95% interval and the metric's d (module doc)."""
    if not all(map(math.isfinite, (lo, hi, d))):
        return UNDECIDED
    if expect == FALL:  # the mirror image of a rise
        expect, lo, hi = RISE, -hi, -lo
    if expect == RISE:
        if lo > 0:
            return SMALL if hi < d else HOLDS
        if -d < lo and hi < d:
            return NEGLIGIBLE
        return CONTRADICTED if hi < 0 else UNDECIDED
    if expect == COMPARABLE:
        return HOLDS if -d < lo and hi < d else CONTRADICTED if lo > d or hi < -d else UNDECIDED
    if expect == NO_GAIN:
        return HOLDS if hi < d else CONTRADICTED if lo > d else UNDECIDED
    raise ValueError(f"unknown expectation {expect!r}")


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
    if expect == FALL and reference < b[0] + d:
        return "floor"
    return None


def claim_verdict(verdicts: list[str], quantifier: str = ALL) -> str:
    """The k-th strongest part verdict: k = all parts, half of them (rounded up) or one."""
    if not verdicts:
        return NOT_DECIDABLE
    ranked = sorted(verdicts, key=STRENGTH.index)
    k = {ALL: len(ranked), MANY: math.ceil(len(ranked) / 2), ANY: 1}[quantifier]
    return ranked[k - 1]
