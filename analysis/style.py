"""One place for how each setup looks in every figure: label, color, marker, order.

Colors follow the setups' families so the trade-off curve reads at a glance: the
single-word family (ours and its learning rates) in blues, multi-vector variants in
oranges, regularized / per-image in greens, appendix-A methods in purples, human
captions in browns, the two reference points in black and gray.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import cycle

from tinv.engine.learners.specs import SUCCESSORS as LEARNERS


@dataclass(frozen=True)
class SetupStyle:
    label: str
    color: str
    marker: str


# Insertion order is the legend and table order.
SETUPS: dict[str, SetupStyle] = {
    "single_word": SetupStyle("Single-word (ours)", "#1f4e9c", "o"),
    "single_word_dvar": SetupStyle("Single-word + DVAR", "#2c7fb8", "p"),   # the same word, stopped early
    "high_lr": SetupStyle("High-LR", "#5b8fd6", "o"),
    "low_lr": SetupStyle("Low-LR", "#9cc0ee", "o"),
    "two_word": SetupStyle("Two-word", "#e07b1a", "s"),
    "three_word": SetupStyle("Three-word", "#b35806", "s"),
    "progressive": SetupStyle("Progressive", "#f2b266", "D"),
    "regularized": SetupStyle("Regularized", "#2e8b57", "^"),
    "per_image_tokens": SetupStyle("Per-image tokens", "#7fc97f", "v"),
    "pivotal_tuning": SetupStyle("Pivotal tuning", "#7b3294", "P"),
    "bipartite_inversion": SetupStyle("Bipartite inversion", "#c2a5cf", "X"),
    "human_captions_short": SetupStyle("Human captions (short)", "#8c564b", "h"),
    "human_captions_long": SetupStyle("Human captions (long)", "#c49c94", "H"),
    # the paper's successors (issue 21), as the learner registry names and orders them
    # (tinv/engine/learners/specs.py), in reds: each its own marker
    **{s.method: SetupStyle(s.label, color, marker) for s, (color, marker) in zip(LEARNERS, cycle((
        ("#d62728", "d"), ("#e6550d", "8"), ("#a50f15", "<"), ("#fb6a4a", ">"), ("#67000d", "D"),
        ("#fcae91", "p"))))},
    "image_only": SetupStyle("Image only", "#000000", "*"),
    "prompt_only": SetupStyle("Prompt only", "#7f7f7f", "*"),
}
# Reference points, not methods: drawn larger and never joined by lines.
REFERENCES = ("image_only", "prompt_only")
SUCCESSORS = tuple(s.method for s in LEARNERS)
HUMAN_CAPTIONS = ("human_captions_short", "human_captions_long")

_FALLBACK_COLORS = ("#17becf", "#bcbd22", "#e377c2", "#d62728", "#9467bd")


def style(setup: str) -> SetupStyle:
    """The style of a setup; an unknown one (a new YAML method) still gets a stable look."""
    if setup in SETUPS:
        return SETUPS[setup]
    base, at, n = setup.partition("@")
    if at and base in SETUPS:       # NeTI truncated at inference: its own color, a hollow marker's look
        s = SETUPS[base]
        return SetupStyle(f"{s.label}, truncated to {n}", s.color, "1")
    color = _FALLBACK_COLORS[sum(map(ord, setup)) % len(_FALLBACK_COLORS)]
    return SetupStyle(setup.replace("_", " "), color, "o")


def order(setups) -> list[str]:
    """Known setups in the canonical order, then unknown ones alphabetically."""
    known = [s for s in SETUPS if s in set(setups)]
    truncated = sorted((s for s in set(setups) - set(SETUPS) if s.partition("@")[0] in SETUPS),
                       key=lambda s: (s.partition("@")[0], -int(s.partition("@")[2] or 0)))
    return known + truncated + sorted(set(setups) - set(SETUPS) - set(truncated))
