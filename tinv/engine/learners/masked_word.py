"""Textual inversion with Eq. 2 on the concept's mask only: Break-a-Scene's masked loss
(Avrahami et al. 2023, arXiv 2305.16311, section 3: "we apply the standard diffusion loss
only on the masked region"; github.com/google/break-a-scene train.py, --apply_masked_loss),
on the paper's single word.

Each training image's mask, white where the concept is, comes from (in this order):
1. `<image>.mask.png` beside the image (tinv.engine.data.load_mask: checked to be the image's
   size before any work; cropped and resized as the image is);
2. the toy world's renderer for a built-in concept's image (tinv.toyworld.render.render_mask,
   from the very draws that painted the picture; used only when re-rendering the image gives
   the file's pixels exactly, so an edited or foreign file never gets a rendered mask);
3. none: that image's whole picture counts (the row's notes say how many). A concept with no
   mask at all is refused: its row would be the single word's.

The mask is flipped with its image, area-averaged onto the latent grid (its coverage of each
latent pixel), and Eq. 2 is taken as the authors take it: the squared error times the mask,
averaged over the WHOLE latent (outside the mask counts zero; objective.loss's mean over the
mask, times the mask's share of the latent). An all-ones mask is the plain word's loss.

No state of its own: the learned word is S*'s vector, exported and scored as the single
word's (Learner.own_state False).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinv.engine.learners import Learner


class MaskedWord(Learner):
    name = "masked_word"
    own_state = False
    leaves_out = ("Break-a-Scene's other parts: several concepts per image with their union sampling, the "
                  "cross-attention loss (--lambda_attention) and the second phase that tunes the UNet; this is "
                  "its masked loss on the paper's single word, at textual inversion's rate and steps")

    def __init__(self, parts, word, cfg, gen):
        super().__init__(parts, word, cfg, gen)
        self.masks: torch.Tensor | None = None       # [N, 1, S, S] in [0, 1], one per training image

    def augment(self, parts, images, idx, flip, latents, prompts):
        if self.masks is None:
            if images.paths:
                self.masks, missing = concept_masks(images.paths, parts.resolution, self.cfg.center_crop)
            else:       # pictures with no files (the suite's timing batches): nothing to mask
                self.masks, missing = torch.ones(len(images), 1, parts.resolution, parts.resolution), len(images)
            if missing:
                self.leaves_out = (f"{missing} of {len(images)} training images have no mask: their whole "
                                   f"picture counts; " + MaskedWord.leaves_out)
        m = self.masks[idx]
        m = torch.where(flip[:, None, None, None], m.flip(-1), m)
        return latents, prompts, on_grid(m, latents.shape[-2:]).to(latents.device)

    def weight(self, mask):
        # objective.loss averages over the mask; the authors average m * err over the whole latent
        return None if mask is None else mask.float().mean(dim=(1, 2, 3))


def on_grid(mask: torch.Tensor, size) -> torch.Tensor:
    """[B, 1, H, W] masks on a size[0] x size[1] grid: each cell the mask's coverage of it."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    mode = "area" if mask.shape[-1] >= size[-1] else "bilinear"
    return F.interpolate(mask.float(), size=tuple(size), mode=mode, **({} if mode == "area" else {"align_corners": False}))


def concept_masks(paths: list[Path], size: int, center_crop: bool = False) -> tuple[torch.Tensor, int]:
    """([N, 1, size, size] masks of the training images, how many have none: the module says
    where each comes from); a ValueError when none of them has one."""
    from tinv.engine.data import load_mask
    masks, missing = [], 0
    for p in paths:
        m = load_mask(p, size, center_crop)
        if m is None:
            m = toy_mask(Path(p), size)
        if m is None:
            missing += 1
            m = torch.ones(1, size, size)
        masks.append(m)
    if paths and missing == len(paths):
        raise ValueError(f"masked_word: none of the concept's {len(paths)} images has a mask; put "
                         f"<image>.mask.png beside each (its size, white = the concept), e.g. "
                         f"{Path(paths[0]).name}.mask.png, or use method=single_word")
    return torch.stack(masks), missing


def toy_mask(path: Path, size: int) -> torch.Tensor | None:
    """The rendered mask of a built-in toy concept's image (`<concept>/<i>.png`, or the
    renders of `train_images` beyond the shipped five: `<concept>-<n>/<i>.png`), when
    re-rendering gives the file's pixels; else None."""
    try:
        from tinv.toyworld import concepts as toy
        from tinv.toyworld.render import render_array, render_mask
    except ImportError:
        return None
    folder = path.parent.name
    name = folder if folder in toy.CONCEPTS else folder.rpartition("-")[0]
    if name not in toy.CONCEPTS or not path.stem.isdigit():
        return None
    i = int(path.stem)
    attrs, seed = toy.image_attributes(name, i), 1000 + i      # as tinv.toyworld.concepts.write renders them
    from PIL import Image
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    drawn = render_array(attrs, seed)
    if pixels.shape != drawn.shape or not np.array_equal(pixels, drawn):
        return None
    m = torch.from_numpy(render_mask(attrs, seed).astype(np.float32))[None, None]
    return on_grid(m, (size, size))[0]


LEARNER = MaskedWord
