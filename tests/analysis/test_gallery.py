"""The gallery reads the harness's sample grids and puts each tile where it belongs."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import gallery, style
from analysis.gallery import CELL, gallery_grid
from analysis.table import load_results
from tests.analysis.conftest import CONCEPTS, PROMPTS, SAMPLES_PER_PROMPT, TRUTH, sample_color


@pytest.fixture(scope="module")
def df(results_csv):
    return load_results(results_csv)


def _cell(grid, i, j) -> np.ndarray:
    y, x = grid.cell_origin(i, j)
    return grid.canvas[y:y + CELL, x:x + CELL].reshape(-1, 3).astype(float)


def test_grid_rows_are_training_then_setups(df):
    grid = gallery_grid(df[df["concept"] == "blue_cube"], n_prompts=3, n_samples=2)
    assert grid.row_labels == ["Training images"] + style.order(TRUTH)
    # reconstruction prompt first, then the editing prompts, S* for the placeholder
    assert grid.col_titles == ["A photo of S*"] + [p.format("S*") for p in PROMPTS[:2]]
    assert grid.filled.shape == (1 + len(TRUTH), 6)
    assert grid.filled[1:].all()                 # 2 samples x 3 prompts for every setup
    assert grid.filled[0].sum() == 4             # the concept has 4 training images


def test_each_tile_is_cut_from_its_grid(df):
    ci = CONCEPTS.index("blue_cube")
    grid = gallery_grid(df[df["concept"] == "blue_cube"], setups=["single_word"], n_prompts=3, n_samples=2)
    for prompt in range(3):          # reconstruction, p00, p01
        for k in range(2):
            cell = _cell(grid, 1, 2 * prompt + k)
            # solid tiles: no padding line and no neighbour leaked into the crop
            assert np.abs(cell - sample_color(ci, prompt, k)).max() <= 2
    assert np.abs(_cell(grid, 0, 1) - (200, 40 * ci, 10)).max() <= 2  # second training image


def test_grid_tiles_falls_back_to_the_whole_file(tmp_path):
    from PIL import Image
    Image.new("RGB", (50, 20)).save(tmp_path / "odd.png")
    assert gallery.grid_tiles(tmp_path / "odd.png", [SAMPLES_PER_PROMPT]) == [(tmp_path / "odd.png", None)]


def test_grid_tiles_tries_the_training_set_size(tmp_path):
    # image-only grids hold the 5 training images, not eval.num_samples = 6
    import torch
    from torchvision.utils import save_image
    save_image(torch.rand(5, 3, 10, 10), tmp_path / "g.png", nrow=5, padding=1)
    tiles = gallery.grid_tiles(tmp_path / "g.png", [6, 5])
    assert [box for _, box in tiles] == [(1 + 11 * i, 1, 11 + 11 * i, 11) for i in range(5)]


def test_rows_without_images_are_named(df):
    rows = df[df["concept"] == "red_star"].assign(artifacts="{}")
    with pytest.raises(ValueError, match="red_star"):
        gallery_grid(rows)


def test_cli_writes_one_png_per_concept(results_csv, tmp_path):
    assert gallery.main([str(results_csv), "-o", str(tmp_path), "--setups", "single_word", "image_only"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [f"gallery-{c}.png" for c in sorted(CONCEPTS)]
