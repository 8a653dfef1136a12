"""Appendix B, Figure 12: reconstruction and editability against training-set size.

    python analysis/plot_setsize.py results.csv -o setsize.png [--x concept.num_images]
        [--setups single_word] [--family clip|dino|oracle] [--editability meanemb|persample]

Reads only the CSV. One line per inverted setup over the number of training images;
image-only, prompt-only and the human captions of the same concept(s) as horizontal
references. CLIP reconstruction is read against the held-out images
(reconstruction_clip_heldout, one fixed set per concept, the same for every size) where
every point of a line has it (references lacking it are left out of that panel); against
each row's own training images otherwise, which a larger set changes (the axis says
which). Writes PNG and PDF.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import style  # noqa: E402
from analysis.table import CONCEPT_COLUMN, N_BOOT, SETUP_COLUMN, metric_pair  # noqa: E402
from analysis.versus import find_column, plot_versus, swept_rows, versus_main  # noqa: E402

HELDOUT, TRAINING = "reconstruction_clip_heldout", "reconstruction_clip"
# Where the harness may keep the number of training images, most specific first.
SETSIZE_COLUMNS = ("concept.n_images", "concept.num_images", "concept.n_images", "concept.max_images",
                   "data.num_images", "num_images", "n_images")


def plot_setsize(df: pd.DataFrame, x: str | None = None, setups=("single_word",),
                 family: str = "clip", editability: str = "meanemb", n_boot: int = N_BOOT):
    """Returns (figure, per-size summary, reference summary)."""
    x = x or find_column(df, SETSIZE_COLUMNS, "the number of training images")
    references = style.REFERENCES + style.HUMAN_CAPTIONS
    metrics = list(metric_pair(family, editability))
    if family == "clip" and HELDOUT in df.columns:
        twins = _twins_without_heldout(df, x, setups)
        if twins is not None:
            metrics[0] = HELDOUT    # comparable across sizes; the training-set score is not
            df = df.drop(index=twins)
    return plot_versus(df, x, setups, references, metrics,
                       xlabel="Number of training images", logx=True,
                       title="Effect of the training-set size", n_boot=n_boot)


def _twins_without_heldout(df: pd.DataFrame, x: str, setups):
    """The lines' rows to leave out so that every point reads the held-out score, or None when
    some point cannot. A row without it may only go where a twin has it: a row of the same
    setup, concept and size with the same training-set score (the grid's own job, run before
    held-out images were scored, beside the set-size sweep's job of that size)."""
    lines = swept_rows(df, x, setups)
    if lines.empty:
        return None
    drop = []
    for _, cell in lines.groupby([SETUP_COLUMN, CONCEPT_COLUMN, x]):
        scored = cell[cell[HELDOUT].notna()]
        for i, row in cell[cell[HELDOUT].isna()].iterrows():
            if not np.isclose(scored[TRAINING], row[TRAINING], rtol=0, atol=1e-9).any():
                return None
            drop.append(i)
    return drop


def main(argv: list[str] | None = None) -> int:
    return versus_main(argv, plot_setsize, "Figure 12: scores against the number of training images.",
                       f"column holding the set size (default: first of {SETSIZE_COLUMNS} that varies)", ["single_word"])


if __name__ == "__main__":
    sys.exit(main())
