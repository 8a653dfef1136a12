"""Appendix A, Figure 11: bipartite inversion and pivotal tuning across guidance scales.

    python analysis/plot_guidance.py results.csv -o guidance.png [--x eval.guidance]
        [--setups bipartite_inversion pivotal_tuning single_word] [--family ...] [--editability ...]

Reads only the CSV. The paper shows these two methods qualitatively at s = 1..10; here
their reconstruction and editability are lines over the guidance scale (single-word
inversion alongside when the sweep has it), image-only and prompt-only as references.
Writes PNG and PDF.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from analysis import style  # noqa: E402
from analysis.table import N_BOOT, metric_pair  # noqa: E402
from analysis.versus import find_column, plot_versus, versus_main  # noqa: E402

GUIDANCE_COLUMNS = ("eval.guidance", "eval.guidance_scale", "sampling.guidance",
                    "sampling.guidance_scale", "guidance", "guidance_scale")
SETUPS = ("bipartite_inversion", "pivotal_tuning", "single_word")


def plot_guidance(df: pd.DataFrame, x: str | None = None, setups=SETUPS, family: str = "clip",
                  editability: str = "meanemb", n_boot: int = N_BOOT):
    """Returns (figure, per-scale summary, reference summary)."""
    x = x or find_column(df[df["method"].isin(setups)], GUIDANCE_COLUMNS, "the guidance scale")
    return plot_versus(df, x, setups, style.REFERENCES, list(metric_pair(family, editability)),
                       xlabel="Guidance scale s", title="Advanced inversion across guidance scales",
                       n_boot=n_boot)


def main(argv: list[str] | None = None) -> int:
    return versus_main(argv, plot_guidance, "Figure 11: scores against the guidance scale.",
                       f"column holding the guidance scale (default: first of {GUIDANCE_COLUMNS} that varies)", SETUPS)


if __name__ == "__main__":
    sys.exit(main())
