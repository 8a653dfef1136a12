"""method=masked_word (tinv/engine/learners/masked_word.py): Break-a-Scene's masked loss on the
single word. An all-ones mask is the plain word's loss; a partial mask changes what the word
learns; masks come from `<image>.mask.png` beside each image or, for the toy world's built-in
concepts, from the renderer; a mask of the wrong size is named before any work."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tinv.engine.data import ConceptError, load_concept_images
from tinv.engine.inversion import InversionConfig, invert
from tinv.engine.learners.masked_word import concept_masks, toy_mask

BASE = dict(initializer_word="cat", batch_size=2, seed=23, lr=5e-3)


def masks(folder, fill) -> None:
    """`<image>.mask.png` beside every image of `folder`: fill(i, image) -> uint8 [H, W]."""
    for i, p in enumerate(sorted(folder.glob("*.png"))):
        with Image.open(p) as im:
            Image.fromarray(fill(i, np.asarray(im.convert("RGB")))).save(p.with_name(p.name + ".mask.png"))


def test_an_all_ones_mask_is_the_plain_words_loss_and_a_partial_one_is_not(make_parts, concept_dir):
    plain = invert(make_parts("sd"), load_concept_images(concept_dir, 32), InversionConfig(steps=4, **BASE),
                   progress=False)
    masks(concept_dir, lambda i, px: np.full(px.shape[:2], 255, np.uint8))
    images = load_concept_images(concept_dir, 32)          # the masks are not taken for images
    assert len(images) == 3
    ones = invert(make_parts("sd"), images, InversionConfig(steps=4, learner="masked_word", **BASE), progress=False)
    assert np.allclose(ones.losses, plain.losses, rtol=1e-6, atol=0), (ones.losses, plain.losses)
    assert torch.allclose(ones.embeds["<S*>"], plain.embeds["<S*>"], atol=1e-6)
    assert ones.learner == {} and ones.notes["leaves_out"].startswith("Break-a-Scene's other parts")

    # the red square only (the concept fixture draws it on white)
    masks(concept_dir, lambda i, px: np.where((px[..., 1] < 100)[..., None], 255, 0).astype(np.uint8)[..., 0])
    square = invert(make_parts("sd"), load_concept_images(concept_dir, 32),
                    InversionConfig(steps=4, learner="masked_word", **BASE), progress=False)
    assert not np.allclose(square.losses, plain.losses, rtol=1e-3)
    assert not torch.allclose(square.embeds["<S*>"], plain.embeds["<S*>"], atol=1e-6)
    assert square.embedding_dist_init > 0      # the word itself learned: it is what the row reports


def test_a_mask_of_the_wrong_size_is_named_with_both_sizes(concept_dir):
    Image.new("L", (16, 16), 255).save(concept_dir / "1.png.mask.png")
    with pytest.raises(ConceptError, match=r"1\.png\.mask\.png' is 16x16 but its image '1\.png' is 32x32"):
        load_concept_images(concept_dir, 32)


def test_images_without_masks_count_whole_and_a_concept_with_none_is_refused(concept_dir):
    paths = sorted(concept_dir.glob("*.png"))
    with pytest.raises(ValueError, match="none of the concept's 3 images has a mask"):
        concept_masks(paths, 32)
    Image.new("L", (32, 32), 0).save(concept_dir / "0.png.mask.png")
    got, missing = concept_masks(paths, 32)
    assert missing == 2 and got[0].sum() == 0 and bool((got[1:] == 1).all())


def test_a_built_in_toy_concept_gets_its_rendered_mask_and_an_edited_image_none(tmp_path):
    from tinv.toyworld import concepts as toy
    paths = sorted((toy.CONCEPT_DIR / "red_star").glob("*.png"))
    got, missing = concept_masks(paths, 32)
    assert missing == 0
    for p, m in zip(paths, got):
        px = np.asarray(Image.open(p).convert("RGB")).astype(float)
        red = (px[..., 0] > 150) & (px[..., 1] < 80) & (px[..., 2] < 80)     # the star's red pixels
        assert red.sum() > 20 and float(m[0][torch.from_numpy(red)].min()) > 0.5, p.name
        assert 0.1 < float(m.mean()) < 0.5                                  # the star, not the picture
    edited = tmp_path / "red_star" / "00.png"
    edited.parent.mkdir()
    px = np.asarray(Image.open(paths[0]).convert("RGB")).copy()
    px[0, 0] = 255 - px[0, 0]
    Image.fromarray(px).save(edited)
    assert toy_mask(edited, 32) is None       # not the render: no mask is made up for it


def test_pictures_without_files_train_whole_as_the_suites_timing_batches_do(make_parts):
    from tinv.engine.data import ConceptImages
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    res = invert(make_parts("sd"), ConceptImages(pixels=pixels, paths=[]),
                 InversionConfig(steps=1, learner="masked_word", **BASE), progress=False)
    assert res.notes["leaves_out"].startswith("2 of 2 training images have no mask")
