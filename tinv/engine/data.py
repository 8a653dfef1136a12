"""Concept images: read, validate and normalize a folder of training images.

Every failure is one `ConceptError` that names the folder or file and says what to do.
Normalization follows the authors' data code: EXIF orientation applied, transparency
composited on white, grayscale to RGB, optional center crop, then a bicubic resize to
the model's resolution without keeping the aspect ratio. High-depth images (16-bit
grayscale PNGs, 32-bit integer or float images) are scaled to 8 bits first: PIL's own
conversion clips them, which turns a 16-bit photo almost white.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from tinv.engine.models import Parts

# Files a concept folder may hold beside its images (tinv.harness.concepts reads the captions).
NOT_IMAGES = ("captions.yaml", "captions.yml", "captions.json")
# An image's optional mask: `<image>.mask.png` beside it, its size, white where the concept is
# (a masked loss reads it: conf/method/masked_word.yaml).
MASK_SUFFIX = ".mask.png"


class ConceptError(ValueError):
    """A concept folder or image that cannot be used; the message names it."""


@dataclass
class ConceptImages:
    pixels: torch.Tensor    # [N, 3, S, S] in [-1, 1]
    paths: list[Path]
    folder: Path | None = None

    def __len__(self) -> int:
        return self.pixels.shape[0]


def load_concept_images(folder: str | os.PathLike, size: int, center_crop: bool = False) -> ConceptImages:
    """All images of a concept folder as a tensor [N, 3, size, size] in [-1, 1]."""
    folder = Path(folder)
    if not folder.exists():
        raise ConceptError(f"concept folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise ConceptError(f"concept path {str(folder)!r} is not a folder; give the folder of its images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name not in NOT_IMAGES and not p.name.endswith(MASK_SUFFIX))
    if not files:
        raise ConceptError(f"concept folder {str(folder)!r} holds no images; put the concept's 3-5 images in it")
    images, bad = [], []
    for p in files:      # every unusable file is named at once, not one per rerun
        try:
            images.append(to_tensor(load_image(p, size, center_crop)))
            load_mask(p, size, center_crop)     # a mask beside it must fit it
        except ConceptError as e:
            bad.append(str(e))
    if bad:
        raise ConceptError(f"concept folder {str(folder)!r} holds {len(bad)} unusable file(s): "
                           + "; ".join(bad))
    return ConceptImages(pixels=torch.stack(images), paths=files, folder=folder)


def load_image(path: str | os.PathLike, size: int, center_crop: bool = False) -> Image.Image:
    """One training image as an upright RGB size x size PIL image, or a ConceptError naming it."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated or corrupt file fails here, not later
            im = ImageOps.exif_transpose(im)
    except UnidentifiedImageError as e:
        raise ConceptError(f"{str(path)!r} is not an image file (PIL cannot identify it); "
                           "remove it from the concept folder") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ConceptError(f"image {str(path)!r} is corrupt or truncated ({e}); replace or remove it") from e
    im = to_rgb(im)
    if center_crop:
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side))
    return im.resize((size, size), resample=Image.Resampling.BICUBIC)


def mask_path(image: str | os.PathLike) -> Path:
    """Where an image's optional mask lies: `<image>.mask.png` beside it."""
    image = Path(image)
    return image.with_name(image.name + MASK_SUFFIX)


def load_mask(image: str | os.PathLike, size: int, center_crop: bool = False) -> torch.Tensor | None:
    """The mask of a training image as [1, size, size] in [0, 1] (white = 1: the concept),
    cropped and resized as its image is; None when the image has none. A ConceptError names a
    mask that cannot be read or whose size is not its image's."""
    path = mask_path(image)
    if not path.is_file():
        return None
    try:
        with Image.open(image) as im:
            want = ImageOps.exif_transpose(im).size
        with Image.open(path) as m:
            m.load()
            m = ImageOps.exif_transpose(m)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ConceptError(f"mask {str(path)!r} cannot be read ({e}); replace or remove it") from e
    if m.size != want:
        raise ConceptError(f"mask {str(path)!r} is {m.size[0]}x{m.size[1]} but its image {Path(image).name!r} is "
                           f"{want[0]}x{want[1]}; give each mask its image's size (white = the concept)")
    m = to_8bit(m) if m.mode.startswith("I") or m.mode == "F" else m.convert("L")
    if center_crop:
        side = min(m.size)
        left, top = (m.width - side) // 2, (m.height - side) // 2
        m = m.crop((left, top, left + side, top + side))
    m = m.resize((size, size), resample=Image.Resampling.BOX)     # coverage, not a sharpened edge
    return torch.from_numpy(np.asarray(m, dtype=np.float32) / 255.0)[None]


def to_8bit(im: Image.Image) -> Image.Image:
    """A high-depth single-channel image as 8-bit "L", its values scaled, not clipped."""
    arr = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and (im.format == "PNG" or arr.max() > 255)):
        full = 65535.0            # PNG has no 32-bit integers: mode "I" from a PNG is 16-bit
    elif im.mode == "F" and arr.max() <= 1.0:
        full = 1.0
    else:
        full = 255.0
    return Image.fromarray(np.clip(np.round(arr * (255.0 / full)), 0, 255).astype(np.uint8), "L")


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB; anything with transparency is composited on white (not black, which RGB conversion gives)."""
    if im.mode.startswith("I") or im.mode == "F":
        im = to_8bit(im)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, im).convert("RGB")
    return im.convert("RGB")


def to_tensor(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@dataclass
class LatentCache:
    """VAE latents of each image and of its horizontal flip, encoded once.

    For a KL autoencoder we keep the posterior's mean and std and draw a fresh latent
    each step (as the authors' training does); a VQ autoencoder's latent is deterministic."""
    mean: torch.Tensor      # [N, 2, C, h, w]  (index 1 = flipped image), already scaled
    std: torch.Tensor       # same shape; zeros for VQ

    def __len__(self) -> int:
        return self.mean.shape[0]

    def draw(self, idx: torch.Tensor, flip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean, std = self.mean[idx, flip.long()], self.std[idx, flip.long()]
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        return mean + std * eps


@torch.no_grad()
def cache_latents(parts: Parts, images: ConceptImages, batch_size: int = 8) -> LatentCache:
    both = torch.stack([images.pixels, images.pixels.flip(-1)], dim=1)   # [N, 2, 3, S, S]
    flat = both.flatten(0, 1).to(parts.device, parts.vae.dtype)
    means, stds = [], []
    for chunk in flat.split(batch_size):
        enc = parts.vae.encode(chunk)
        if hasattr(enc, "latent_dist"):
            means.append(enc.latent_dist.mean)
            stds.append(enc.latent_dist.std)
        else:  # VQModel: pre-quantization latents, as diffusers' LDM training uses
            means.append(enc.latents)
            stds.append(torch.zeros_like(enc.latents))
    shape = (len(images), 2) + means[0].shape[1:]
    scale = parts.vae_scale
    return LatentCache(mean=(torch.cat(means) * scale).float().reshape(shape),
                       std=(torch.cat(stds) * scale).float().reshape(shape))
