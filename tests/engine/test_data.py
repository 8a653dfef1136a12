"""Concept folders: bad input is one clear ConceptError naming it; odd images come out right."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tinv.engine.data import ConceptError, cache_latents, load_concept_images, load_image

from .conftest import draw_concept


def test_missing_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConceptError, match="nowhere.*does not exist"):
        load_concept_images(missing, 32)


def test_empty_folder_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConceptError, match="empty.*holds no images"):
        load_concept_images(tmp_path / "empty", 32)


def test_text_file_named_png_is_named(tmp_path):
    draw_concept(0).save(tmp_path / "good.png")
    (tmp_path / "notes.png").write_text("this is not an image")
    with pytest.raises(ConceptError, match="notes.png.*not an image"):
        load_concept_images(tmp_path, 32)


def test_truncated_jpeg_is_named(tmp_path):
    draw_concept(0).resize((64, 64)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "full.jpg").unlink()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConceptError, match="cut.jpg.*corrupt or truncated"):
        load_concept_images(tmp_path, 32)


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((32, 32, 4), np.uint8)          # fully transparent black ...
    arr[8:24, 8:24] = (0, 0, 255, 255)             # ... around an opaque blue square
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    im = np.asarray(load_image(tmp_path / "a.png", 32))
    assert im.shape == (32, 32, 3)
    assert (im[0, 0] == 255).all()                 # transparent -> white, not black
    assert tuple(im[16, 16]) == (0, 0, 255)


def test_grayscale_becomes_rgb(tmp_path):
    Image.fromarray(np.full((32, 32), 100, np.uint8), "L").save(tmp_path / "g.png")
    x = load_concept_images(tmp_path, 32).pixels
    assert x.shape == (1, 3, 32, 32)
    assert torch.allclose(x[0, 0], x[0, 1]) and torch.allclose(x[0, 1], x[0, 2])
    assert abs(x.mean().item() - (100 / 127.5 - 1)) < 1e-5


def test_exif_rotated_image_comes_out_upright(tmp_path):
    # Upright: red top half, blue bottom half. Store it rotated, with EXIF orientation 6
    # ("rotate 90 CW to view") as cameras do.
    up = np.zeros((32, 32, 3), np.uint8)
    up[:16] = (255, 0, 0)
    up[16:] = (0, 0, 255)
    stored = Image.fromarray(up).transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    im = np.asarray(load_image(tmp_path / "rot.jpg", 32)).astype(int)
    assert im[4, 16, 0] > 200 and im[4, 16, 2] < 60     # top is red
    assert im[28, 16, 2] > 200 and im[28, 16, 0] < 60   # bottom is blue


def test_non_square_is_resized_bicubic_or_center_cropped(tmp_path):
    arr = np.full((20, 60, 3), 255, np.uint8)
    arr[:, :20] = 0                                     # left third black
    Image.fromarray(arr).save(tmp_path / "wide.png")
    squashed = np.asarray(load_image(tmp_path / "wide.png", 32))
    cropped = np.asarray(load_image(tmp_path / "wide.png", 32, center_crop=True))
    assert squashed.shape == cropped.shape == (32, 32, 3)
    assert squashed[:, :8].mean() < 20 and squashed[:, -8:].mean() > 235   # whole width kept
    assert cropped.mean() > 235                                            # middle square is white
    expected = np.asarray(Image.fromarray(arr).resize((32, 32), Image.Resampling.BICUBIC))
    assert np.array_equal(squashed, expected)


def test_latent_cache_holds_images_and_flips(make_parts, concept):
    parts = make_parts("sd")
    cache = cache_latents(parts, concept)
    assert cache.mean.shape == (3, 2, 4, 8, 8)
    with torch.no_grad():
        flipped = parts.vae.encode(concept.pixels[:1].flip(-1)).latent_dist.mean * parts.vae_scale
    assert torch.allclose(cache.mean[0, 1], flipped[0], atol=1e-5)
    assert not torch.allclose(cache.mean[0, 0], cache.mean[0, 1])
