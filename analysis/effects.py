"""Paired effects: each setup minus a reference setup, over the same concepts and seeds.

    python analysis/effects.py results.csv -o forest.png [--reference single_word]
        [--metrics reconstruction_clip ...] [--where concept.kind=object]

Differences between concepts dominate a setup's own interval (a hard concept is hard for
every setup), so two setups whose unpaired intervals overlap can still differ clearly.
Here every setup is compared with the reference on the concepts both have: per concept
the difference of mean scores, averaged over concepts, with a two-level bootstrap that
draws the same concepts for both setups and, where the two rows sampled with the same
noise seeds (equal sample counts), the same samples too (analysis/table.py,
`paired_bootstrap`). The forest plot shows one panel per metric, one line per setup.
Writes PNG and PDF; the effects table goes to stderr (and to --table CSV).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import protocol, style  # noqa: E402
from analysis.table import (add_row_options, CONCEPT_COLUMN, N_BOOT, SEED, SETUP_COLUMN, Pair, atomic_write_text,  # noqa: E402
                            fail, load_results, paired_bootstrap, save_figure, short_name, where)

REFERENCE = "single_word"
# Every metric an effect can be taken on, in the order tables and panels show them.
METRICS = ("reconstruction_clip", "editability_clip_meanemb", "editability_clip_persample",
           "reconstruction_dino", "reconstruction_oracle", "editability_oracle",
           "reconstruction_oracle_named", "reconstruction_oracle_unnamed",
           "identity_oracle_named", "identity_oracle_unnamed", "embedding_norm", "embedding_dist_init",
           "training.steps")    # what an early stop (stop=dvar) saves
# The forest plot's panels: the paper's pair (both editability variants), the oracle's.
FOREST_METRICS = ("reconstruction_clip", "editability_clip_meanemb", "editability_clip_persample",
                  "reconstruction_oracle", "editability_oracle", "reconstruction_oracle_unnamed")


def _row_scores(r: pd.Series, metric: str) -> np.ndarray:
    """A row's per-sample scores (NaN kept, so positions stay aligned), or its one value."""
    cell = r.get(f"scores.{metric}")
    if isinstance(cell, str) and cell.startswith("["):
        values = np.asarray([np.nan if v is None else v for v in json.loads(cell)], dtype=float)
        if np.isfinite(values).any():
            return values
    v = r.get(metric)
    return np.asarray([float(v)]) if v is not None and pd.notna(v) else np.empty(0)


def concept_pairs(setup_rows: pd.DataFrame, ref_rows: pd.DataFrame, metric: str) -> list[Pair]:
    """One Pair per concept both have. Paired by sample when each side is one row with
    the same number of samples (same seeds: the protocol check made eval seeds equal)."""
    pairs = []
    ref = dict(tuple(ref_rows.groupby(CONCEPT_COLUMN, sort=True)))
    for concept, rows in setup_rows.groupby(CONCEPT_COLUMN, sort=True):
        if concept not in ref:
            continue
        a = [_row_scores(r, metric) for _, r in rows.iterrows()]
        b = [_row_scores(r, metric) for _, r in ref[concept].iterrows()]
        if len(a) == 1 and len(b) == 1 and len(a[0]) == len(b[0]) > 1:
            keep = np.isfinite(a[0]) & np.isfinite(b[0])
            if keep.any():
                pairs.append(Pair(a[0][keep], b[0][keep], True))
            continue
        a, b = np.concatenate(a), np.concatenate(b)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size and b.size:
            pairs.append(Pair(a, b, False))
    return pairs


def all_metrics(df: pd.DataFrame) -> list[str]:
    """METRICS, then the per-attribute oracle metrics the table has (shape, color, ...)."""
    extra = sorted(c for c in df.columns if c.startswith(("reconstruction_oracle_", "identity_oracle_"))
                   and "." not in c and c not in METRICS)
    return list(METRICS) + extra


def has_metric(df: pd.DataFrame, metric: str) -> bool:
    return metric in df.columns and df[metric].notna().any()


