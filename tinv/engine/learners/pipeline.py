"""A learned per-layer (P+) or per-timestep (NeTI) word on a stock diffusers pipeline.

A StableDiffusionPipeline encodes the prompt once and gives every cross-attention layer the
same states at every step. The engine's conditioners (conditioning.Cond) say per layer, and
per timestep, what each layer attends to; here they reach a stock pipeline through its own
seams: the prompt's states go in as `prompt_embeds`/`negative_prompt_embeds`, the per-layer
states ride `cross_attention_kwargs` into the Route processors (conditioning.route), read
afresh at every UNet call for the timestep the pipeline's scheduler is at.

    pipe = StableDiffusionPipeline.from_pretrained(...)
    placeholder = xti.load(pipe, "xti.safetensors")     # or neti.load
    images = pipeline.generate(pipe, f"a photo of {placeholder} on the beach").images
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from tinv.engine import conditioning
from tinv.engine.conditioning import Cond


def parts_of(pipe) -> Any:
    """The engine's view (models.Parts) of a StableDiffusionPipeline's own modules: installing a
    word into it installs it into the pipeline. One view per pipeline (the conditioner a word
    installs lives on it)."""
    from tinv.engine.models import Parts
    if getattr(pipe, "_tinv_parts", None) is None:
        pipe._tinv_parts = Parts(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, unet=pipe.unet,
                                 vae=pipe.vae, scheduler=pipe.scheduler, family="sd",
                                 resolution=pipe.unet.config.sample_size * pipe.vae_scale_factor,
                                 vae_scale=pipe.vae.config.scaling_factor)
    return pipe._tinv_parts


class _Live(Mapping):
    """`tinv_layers` for the step the pipeline is at: the Cond of [negative, prompt] resolved
    at the scheduler's current timestep, each row repeated for the images per prompt
    (`values`: `tinv_values` of the same step, NeTI's textual bypass)."""

    def __init__(self, pipe, cond: Cond, rows: torch.Tensor):
        self.pipe, self.cond, self.rows = pipe, cond, rows
        self.step, self._cache = 0, None
        self.values = _LiveValues(self)

    def advance(self, step: int) -> None:
        self.step, self._cache = step, None

    def _resolved(self) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        if self._cache is None:
            timesteps = self.pipe.scheduler.timesteps
            t = timesteps[min(self.step, len(timesteps) - 1)]
            c = self.cond.resolved(t)
            self._cache = (c.text[self.rows], {k: v[self.rows] for k, v in (c.layers or {}).items()},
                           {k: v[self.rows] for k, v in (c.values or {}).items()})
        return self._cache

    def _layers(self) -> dict[str, torch.Tensor]:
        return self._resolved()[1]

    def text(self) -> torch.Tensor:
        return self._resolved()[0]

    def __getitem__(self, name):
        return self._layers()[name]

    def __iter__(self):
        return iter(self._layers())

    def __len__(self):
        return len(self._layers())


class _LiveValues(Mapping):
    """`tinv_values` of the step a _Live is at."""

    def __init__(self, live: _Live):
        self.live = live

    def __getitem__(self, name):
        return self.live._resolved()[2][name]

    def __iter__(self):
        return iter(self.live._resolved()[2])

    def __len__(self):
        return len(self.live._resolved()[2])


class _PooledText(torch.nn.Module):
    """A UNet's pooled-text embedding (diffusers' addition_embed_type="text", the toy world's)
    fed the text of the step the pipeline is at, not the prompt_embeds of step 0: the text
    itself may depend on the timestep (NeTI)."""

    def __init__(self, inner: torch.nn.Module, live: _Live):
        super().__init__()
        self.inner, self.live = inner, live

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.inner(self.live.text().to(hidden_states))


def generate(pipe, prompt: str, negative_prompt: str = "", num_images_per_prompt: int = 1,
             guidance_scale: float = 7.5, **kwargs):
    """`pipe(prompt, ...)` with the words installed on `parts_of(pipe)` (a P+ or NeTI file)."""
    parts = parts_of(pipe)
    ids = parts.tokenize([negative_prompt, prompt])
    with torch.no_grad():
        cond = conditioning.encode(parts, ids)
    n = num_images_per_prompt
    cfg = guidance_scale > 1.0          # the pipeline's own rule for classifier-free guidance
    # the pipeline's batch: [negative x n, prompt x n] with guidance, [prompt x n] without
    rows = torch.tensor(([0] * n if cfg else []) + [1] * n)
    conditioning.route(pipe.unet)
    live = _Live(pipe, cond, rows)

    def on_step_end(_pipe, i, _t, kw):
        live.advance(i + 1)
        return kw
    text = cond.resolved(torch.tensor(0)).text if cond.at is not None else cond.text
    unet = pipe.unet
    pooled = getattr(unet.config, "addition_embed_type", None) == "text" and cond.at is not None
    if pooled:
        unet.add_embedding = _PooledText(unet.add_embedding, live)
    try:
        return pipe(prompt_embeds=text[1:2], negative_prompt_embeds=text[0:1], num_images_per_prompt=n,
                    guidance_scale=guidance_scale, cross_attention_kwargs={conditioning.LAYERS_KW: live, conditioning.VALUES_KW: live.values},
                    callback_on_step_end=on_step_end, **kwargs)
    finally:
        if pooled:
            unet.add_embedding = unet.add_embedding.inner
