"""Figure 10(a): the distortion-editability trade-off, one point per setup, 95% intervals.

    python analysis/plot_tradeoff.py results.csv -o tradeoff.png [--editability meanemb|persample]
                                     [--family clip|dino|oracle] [--x editability|reconstruction]

Reads only the CSV. x = editability, y = reconstruction (the paper's orientation); each
point is the mean over concepts of the per-concept mean, with horizontal and vertical
95% bootstrap intervals over concepts and samples (analysis/table.py). Image-only and
prompt-only are drawn as reference stars. A table holding several comparable groups
(objects and styles, two evaluation protocols) gets one panel per group, titled with its
protocol: their rows are never pooled. Writes PNG and PDF.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import protocol, style  # noqa: E402
from analysis.table import (add_row_options, AXIS_LABELS, N_BOOT, SETUP_COLUMN, fail, load_results, metric_pair,  # noqa: E402
                            require_metrics, save_figure, summarize, where)


# Figure 10(a) of the paper puts editability (text similarity) on x and reconstruction
# (image similarity) on y; --x reconstruction swaps them.
PAPER_X = "editability"


def plot_tradeoff(df: pd.DataFrame, editability: str = "meanemb", family: str = "clip",
                  n_boot: int = N_BOOT, ax=None, x: str = PAPER_X):
    """Draw the trade-off; returns (figure, summary table with one line per setup).

    Each setup is one `ax.errorbar` container labelled "<n> <setup label>"; its data line
    (container.lines[0]) has gid = the setup name, its number label gid = "label:<setup>".
    Points carry numbers, keyed in the legend, placed so that no two labels overlap."""
    if x not in ("editability", "reconstruction"):
        raise ValueError(f"--x {x!r}: choose editability (the paper's Figure 10(a)) or reconstruction")
    protocol.require_comparable(df)
    rec, edit = metric_pair(family, editability)
    require_metrics(df, [rec, edit])
    summary = summarize(df, [rec, edit], by=(SETUP_COLUMN,), n_boot=n_boot)
    summary = summary.dropna(subset=[rec, edit])
    summary = summary.set_index(SETUP_COLUMN).loc[style.order(summary[SETUP_COLUMN])].reset_index()
    xm, ym = (edit, rec) if x == "editability" else (rec, edit)

    fig, ax = (plt.subplots(figsize=(6.4, 5.2)) if ax is None else (ax.figure, ax))
    points = []
    for number, (_, s) in enumerate(summary.iterrows(), 1):
        name = s[SETUP_COLUMN]
        st = style.style(name)
        is_ref = name in style.REFERENCES
        container = ax.errorbar(
            [s[xm]], [s[ym]],
            xerr=[[s[xm] - s[f"{xm}.lo"]], [s[f"{xm}.hi"] - s[xm]]],
            yerr=[[s[ym] - s[f"{ym}.lo"]], [s[f"{ym}.hi"] - s[ym]]],
            fmt=st.marker, color=st.color, markersize=14 if is_ref else 8,
            markeredgecolor="black" if is_ref else st.color, capsize=3, elinewidth=1,
            label=f"{number}  {st.label}", gid=name)
        container.lines[0].set_gid(name)  # containers have no gid; the data line does
        points.append((name, str(number), s[xm], s[ym], "black" if is_ref else st.color))
    ax.set_xlabel(AXIS_LABELS[xm])
    ax.set_ylabel(AXIS_LABELS[ym])
    ax.set_title(f"Distortion-editability trade-off ({family}, 95% bootstrap CI)\n"
                 + textwrap.fill(protocol.describe(df), 90), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    place_labels(ax, points)
    return fig, summary


# Offsets (points) tried in turn around a marker: near first, then further out.
_OFFSETS = [(dx * r, dy * r) for r in (10, 15, 21, 28, 38)
            for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1.3, 0), (-1.3, 0), (0, 1.3), (0, -1.3))]


def place_labels(ax, points) -> list:
    """Number labels beside their markers, each at the first offset where it overlaps no
    label placed before it and no marker; a leader line joins a far label to its point."""
    fig = ax.figure
    ax.set_xlim(ax.get_xlim())  # freeze the limits: placement is in display space
    ax.set_ylim(ax.get_ylim())
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    marker_boxes = []
    for _, _, x, y, _ in points:
        px, py = to_px((x, y))
        r = 8 * fig.dpi / 72  # the bigger (reference) markers are 14 pt across
        marker_boxes.append((px - r, py - r, px + r, py + r))
    placed, texts = [], []
    for name, label, x, y, color in points:
        best = None
        for dx, dy in _OFFSETS:
            t = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                            fontweight="bold", color="black", ha="center", va="center", gid=f"label:{name}",
                            zorder=5, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec=color, lw=0.8))
            bb = t.get_window_extent(renderer)
            box = (bb.x0 - 1, bb.y0 - 1, bb.x1 + 1, bb.y1 + 1)
            hits = sum(_overlap(box, o) for o in placed + marker_boxes)
            if best is None or hits < best[0]:
                if best is not None:
                    best[1].remove()
                best = (hits, t, box, (dx, dy))
            else:
                t.remove()
            if hits == 0:
                break
        _, t, box, (dx, dy) = best
        if abs(dx) + abs(dy) > 26:
            t.arrow_patch = None
            t.set_annotation_clip(False)
            ax.annotate("", (x, y), xytext=(dx, dy), textcoords="offset points",
                        arrowprops=dict(arrowstyle="-", lw=0.5, color=color, shrinkA=4, shrinkB=3))
        placed.append(box)
        texts.append(t)
    return texts


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def plot_tradeoff_groups(df: pd.DataFrame, editability: str = "meanemb", family: str = "clip",
                         n_boot: int = N_BOOT, x: str = PAPER_X):
    """One panel per comparable group (objects and styles, two protocols: never pooled),
    each titled with its protocol. Returns (figure, summary with a `group` column)."""
    groups = protocol.comparable_groups(df)
    if len(groups) == 1:
        return plot_tradeoff(df, editability, family, n_boot, x=x)
    fig, axes = plt.subplots(1, len(groups), figsize=(9.0 * len(groups), 5.6), squeeze=False)
    # the layout is set before drawing: number labels are placed in display space
    fig.subplots_adjust(left=0.06, right=0.88, wspace=0.6, top=0.8)
    summaries = []
    for ax, (values, rows) in zip(axes[0], groups):
        _, summary = plot_tradeoff(rows, editability, family, n_boot, ax=ax, x=x)
        ax.set_title(f"{family}, 95% bootstrap CI\n" + textwrap.fill(protocol.title(values, rows), 70), fontsize=8)
        summaries.append(summary.assign(group=protocol.title(values, rows)))
    fig.suptitle(f"Distortion-editability trade-off: {len(groups)} protocols, one panel each (not comparable)",
                 fontsize=9)
    return fig, pd.concat(summaries, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Figure 10(a): editability vs reconstruction per setup.")
    ap.add_argument("csv", help="results table from analysis/collect.py")
    ap.add_argument("-o", "--out", required=True, help="figure path (.png or .pdf; the twin is written too)")
    ap.add_argument("--editability", choices=["meanemb", "persample"], default="meanemb",
                    help="meanemb: the paper's cosine of the mean image embedding; persample: the public code's mean cosine")
    ap.add_argument("--family", choices=["clip", "dino", "oracle"], default="clip")
    add_row_options(ap, "eval.guidance=5 model=toyworld")
    ap.add_argument("--x", choices=["editability", "reconstruction"], default=PAPER_X,
                    help="the metric on the x axis (default: editability, as the paper's Figure 10(a))")
    args = ap.parse_args(argv)
    try:
        df = where(load_results(args.csv), args.where)
        fig, summary = plot_tradeoff_groups(df, args.editability, args.family, args.n_boot, x=args.x)
    except (FileNotFoundError, ValueError) as e:
        return fail(e)
    for p in save_figure(fig, args.out):
        print(f"wrote {p}", file=sys.stderr)
    cols = [c for c in summary.columns if not c.endswith((".n_concepts", ".n_samples"))]
    print(summary[cols].to_string(index=False, float_format="{:.3f}".format), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
