"""Read the results CSV and summarize it with hierarchical bootstrap intervals.

The interval of a setup's score resamples both levels the paper's numbers average over:
concepts (with replacement), then the samples inside each drawn concept (with
replacement). A concept's samples are the `scores.<metric>` lists of all its rows
(seeds pooled); a row without per-sample scores contributes its single `metric` value.
`paired_bootstrap` does the same for the difference of two setups over shared concepts
(analysis/effects.py).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# one way to write a file whole (tables, reports, figures): the library's
from tinv.core.atomic import replacing as atomic_file, write_text as atomic_write_text  # noqa: F401 (re-exported)

SEED = 0            # bootstrap seed: figures are reproducible bit for bit
N_BOOT = 2000
SETUP_COLUMN = "method"
CONCEPT_COLUMN = "concept"

# (family, editability variant) -> (reconstruction metric, editability metric)
_FAMILIES = {
    "clip": ("reconstruction_clip", "editability_clip_{variant}"),
    "dino": ("reconstruction_dino", "editability_clip_{variant}"),  # DINO has no text side
    "oracle": ("reconstruction_oracle", "editability_oracle"),
}
AXIS_LABELS = {
    "reconstruction_clip": "Reconstruction: CLIP image-image similarity",
    "reconstruction_dino": "Reconstruction: DINO image-image similarity",
    "reconstruction_clip_heldout": "Reconstruction: CLIP similarity to held-out images",
    "reconstruction_oracle": "Reconstruction: oracle attribute accuracy",
    "editability_clip_meanemb": "Editability: CLIP text-image similarity\n(mean embedding, paper)",
    "editability_clip_persample": "Editability: CLIP text-image similarity\n(per-sample mean, public code)",
    "editability_oracle": "Editability: oracle prompt accuracy",
}
# Short names for panels and tables; metrics issue 11 adds to every toy-world row.
SHORT_NAMES = {
    "reconstruction_clip": "reconstruction (CLIP)",
    "editability_clip_meanemb": "editability (CLIP, mean emb.)",
    "editability_clip_persample": "editability (CLIP, per-sample)",
    "reconstruction_dino": "reconstruction (DINO)",
    "reconstruction_oracle": "reconstruction (oracle)",
    "editability_oracle": "editability (oracle)",
    "reconstruction_oracle_named": "reconstruction, named attributes (oracle)",
    "reconstruction_oracle_unnamed": "reconstruction, unnamed attributes (oracle)",
    "identity_oracle_named": "identity under edits, named (oracle)",
    "identity_oracle_unnamed": "identity under edits, unnamed (oracle)",
    "embedding_norm": "embedding norm",
    "embedding_dist_init": "distance to initializer ||v - v_init||",
    "training.steps": "inversion steps",
    "dreambench_dino": "DINO (DreamBench)",
    "dreambench_clip_i": "CLIP-I (DreamBench)",
    "dreambench_clip_t": "CLIP-T (DreamBench)",
    "dreambench_clip_i_clipscore": "image alignment, CLIPScore scale",
    "dreambench_clip_t_clipscore": "text alignment, CLIPScore scale",
    "reconstruction_clip_heldout": "reconstruction on held-out images (CLIP)",
    "identity_oracle_d1": "identity under one-change edits (oracle)",
    "identity_oracle_d2": "identity under two-change edits (oracle)",
    "identity_oracle_d3": "identity under edits of three or more changes (oracle)",
    "training.steps_to_reference_loss": "steps to the single word's final loss",
}
# NeTI's truncation is an evaluation option: a row truncated to N dimensions is its own
# setup, "neti@N", so a sweep over it traces NeTI's curve as setups do.
TRUNCATION = "eval.neti_truncation"


def short_name(metric: str) -> str:
    if metric in SHORT_NAMES:
        return SHORT_NAMES[metric]
    if metric.startswith("reconstruction_oracle_"):
        return f"reconstruction, {metric.rpartition('_')[2]} (oracle)"
    return metric


def metric_pair(family: str = "clip", editability: str = "meanemb") -> tuple[str, str]:
    """The (reconstruction, editability) metric names a figure plots."""
    if family not in _FAMILIES:
        raise ValueError(f"unknown metric family {family!r}; choose one of {sorted(_FAMILIES)}")
    if editability not in ("meanemb", "persample"):
        raise ValueError(f"unknown editability variant {editability!r}; choose meanemb or persample")
    rec, edit = _FAMILIES[family]
    return rec, edit.format(variant=editability)


def load_results(path: str | Path) -> pd.DataFrame:
    """The CSV written by collect.py, only the rows with status ok."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results table {path} does not exist (write it with analysis/collect.py)")
    df = pd.read_csv(path)
    for col in (SETUP_COLUMN, CONCEPT_COLUMN):
        if col not in df.columns:
            raise ValueError(f"{path} has no column {col!r}; is it a table from analysis/collect.py?")
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    df = df.reset_index(drop=True)
    if TRUNCATION in df.columns and df[TRUNCATION].notna().any():
        cut = df[TRUNCATION].notna()
        df.loc[cut, SETUP_COLUMN] = df.loc[cut, SETUP_COLUMN] + "@" + df.loc[cut, TRUNCATION].astype(int).astype(str)
    # collect.py stores job_dir relative to a runs root it names in <stem>.jobs.json,
    # itself relative to the table's folder; the gallery needs it to find the images.
    jobs = path.with_name(path.stem + ".jobs.json")
    try:
        root = json.loads(jobs.read_text()).get("runs_root")
    except (OSError, ValueError, AttributeError):
        root = None
    if root:
        df = df.copy()      # consolidated first: on a wide table an insert warns of fragmentation
        df["_runs_root"] = str((path.parent / root).resolve())
    return df


