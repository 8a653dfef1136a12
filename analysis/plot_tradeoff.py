"""Figure 10(a): the distortion-editability trade-off, one point per setup, 95% intervals.

    python analysis/plot_tradeoff.py results.csv -o tradeoff.png [--editability meanemb|persample]
                                     [--family clip|dino|oracle]

Reads only the CSV. x = reconstruction, y = editability; each point is the mean over
concepts of the per-concept mean, with horizontal and vertical 95% bootstrap intervals
over concepts and samples (analysis/table.py). Image-only and prompt-only are drawn as
reference stars. Writes PNG and PDF.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import style  # noqa: E402
from analysis.table import (AXIS_LABELS, N_BOOT, SETUP_COLUMN, load_results, metric_pair,  # noqa: E402
                            require_metrics, save_figure, summarize, where)


def plot_tradeoff(df: pd.DataFrame, editability: str = "meanemb", family: str = "clip",
                  n_boot: int = N_BOOT, ax=None):
    """Draw the trade-off; returns (figure, summary table with one line per setup).

    Each setup is one `ax.errorbar` container labelled with the setup's label; its data
    line (container.lines[0]) has gid = the setup name, so tests and callers can find it."""
    rec, edit = metric_pair(family, editability)
    require_metrics(df, [rec, edit])
    summary = summarize(df, [rec, edit], by=(SETUP_COLUMN,), n_boot=n_boot)
    summary = summary.dropna(subset=[rec, edit])
    summary = summary.set_index(SETUP_COLUMN).loc[style.order(summary[SETUP_COLUMN])].reset_index()

    fig, ax = (plt.subplots(figsize=(6.4, 5.2)) if ax is None else (ax.figure, ax))
    for _, s in summary.iterrows():
        name = s[SETUP_COLUMN]
        st = style.style(name)
        is_ref = name in style.REFERENCES
        container = ax.errorbar(
            [s[rec]], [s[edit]],
            xerr=[[s[rec] - s[f"{rec}.lo"]], [s[f"{rec}.hi"] - s[rec]]],
            yerr=[[s[edit] - s[f"{edit}.lo"]], [s[f"{edit}.hi"] - s[edit]]],
            fmt=st.marker, color=st.color, markersize=14 if is_ref else 8,
            markeredgecolor="black" if is_ref else st.color, capsize=3, elinewidth=1,
            label=st.label, gid=name)
        container.lines[0].set_gid(name)  # containers have no gid; the data line does
        ax.annotate(st.label, (s[rec], s[edit]), xytext=(6, 6), textcoords="offset points",
                    fontsize=7, color=st.color if not is_ref else "black")
    ax.set_xlabel(AXIS_LABELS[rec])
    ax.set_ylabel(AXIS_LABELS[edit])
    ax.set_title(f"Distortion-editability trade-off ({family}, 95% bootstrap CI)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Figure 10(a): editability vs reconstruction per setup.")
    ap.add_argument("csv", help="results table from analysis/collect.py")
    ap.add_argument("-o", "--out", required=True, help="figure path (.png or .pdf; the twin is written too)")
    ap.add_argument("--editability", choices=["meanemb", "persample"], default="meanemb",
                    help="meanemb: the paper's cosine of the mean image embedding; persample: the public code's mean cosine")
    ap.add_argument("--family", choices=["clip", "dino", "oracle"], default="clip")
    ap.add_argument("--n-boot", type=int, default=N_BOOT)
    ap.add_argument("--where", nargs="+", default=[], metavar="COLUMN=VALUE",
                    help="keep only these rows, e.g. eval.guidance=5 model=toyworld")
    args = ap.parse_args(argv)
    try:
        df = where(load_results(args.csv), args.where)
        fig, summary = plot_tradeoff(df, args.editability, args.family, args.n_boot)
    except (FileNotFoundError, ValueError) as e:
        ap.error(str(e))
    for p in save_figure(fig, args.out):
        print(f"wrote {p}", file=sys.stderr)
    cols = [c for c in summary.columns if not c.endswith((".n_concepts", ".n_samples"))]
    print(summary[cols].to_string(index=False, float_format="{:.3f}".format), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
