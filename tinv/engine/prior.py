"""Class images for prior preservation (DreamBooth, Ruiz et al. 2023, section 3.3; Custom
Diffusion's regularization set): what the model draws for "a photo of a <class noun>" before
it is fine-tuned, so that a loss on them keeps the class where it was.

As both scripts make them (diffusers examples/dreambooth/train_dreambooth.py and
examples/custom_diffusion/train_custom_diffusion.py, without --real_prior): the frozen
pipeline samples `--num_class_images` images of `--class_prompt` with its defaults (50
steps, guidance 7.5) and saves them as image files, which training then reads like the
instance images. Here the sampler is the harness's DDIM from fixed seeds (CLASS_SEED on), so
the same (model, prompt, n) always gives the same images; the job store keeps them once per
(model, prompt, n, seed) for every job that needs them (tinv.harness.learned.class_images).
Or a folder of real images (their --real_prior, the authors' default for Custom Diffusion).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tinv.core import atomic
from tinv.engine.data import ConceptImages, load_concept_images, to_tensor

CLASS_STEPS, CLASS_GUIDANCE = 50, 7.5     # StableDiffusionPipeline.__call__'s defaults, the scripts' sampler
CLASS_SEED = 100_000                      # apart from the evaluation's seeds (eval.seed counts up from 0)


def generate(parts, prompt: str, n: int, seed: int = CLASS_SEED, batch_size: int = 16,
             progress: bool = False) -> list[Image.Image]:
    """n images of `prompt` from seeds seed .. seed+n-1, as 8-bit images (what the scripts save)."""
    from tinv.engine.sampling import sample
    x = sample(parts, [prompt], list(range(seed, seed + n)), steps=CLASS_STEPS, guidance=CLASS_GUIDANCE,
               batch_size=min(n, batch_size), progress=progress)
    arr = (x.permute(0, 2, 3, 1).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def as_images(images: list[Image.Image]) -> ConceptImages:
    return ConceptImages(pixels=torch.stack([to_tensor(im) for im in images]), paths=[])


def write(images: list[Image.Image], folder: str | os.PathLike, prompt: str) -> Path:
    """The images as PNG files in `folder`, the whole folder at once (a reader never sees a
    part of it); the prompt beside them."""
    with atomic.replacing_dir(folder, keep_existing=True) as tmp:
        for i, im in enumerate(images):
            im.save(Path(tmp) / f"{i:04d}.png")
        (Path(tmp) / ".prompt.txt").write_text(prompt + "\n")   # hidden: a concept folder reads no dot-files
    return Path(folder)


def read(folder: str | os.PathLike, size: int, n: int | None = None, center_crop: bool = False) -> ConceptImages:
    """The class images of a folder (generated or real), the first n in name order."""
    images = load_concept_images(folder, size, center_crop)
    if n is not None and len(images) > n:
        images = ConceptImages(pixels=images.pixels[:n], paths=images.paths[:n], folder=images.folder)
    return images


def class_images(parts, cfg, cache: str | os.PathLike | None = None) -> ConceptImages:
    """A set's class images: the folder `cfg.class_images` names, else the model's own samples of
    cfg.class_text (read from `cache` when it holds them, written there when it does not)."""
    if cfg.class_images:
        return read(cfg.class_images, parts.resolution, cfg.num_class_images, cfg.center_crop)
    if cache is not None and Path(cache).is_dir():
        return read(cache, parts.resolution, cfg.num_class_images)
    drawn = generate(parts, cfg.class_text, cfg.num_class_images)
    if cache is not None:
        write(drawn, cache, cfg.class_text)
        return read(cache, parts.resolution, cfg.num_class_images)
    return as_images(drawn)