def add_row_options(ap, example: str = "concept.kind=object eval=paper") -> None:
    """The options every table reader shares: --n-boot and --where (rows to keep)."""
    ap.add_argument("--n-boot", type=int, default=N_BOOT)
    ap.add_argument("--where", nargs="+", default=[], metavar="COLUMN=VALUE",
                    help=f"keep only these rows, e.g. {example}")


def where(df: pd.DataFrame, conditions=()) -> pd.DataFrame:
    """Rows matching every `column=value` (e.g. eval.guidance=5.0, model=toyworld); a value
    compares as text, so 5 matches 5.0 only when written as the table writes it."""
    for cond in conditions:
        col, sep, value = cond.partition("=")
        if not sep or col not in df.columns:
            raise ValueError(f"--where {cond!r}: expected COLUMN=VALUE with a column of the table")
        as_text = df[col].map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
        try:
            value = f"{float(value):g}" if pd.api.types.is_float_dtype(df[col]) else value
        except ValueError:
            pass
        df = df[as_text == value]
    return df


def require_metrics(df: pd.DataFrame, metrics, source: str = "the results table") -> None:
    missing = [m for m in metrics if m not in df.columns or df[m].isna().all()]
    if missing:
        have = [c for c in df.columns if c in AXIS_LABELS]
        raise ValueError(f"{source} has no values for {missing}; metrics present: {have}")


def concept_samples(rows: pd.DataFrame, metric: str) -> list[np.ndarray]:
    """Per concept, the pooled per-sample scores of `metric` (empty concepts dropped)."""
    groups = []
    for _, g in rows.groupby(CONCEPT_COLUMN, sort=True):
        values: list[np.ndarray] = []
        for _, r in g.iterrows():
            cell = r.get(f"scores.{metric}")
            row = np.asarray([np.nan if v is None else v for v in json.loads(cell)], dtype=float) \
                if isinstance(cell, str) and cell.startswith("[") else np.empty(0)
            row = row[np.isfinite(row)]  # a sample the scorer could not score says NaN
            if row.size == 0 and pd.notna(r.get(metric)):
                row = np.asarray([float(r[metric])])
            values.append(row)
        arr = np.concatenate(values) if values else np.empty(0)
        if arr.size:
            groups.append(arr)
    return groups


@dataclass
class Estimate:
    mean: float
    lo: float
    hi: float
    n_concepts: int
    n_samples: int


