"""Scores against one numeric config value (training-set size, guidance scale).

Shared by plot_setsize.py (Figure 12) and plot_guidance.py (Figure 11): one panel per
metric, one line per setup with 95% bootstrap intervals at each x, and the reference
setups (measured once, not along x) as horizontal lines with a shaded interval.
"""
from __future__ import annotations

import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import protocol, style  # noqa: E402
from analysis.table import (add_row_options, AXIS_LABELS, CONCEPT_COLUMN, N_BOOT, SETUP_COLUMN, fail, load_results,  # noqa: E402
                            require_metrics, save_figure, summarize, where)


def find_column(df: pd.DataFrame, candidates, what: str) -> str:
    """The first candidate column that varies in the table; a clear error otherwise."""
    for c in candidates:
        if c in df.columns and df[c].dropna().nunique() >= 2:
            return c
    raise ValueError(f"no column for {what} varies in the results table (looked for {list(candidates)}); "
                     f"pass the column name with --x")


def swept_rows(df: pd.DataFrame, x: str, setups) -> pd.DataFrame:
    """The rows of `setups` on the lines over x: only (setup, concept) pairs actually swept
    over x, so a table that also holds the Figure-10 grid does not pool its other concepts
    into the grid's default x."""
    rows = df[df[SETUP_COLUMN].isin(setups) & df[x].notna()]
    return rows[rows.groupby([SETUP_COLUMN, CONCEPT_COLUMN])[x].transform("nunique") >= 2]


def plot_versus(df: pd.DataFrame, x: str, setups, references, metrics, xlabel: str,
                title: str, n_boot: int = N_BOOT, logx: bool = False):
    """Returns (figure, summary of the lines, summary of the references).

    Line containers' data lines carry gid = setup name; reference lines carry gid = "ref:<setup>"."""
    if x not in df.columns:
        raise ValueError(f"results table has no column {x!r}")
    protocol.require_comparable(df, ignore=(x,))  # x is swept on purpose
    require_metrics(df, metrics)
    lines_df = swept_rows(df, x, setups)
    if lines_df.empty:
        raise ValueError(f"no concept of setups {list(setups)} was run at two or more values of {x!r}")
    lines = summarize(lines_df, metrics, by=(SETUP_COLUMN, x), n_boot=n_boot)
    lines = lines.sort_values([SETUP_COLUMN, x]).reset_index(drop=True)
    # References only for the concepts on the lines (Figure 12 is a single concept).
    same_concepts = df[CONCEPT_COLUMN].isin(lines_df[CONCEPT_COLUMN].unique())
    refs = summarize(df[df[SETUP_COLUMN].isin(references) & same_concepts], metrics, by=(SETUP_COLUMN,), n_boot=n_boot)

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for name in style.order(lines[SETUP_COLUMN].unique()):
            s = lines[(lines[SETUP_COLUMN] == name) & lines[m].notna()]
            st = style.style(name)
            c = ax.errorbar(s[x], s[m], yerr=[s[m] - s[f"{m}.lo"], s[f"{m}.hi"] - s[m]],
                            fmt="-" + st.marker, color=st.color, capsize=3, label=st.label)
            c.lines[0].set_gid(name)
        # a sweep without its references (setsize before setsize_references) draws the lines alone
        for name in style.order(refs[SETUP_COLUMN].unique() if SETUP_COLUMN in refs else []):
            r = refs[refs[SETUP_COLUMN] == name].iloc[0]
            if np.isnan(r[m]):
                continue
            st = style.style(name)
            line = ax.axhline(r[m], color=st.color, ls="--", lw=1, label=st.label, gid=f"ref:{name}")
            line.set_gid(f"ref:{name}")
            ax.axhspan(r[f"{m}.lo"], r[f"{m}.hi"], color=st.color, alpha=0.12, lw=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(AXIS_LABELS.get(m, m))
        if logx:
            ax.set_xscale("log")
        # Tick exactly the values that were run, as plain numbers.
        ax.set_xticks(sorted(lines[x].unique()), [f"{v:g}" for v in sorted(lines[x].unique())])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(title + " (95% bootstrap CI)\n" + protocol.describe(lines_df), fontsize=9)
    fig.tight_layout()
    return fig, lines, refs


def versus_main(argv, plot, description: str, x_help: str, default_setups) -> int:
    """The command line both line plots share: `plot(df, x, setups, family, editability, n_boot)`
    returns (figure, ...); writes PNG and PDF."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("csv")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--x", help=x_help)
    ap.add_argument("--setups", nargs="+", default=list(default_setups))
    ap.add_argument("--family", choices=["clip", "dino", "oracle"], default="clip")
    ap.add_argument("--editability", choices=["meanemb", "persample"], default="meanemb")
    add_row_options(ap, "eval.guidance=5 model=toyworld")
    args = ap.parse_args(argv)
    try:
        fig = plot(where(load_results(args.csv), args.where), args.x, args.setups, args.family,
                   args.editability, args.n_boot)[0]
    except (FileNotFoundError, ValueError) as e:
        return fail(e)
    for p in save_figure(fig, args.out):
        print(f"wrote {p}", file=sys.stderr)
    return 0
