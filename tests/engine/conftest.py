"""Fixtures for the engine tests: fresh tiny random pipelines and small concept folders."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tinv.engine.data import load_concept_images
from tinv.engine.models import tiny_ldm_parts, tiny_sd2_parts, tiny_sd_parts

BUILDERS = {"sd": tiny_sd_parts, "sd2": tiny_sd2_parts, "ldm": tiny_ldm_parts}

# The tiny models gain nothing from intra-op threads, and on a shared 2-core machine
# competing OpenMP threads make every step many times slower.
torch.set_num_threads(1)


@pytest.fixture
def make_parts():
    """A fresh tiny pipeline per call (inversion adds tokens, so tests never share one)."""
    return lambda family="sd", seed=0: BUILDERS[family](seed=seed)


def draw_concept(i: int, size: int = 32) -> Image.Image:
    """A red square on white at a position that varies with i: a concept with a shared shape."""
    arr = np.full((size, size, 3), 255, np.uint8)
    x, y = 4 + 3 * i, 6 + 2 * i
    arr[y:y + 12, x:x + 12] = (220, 30, 30)
    return Image.fromarray(arr)


@pytest.fixture
def concept_dir(tmp_path):
    folder = tmp_path / "red_square"
    folder.mkdir()
    for i in range(3):
        draw_concept(i).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def concept(concept_dir):
    return load_concept_images(concept_dir, 32)
