"""Pivotal tuning (paper appendix A): after single-word inversion, fine-tune part of the
UNet so that "A photo of <S*>" reconstructs the training images, with the learned
embedding held fixed as the pivot.

Eq. 2's loss (tinv/engine/objective.py), but the conditioning is one fixed prompt (encoded once, no text
gradients) and the trainable tensors are UNet weights. Which weights is data
(`PivotalConfig.params`); only those are saved, beside the embedding.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tinv.core import atomic

from tinv.engine import conditioning, objective, sampling
from tinv.engine.data import ConceptImages, LatentCache, cache_latents
from tinv.engine.inversion import fixed_eval_loss
from tinv.engine.objective import training_scheduler
from tinv.engine.progress import bar as progress_bar

TUNED_FILENAME = "pivotal_unet.safetensors"  # written next to learned_embeds.safetensors

# Which UNet parameters a setup tunes: a parameter is tuned when its name contains one of
# the substrings. attn2 = cross-attention (text -> image), attn1 = self-attention.
PARAM_SETS: dict[str, tuple[str, ...]] = {
    "attn2": (".attn2.",),
    "attn": (".attn1.", ".attn2."),
    "all": ("",),
}


@dataclass
class PivotalConfig:
    params: str = "all"          # a key of PARAM_SETS; the paper tunes "the generator"
    lr: float = 1e-6             # the authors' WIP code uses 1e-7..1e-6 for the model;
                                 # models calibrate their own (conf/model/*.yaml)
    steps: int = 500
    batch_size: int = 4
    weight_decay: float = 0.01   # AdamW as in the inversion stage
    flip_p: float = 0.5          # chance of using a training image's flipped latent
    seed: int = 23
    placeholder: str = "<S*>"
    prompt: str = "A photo of {}"

    def __post_init__(self):
        bad = []
        if self.params not in PARAM_SETS:
            bad.append(f"params={self.params!r} (choose one of {sorted(PARAM_SETS)})")
        if not self.lr > 0 or self.steps < 0 or self.batch_size < 1:
            bad.append(f"lr={self.lr}, steps={self.steps}, batch_size={self.batch_size} "
                       "(need lr > 0, steps >= 0, batch_size >= 1)")
        if not 0.0 <= self.flip_p <= 1.0:
            bad.append(f"flip_p={self.flip_p} (a probability)")
        if "{}" not in self.prompt:
            bad.append(f"prompt={self.prompt!r} (needs a {{}} for the placeholder)")
        if bad:
            raise ValueError("PivotalConfig: " + "; ".join(bad))


@dataclass
class PivotalResult:
    tuned: list[str]                         # names of the UNet parameters that were trained
    losses: list[float] = field(default_factory=list)   # training loss per step
    eval_loss_before: float = float("nan")   # inversion.fixed_eval_loss before and after
    eval_loss_after: float = float("nan")


def select_params(unet, which: str) -> dict[str, torch.nn.Parameter]:
    """The UNet parameters a setup tunes, by name; a clear error for an unknown set."""
    if which not in PARAM_SETS:
        raise ValueError(f"pivotal params {which!r} unknown; choose one of {sorted(PARAM_SETS)}")
    keys = PARAM_SETS[which]
    chosen = {n: p for n, p in unet.named_parameters() if any(k in n for k in keys)}
    if not chosen:
        raise ValueError(f"pivotal params {which!r} match no parameter of this UNet "
                         f"(looked for names containing {keys})")
    return chosen


def pivot_prompt_ids(parts, cfg: PivotalConfig) -> torch.Tensor:
    """Token ids [1, 77] of "A photo of <S*>"; the placeholder must already exist."""
    if cfg.placeholder not in parts.tokenizer.get_vocab():
        raise ValueError(f"placeholder {cfg.placeholder!r} is not in the tokenizer: run the "
                         "single-word inversion first (it adds the pivot word)")
    return sampling.tokenize(parts, [cfg.prompt.format(cfg.placeholder)])


def pivotal_tune(parts, images: ConceptImages | LatentCache, cfg: PivotalConfig,
                 progress: bool = True) -> PivotalResult:
    """Tune the UNet in place so "A photo of <S*>" reconstructs the images (Eq. 2's loss).

    Latents (and their flips) are encoded once, as in the inversion stage. The pivot
    embedding, text encoder and VAE stay frozen; afterwards the UNet is back in eval mode
    with no parameter requiring gradients.
    """
    unet = parts.unet
    chosen = select_params(unet, cfg.params)
    ids = pivot_prompt_ids(parts, cfg)
    latents = images if isinstance(images, LatentCache) else cache_latents(parts, images)
    with torch.no_grad():  # the pivot: conditioning computed once, no text gradients
        cond = conditioning.encode(parts, ids).to(parts.dtype).expand(cfg.batch_size)
    sched = training_scheduler(parts)
    gen = torch.Generator().manual_seed(cfg.seed)
    result = PivotalResult(tuned=sorted(chosen),
                           eval_loss_before=fixed_eval_loss(parts, latents, ids))
    unet.requires_grad_(False)
    for p in chosen.values():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(chosen.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    try:
        for _ in progress_bar(range(cfg.steps), desc=f"pivotal tuning ({cfg.params})",
                      disable=not progress):
            idx = torch.randint(len(latents), (cfg.batch_size,), generator=gen)
            flip = torch.rand(cfg.batch_size, generator=gen) < cfg.flip_p
            z = latents.draw(idx, flip, gen).to(parts.device)
            t, noise = objective.draw(sched, z.shape, gen, parts.device)
            loss = objective.loss(parts, sched, z, t, noise, cond)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            result.losses.append(loss.item())
    finally:
        unet.requires_grad_(False)
        unet.eval()
    result.eval_loss_after = fixed_eval_loss(parts, latents, ids)
    return result


def save_tuned(parts, result: PivotalResult, out_dir: str | os.PathLike,
               cfg: PivotalConfig) -> Path:
    """Write only the tuned UNet tensors to `out_dir/pivotal_unet.safetensors`, atomically,
    with the config in the file's metadata; `out_dir` is the embedding's folder."""
    path = Path(out_dir) / TUNED_FILENAME
    params = dict(parts.unet.named_parameters())
    tensors = {n: params[n].detach().cpu().contiguous() for n in result.tuned}
    with atomic.replacing(path) as tmp:
        save_file(tensors, tmp, metadata={"tinv_pivotal": json.dumps(asdict(cfg))})
    return path


def load_tuned(parts, path: str | os.PathLike) -> list[str]:
    """Copy tuned tensors (a file, or a folder holding pivotal_unet.safetensors) into the UNet.

    Every name and shape is checked before anything is written, so a file made for another
    architecture leaves the UNet untouched. Returns the names loaded.
    """
    path = Path(path)
    if path.is_dir():
        path = path / TUNED_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"pivotal tuning file {str(path)!r} does not exist")
    tensors = load_file(path)
    params = dict(parts.unet.named_parameters())
    for name, value in tensors.items():
        if name not in params:
            raise ValueError(f"{str(path)!r}: tensor {name!r} is not a parameter of this UNet")
        if params[name].shape != value.shape:
            raise ValueError(f"{str(path)!r}: tensor {name!r} has shape {tuple(value.shape)}, "
                             f"the UNet's has {tuple(params[name].shape)}")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    return sorted(tensors)
