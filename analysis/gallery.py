"""The gallery: each concept's training images beside samples of each setup, a few prompts.

    python analysis/gallery.py results.csv -o galleries/ [--setups ...] [--prompts 4] [--samples 2]

Unlike the plots this needs the images, so it follows each row's `job_dir` and
`artifacts` (paths relative to the job folder), as tinv/harness/job.py writes them:
  artifacts["samples"]  {cell key: grid PNG}; keys "reconstruction", "p00", "p01", ... (and
                        "p00_c0", ... for caption setups: the first caption is shown); each
                        grid is torchvision's save_image of `eval.num_samples` images (the
                        training images for image-only), min(8, n) per row, 1 px padding,
                        under a prompt label whose height is the PNG's `label_px` text.
                        A key may also name a folder of single images.
  training images       the row's `concept.folder` (else `concept.path`, relative to the
                        tinv package)
Prompts are labelled from `per_prompt`. Writes gallery-<concept>.png per concept.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from analysis import style  # noqa: E402
from analysis.table import CONCEPT_COLUMN, SETUP_COLUMN, load_results  # noqa: E402

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
GRID_PADDING, GRID_PER_ROW = 1, 8    # torchvision save_image as tinv/harness/job.py calls it
# A sample: an image file, or a (left, top, right, bottom) box inside a grid file.
Sample = tuple[Path, tuple[int, int, int, int] | None]


def resolve_job_dir(row: pd.Series) -> Path:
    """A row's job folder: `job_dir` as collect.py writes it (relative to the runs root),
    joined to the first root that holds it: the table's own hint (`runs_root` of
    <csv stem>.jobs.json, which load_results puts in the row as `_runs_root`), the row's
    `results_root`, $TINV_RUNS, ./runs. An absolute job_dir (older tables) is used as is."""
    job_dir = Path(str(row.get("job_dir", ".")))
    if job_dir.is_absolute():
        return job_dir
    roots = [row.get("_runs_root"), row.get("results_root"), os.environ.get("TINV_RUNS"), "runs"]
    roots = [Path(str(r)) for r in roots if isinstance(r, str) and r]
    for root in roots:
        if (root / job_dir).is_dir():
            return root / job_dir
    return (roots[0] if roots else Path(".")) / job_dir


def _images_in(folder: Path) -> list[Sample]:
    if not folder.is_dir():
        return []
    return [(p, None) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]


def _json(cell, default):
    return json.loads(cell) if isinstance(cell, str) and cell[:1] in "[{" else default


def _grid_boxes(width: int, height: int, n: int) -> list[tuple[int, int, int, int]] | None:
    """Tile boxes of a save_image grid of n square images, or None if the size does not fit."""
    per_row = min(GRID_PER_ROW, n)
    side, rest = divmod(width - GRID_PADDING, per_row)
    side -= GRID_PADDING
    rows = -(-n // per_row)
    if n < 1 or rest or side <= 0 or height != rows * (side + GRID_PADDING) + GRID_PADDING:
        return None
    step = side + GRID_PADDING
    return [(GRID_PADDING + (i % per_row) * step, GRID_PADDING + (i // per_row) * step,
             GRID_PADDING + (i % per_row) * step + side, GRID_PADDING + (i // per_row) * step + side)
            for i in range(n)]


def grid_tiles(path: Path, counts) -> list[Sample]:
    """The tiles of a save_image grid, for the first image count in `counts` that fits
    its size (the eval's num_samples; image-only grids hold the training images
    instead); the whole file if none does."""
    with Image.open(path) as im:
        width, height = im.size
        band = int(im.info.get("label_px", 0))   # tinv's prompt label above the grid
    for n in counts:
        boxes = _grid_boxes(width, height - band, int(n))
        if boxes:
            return [(path, (x0, y0 + band, x1, y1 + band)) for x0, y0, x1, y1 in boxes]
    return [(path, None)]


def _prompt_labels(row: pd.Series) -> dict[str, str]:
    """cell key -> prompt with S* for the placeholder, from per_prompt."""
    labels, p = {}, 0
    for entry in _json(row.get("per_prompt"), []):
        text = str(entry.get("prompt", "")).replace("{}", "S*")
        if entry.get("role") == "reconstruction":
            labels["reconstruction"] = text
        else:
            labels[f"p{p:02d}"] = text
            p += 1
    return labels


def sample_groups(row: pd.Series) -> list[tuple[str, list[Sample]]]:
    """[(prompt, samples), ...] of one row: reconstruction first, then p00, p01, ..."""
    value = _json(row.get("artifacts"), {}).get("samples")
    if not isinstance(value, dict):
        return []
    job_dir = resolve_job_dir(row)
    counts = [c for c in (row.get("eval.num_samples"), row.get("concept.n_images")) if pd.notna(c)]
    labels = _prompt_labels(row)
    groups = {}
    for key, rel in value.items():
        m = re.fullmatch(r"(reconstruction|p\d+)(?:_c(\d+))?", key)
        if m is None or (m.group(2) not in (None, "0")) or m.group(1) in groups:
            continue  # one caption per prompt is enough for a gallery
        path = job_dir / rel
        if path.is_dir():
            groups[m.group(1)] = _images_in(path)
        elif path.is_file():
            groups[m.group(1)] = grid_tiles(path, counts)
    order = sorted(groups, key=lambda k: (k != "reconstruction", k))
    return [(labels.get(k, k), groups[k]) for k in order]


def training_images(row: pd.Series) -> list[Sample]:
    for col in ("concept.folder", "concept.path"):
        path = row.get(col)
        if not isinstance(path, str):
            continue
        p = Path(path)
        if not p.is_absolute():
            try:  # the harness resolves concept paths against the tinv package folder
                import tinv
                p = Path(tinv.__file__).parent / p
            except ImportError:
                pass
        if _images_in(p):
            return _images_in(p)
    return []


CELL = 96   # pixels per thumbnail
GAP = 4     # between thumbnails; a prompt block is set off by 3 gaps
TITLE = 22  # room above the first setup row for the prompts


def _thumb(sample: Sample) -> np.ndarray:
    path, box = sample
    with Image.open(path) as im:
        im = im.convert("RGB")
        return np.asarray((im.crop(box) if box else im).resize((CELL, CELL), Image.Resampling.BICUBIC))


@dataclass
class Grid:
    """A gallery as one picture (one imshow is far faster than hundreds of axes)."""
    canvas: np.ndarray          # H x W x 3 uint8, white where no image
    row_labels: list[str]       # "Training images", then the setup names
    col_titles: list[str]       # one prompt per block of n_samples columns
    filled: np.ndarray          # rows x columns bool: which cells hold an image
    n_samples: int

    def cell_origin(self, i: int, j: int) -> tuple[int, int]:
        """Top-left pixel of cell (row i, column j)."""
        return i * (CELL + GAP) + (TITLE if i else 0), j * (CELL + GAP) + (j // self.n_samples) * 2 * GAP


def gallery_grid(rows: pd.DataFrame, setups=None, n_prompts: int = 4, n_samples: int = 2) -> Grid:
    """One concept: a training-image row, then one row per setup with `n_samples` samples
    for each of the first `n_prompts` prompts."""
    by_setup = {}
    for name, g in rows.groupby(SETUP_COLUMN):
        for _, r in g.sort_values([c for c in ("seed", "job_id") if c in g.columns]).iterrows():
            groups = sample_groups(r)
            if any(imgs for _, imgs in groups):
                by_setup[name] = groups  # the first row with images stands for the setup
                break
    shown = [s for s in style.order(by_setup) if setups is None or s in setups]
    if not shown:
        raise ValueError(f"no sample images for concept {rows[CONCEPT_COLUMN].iloc[0]!r} "
                         f"(rows need artifacts['samples']; see analysis/gallery.py)")
    train = next((t for t in (training_images(r) for _, r in rows.iterrows()) if t), [])
    n_prompts = min(n_prompts, max(len(by_setup[s]) for s in shown))  # no empty columns
    n_cols = n_prompts * n_samples
    cells: list[list[Sample | None]] = [[train[j] if j < len(train) else None for j in range(n_cols)]]
    titles = [""] * n_prompts
    for name in shown:
        groups = by_setup[name][:n_prompts]
        line = []
        for p in range(n_prompts):
            prompt, imgs = groups[p] if p < len(groups) else ("", [])
            titles[p] = titles[p] or prompt
            line += [imgs[k] if k < len(imgs) else None for k in range(n_samples)]
        cells.append(line)
    grid = Grid(np.full((len(cells) * (CELL + GAP) + TITLE, n_cols * (CELL + GAP) + (n_prompts - 1) * 2 * GAP, 3),
                        255, np.uint8), ["Training images"] + shown, titles,
                np.array([[c is not None for c in line] for line in cells]), n_samples)
    for i, line in enumerate(cells):
        for j, path in enumerate(line):
            if path is not None:
                y, x = grid.cell_origin(i, j)
                grid.canvas[y:y + CELL, x:x + CELL] = _thumb(path)
    return grid


def gallery_figure(rows: pd.DataFrame, setups=None, n_prompts: int = 4, n_samples: int = 2):
    """The grid drawn with labels; returns (figure, grid)."""
    grid = gallery_grid(rows, setups, n_prompts, n_samples)
    h, w, _ = grid.canvas.shape
    fig = plt.figure(figsize=(w / 90 + 1.8, h / 90 + 0.6))
    ax = fig.add_axes((0.2, 0.02, 0.78, 0.9))
    ax.imshow(grid.canvas)
    ax.axis("off")
    for i, name in enumerate(grid.row_labels):
        st = style.style(name) if i else None
        ax.text(-GAP * 2, grid.cell_origin(i, 0)[0] + CELL / 2, st.label if st else name,
                ha="right", va="center", fontsize=8, color=st.color if st else "black")
    for p, title in enumerate(grid.col_titles):
        ax.text(grid.cell_origin(1, p * n_samples)[1], grid.cell_origin(1, 0)[0] - 2 * GAP, title,
                ha="left", va="bottom", fontsize=7)
    fig.suptitle(f"Concept: {rows[CONCEPT_COLUMN].iloc[0]}", fontsize=10)
    return fig, grid


def gallery_figures(df: pd.DataFrame, setups=None, n_prompts: int = 4, n_samples: int = 2) -> dict:
    """concept -> figure, for every concept that has sample images."""
    figs = {}
    for concept, rows in df.groupby(CONCEPT_COLUMN, sort=True):
        try:
            figs[concept], _ = gallery_figure(rows, setups, n_prompts, n_samples)
        except ValueError as e:
            print(f"gallery: {e}", file=sys.stderr)
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Training images beside samples of each setup, per concept.")
    ap.add_argument("csv")
    ap.add_argument("-o", "--out", required=True, help="folder for gallery-<concept>.png")
    ap.add_argument("--setups", nargs="+")
    ap.add_argument("--prompts", type=int, default=4, help="reconstruction prompt + the first N-1 editing prompts")
    ap.add_argument("--samples", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        figs = gallery_figures(load_results(args.csv), args.setups, args.prompts, args.samples)
    except FileNotFoundError as e:
        ap.error(str(e))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for concept, fig in figs.items():
        fig.savefig(out / f"gallery-{concept}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        print(f"wrote {out / f'gallery-{concept}.png'}", file=sys.stderr)
    return 0 if figs else 1


if __name__ == "__main__":
    sys.exit(main())