def hierarchical_bootstrap(groups: list[np.ndarray], n_boot: int = N_BOOT, ci: float = 0.95,
                           seed: int = SEED) -> Estimate:
    """Mean of concept means, with a percentile interval from resampling concepts and
    then samples within each concept. One inner resample per concept per replicate
    (a concept drawn twice in one replicate reuses it): the usual two-stage shortcut."""
    if not groups:
        return Estimate(np.nan, np.nan, np.nan, 0, 0)
    rng = np.random.default_rng(seed)
    inner = np.empty((len(groups), n_boot))
    for i, g in enumerate(groups):
        for start in range(0, n_boot, 256):  # chunks keep memory at 256 x n
            b = min(256, n_boot - start)
            inner[i, start:start + b] = g[rng.integers(0, len(g), (b, len(g)))].mean(axis=1)
    pick = rng.integers(0, len(groups), (n_boot, len(groups)))
    boot = inner[pick, np.arange(n_boot)[:, None]].mean(axis=1)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    mean = float(np.mean([g.mean() for g in groups]))
    return Estimate(mean, float(lo), float(hi), len(groups), int(sum(len(g) for g in groups)))


def _resampled_means(values: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """n_boot means of `values` resampled with replacement, in chunks of 256 x n."""
    out = np.empty(n_boot)
    for start in range(0, n_boot, 256):
        b = min(256, n_boot - start)
        out[start:start + b] = values[rng.integers(0, len(values), (b, len(values)))].mean(axis=1)
    return out


@dataclass
class Pair:
    """One concept's samples under a setup (a) and the reference (b). `paired`: sample i
    of a and of b share their noise seed, so their difference is resampled as one."""
    a: np.ndarray
    b: np.ndarray
    paired: bool


def paired_bootstrap(pairs: list[Pair], n_boot: int = N_BOOT, ci: float = 0.95,
                     seed: int = SEED) -> Estimate:
    """Mean over concepts of (mean a - mean b), with a two-level percentile interval:
    draw concepts with replacement (the same concepts for both setups: that is the
    pairing), then inside each concept draw samples; a seed-paired concept draws one set
    of indices for both, an unpaired one (other sample counts, e.g. image-only) draws each
    side on its own. n_samples counts the setup's samples."""
    if not pairs:
        return Estimate(np.nan, np.nan, np.nan, 0, 0)
    rng = np.random.default_rng(seed)
    inner = np.empty((len(pairs), n_boot))
    for i, p in enumerate(pairs):
        if p.paired:
            inner[i] = _resampled_means(p.a - p.b, n_boot, rng)
        else:
            inner[i] = _resampled_means(p.a, n_boot, rng) - _resampled_means(p.b, n_boot, rng)
    pick = rng.integers(0, len(pairs), (n_boot, len(pairs)))
    boot = inner[pick, np.arange(n_boot)[:, None]].mean(axis=1)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    mean = float(np.mean([p.a.mean() - p.b.mean() for p in pairs]))
    return Estimate(mean, float(lo), float(hi), len(pairs), int(sum(len(p.a) for p in pairs)))


def summarize(df: pd.DataFrame, metrics, by=(SETUP_COLUMN,), n_boot: int = N_BOOT,
              seed: int = SEED) -> pd.DataFrame:
    """One line per group of `by`: for each metric its mean, lo, hi (95%) and counts."""
    lines = []
    for key, rows in df.groupby(list(by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        line = dict(zip(by, key))
        for m in metrics:
            est = hierarchical_bootstrap(concept_samples(rows, m), n_boot, seed=seed) \
                if m in rows.columns else Estimate(np.nan, np.nan, np.nan, 0, 0)
            line.update({m: est.mean, f"{m}.lo": est.lo, f"{m}.hi": est.hi,
                         f"{m}.n_concepts": est.n_concepts, f"{m}.n_samples": est.n_samples})
        lines.append(line)
    return pd.DataFrame(lines)


def save_figure(fig, out: str | Path) -> list[Path]:
    """Write `out` and its twin in the other format (PNG <-> PDF); returns both paths."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf"):
        raise ValueError(f"figure path {out} must end in .png or .pdf")
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out, out.with_suffix(".pdf" if out.suffix.lower() == ".png" else ".png")]
    for p in paths:  # a reader never sees half a figure
        with atomic_file(p, suffix=p.suffix) as tmp:
            fig.savefig(tmp, format=p.suffix[1:].lower(), dpi=150, bbox_inches="tight")
    return paths


def fail(error: Exception | str) -> int:
    """The command line's answer to bad input: one `error:` line on stderr, exit code 2."""
    print(f"error: {error}", file=sys.stderr)
    return 2