def paired_effects(df: pd.DataFrame, reference: str = REFERENCE, metrics=None, setups=None,
                   n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """One line per (setup, metric): effect = setup - reference, its 95% interval, the
    concepts and samples it rests on, and how it was paired ("samples" or "concepts")."""
    if reference not in set(df[SETUP_COLUMN]):
        raise ValueError(f"reference setup {reference!r} has no rows; setups present: "
                         f"{style.order(df[SETUP_COLUMN].unique())} (pick one with --reference)")
    metrics = [m for m in (metrics or all_metrics(df)) if has_metric(df, m)]
    ref_rows = df[df[SETUP_COLUMN] == reference]
    setups = [s for s in style.order(setups or df[SETUP_COLUMN].unique()) if s != reference]
    lines = []
    for s in setups:
        rows = df[df[SETUP_COLUMN] == s]
        for m in metrics:
            pairs = concept_pairs(rows, ref_rows, m)
            est = paired_bootstrap(pairs, n_boot, seed=seed)
            lines.append({SETUP_COLUMN: s, "metric": m, "effect": est.mean, "lo": est.lo, "hi": est.hi,
                          "n_concepts": est.n_concepts, "n_samples": est.n_samples,
                          "pairing": ("samples" if pairs and all(p.paired for p in pairs) else
                                      "concepts" if pairs else "")})
    return pd.DataFrame(lines, columns=[SETUP_COLUMN, "metric", "effect", "lo", "hi", "n_concepts",
                                        "n_samples", "pairing"])


def format_effect(effect: float, lo: float, hi: float) -> str:
    if not np.isfinite(effect):
        return "n/a"
    return f"{effect:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def plot_forest(df: pd.DataFrame, reference: str = REFERENCE, metrics=None, n_boot: int = N_BOOT,
                references: bool = False):
    """One panel per metric, one horizontal interval per setup, a line at 0. Returns
    (figure, effects table). Each interval's data line has gid = the setup name. The
    reference points (image-only, prompt-only) sit far off on every axis and would
    squeeze the learned setups into a sliver: they are left out unless `references`."""
    protocol.require_comparable(df)
    metrics = [m for m in (metrics or FOREST_METRICS) if has_metric(df, m)]
    if not metrics:
        raise ValueError(f"the table has none of the metrics {list(FOREST_METRICS)}")
    setups = [s for s in df[SETUP_COLUMN].unique() if references or s not in style.REFERENCES]
    effects = paired_effects(df, reference, metrics, setups=setups, n_boot=n_boot)
    if effects.empty:
        raise ValueError(f"no setup besides the reference {reference!r} to compare")
    setups = [s for s in style.order(effects[SETUP_COLUMN].unique())]
    ncol = min(3, len(metrics))
    nrow = -(-len(metrics) // ncol)
    height = 0.32 * len(setups) + 1.4
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, height * nrow), squeeze=False, sharey=True)
    y = np.arange(len(setups))[::-1]
    for ax, m in zip(axes.flat, metrics):
        e = effects[effects["metric"] == m].set_index(SETUP_COLUMN)
        for yi, s in zip(y, setups):
            if s not in e.index or not np.isfinite(e.loc[s, "effect"]):
                continue
            r = e.loc[s]
            st = style.style(s)
            excludes0 = r["lo"] > 0 or r["hi"] < 0
            c = ax.errorbar([r["effect"]], [yi], xerr=[[r["effect"] - r["lo"]], [r["hi"] - r["effect"]]],
                            fmt=st.marker, color=st.color, ms=6, capsize=2, elinewidth=1.6 if excludes0 else 0.9,
                            mfc=st.color if excludes0 else "white")
            c.lines[0].set_gid(s)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(short_name(m), fontsize=9)
        ax.set_xlabel(f"difference vs {style.style(reference).label}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    axes[0][0].set_yticks(y, [style.style(s).label for s in setups])
    fig.suptitle(f"Paired effects vs {style.style(reference).label} (95% two-level bootstrap; "
                 "filled: interval excludes 0)\n" + protocol.describe(df), fontsize=9)
    fig.tight_layout()
    return fig, effects


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Paired effects of every setup against a reference, as a forest plot.")
    ap.add_argument("csv", help="results table from analysis/collect.py")
    ap.add_argument("-o", "--out", required=True, help="figure path (.png or .pdf; the twin is written too)")
    ap.add_argument("--reference", default=REFERENCE, help="the setup every other is compared with")
    ap.add_argument("--metrics", nargs="+", help=f"default: those of {list(FOREST_METRICS)} the table has")
    ap.add_argument("--table", help="also write the effects (every metric, every setup) to this CSV")
    ap.add_argument("--references", action="store_true", help="draw image-only and prompt-only too")
    add_row_options(ap)
    args = ap.parse_args(argv)
    try:
        df = where(load_results(args.csv), args.where)
        fig, effects = plot_forest(df, args.reference, args.metrics, args.n_boot, args.references)
        if args.table:
            effects = paired_effects(df, args.reference, n_boot=args.n_boot)
            atomic_write_text(Path(args.table), effects.to_csv(index=False))
        paths = save_figure(fig, args.out)
    except (FileNotFoundError, ValueError) as e:
        return fail(e)
    for p in paths:
        print(f"wrote {p}", file=sys.stderr)
    print(effects.to_string(index=False, float_format="{:+.3f}".format), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
