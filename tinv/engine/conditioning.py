"""The one seam between text and the UNet: (prompt, learned words, timestep, layer) -> what
each cross-attention layer of the UNet attends to.

Textual inversion conditions every cross-attention layer on the same text encoding at every
timestep, and that is all the paper's setups need. Its successors do not: P+ (XTI) learns a
word per cross-attention layer, NeTI a word per (timestep, layer). So every caller that
encodes a prompt and runs the UNet (the inversion loop, its fixed-batch losses, pivotal
tuning, sampling, DDIM inversion) does it through `encode` and `eps`, and a method that
conditions differently installs a `conditioner` on the Parts instead of editing them.

The layer route is diffusers' own seam: every attention processor is wrapped by `Route`,
which, given `cross_attention_kwargs={"tinv_layers": {name: [B, L, D]}}`, hands the named
cross-attention layer its own encoder states and delegates to the processor it wraps
(AttnProcessor2_0, a LoRA or Custom Diffusion processor alike). Layers are named by their
key in `unet.attn_processors` (`...attn2.processor`), and ordered as the UNet's forward pass
calls them: down blocks, the mid block, up blocks (`cross_attention_layers`; diffusers'
`attn_processors` lists the up blocks before the mid block, the order the modules were
registered in). A layer may also read its values from other states than its keys
(`Cond.values`, NeTI's textual bypass): Route then hands the processor a `to_v` that projects
those states. Without per-layer text the UNet is called exactly as before, so the paper's
setups compute what they computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

LAYERS_KW = "tinv_layers"
VALUES_KW = "tinv_values"


@dataclass
class Cond:
    """What the cross-attention layers receive for a batch of B prompts: `text` [B, L, D]
    everywhere, except the layers named in `layers` (name -> [B, L, D]); a layer named in
    `values` computes its attention values from those states instead (its keys still from
    its own text); when `at` is set (a timestep-dependent word), the Cond to use at timestep t
    is `at(t)`."""
    text: torch.Tensor
    layers: Mapping[str, torch.Tensor] | None = None
    at: Callable[[Any], "Cond"] | None = None
    values: Mapping[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.text)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Cond":
        at = self.at
        return Cond(fn(self.text), {k: fn(v) for k, v in self.layers.items()} if self.layers else None,
                    (lambda t: at(t)._map(fn)) if at is not None else None,
                    {k: fn(v) for k, v in self.values.items()} if self.values else None)

    def expand(self, n: int) -> "Cond":
        """One prompt's Cond repeated for n images (a view, as Tensor.expand)."""
        return self._map(lambda v: v.expand(n, -1, -1))

    def to(self, *args, **kw) -> "Cond":
        return self._map(lambda v: v.to(*args, **kw))

    def __getitem__(self, rows) -> "Cond":
        return self._map(lambda v: v[rows])

    def resolved(self, t) -> "Cond":
        return self.at(t).resolved(t) if self.at is not None else self


def cat(conds: Sequence[Cond]) -> Cond:
    """Concatenate along the batch (classifier-free guidance's [uncond, cond], packed sets);
    a layer one of them leaves to its `text` takes that text."""
    if any(c.at is not None for c in conds):
        return Cond(torch.cat([c.text for c in conds]), at=lambda t: cat([c.resolved(t) for c in conds]))
    names = {k for c in conds for k in [*(c.layers or {}), *(c.values or {})]}
    layers = {k: torch.cat([(c.layers or {}).get(k, c.text) for c in conds]) for k in sorted(names)}
    # a layer's values where one Cond has them of its own; the others' are their keys' states
    values = {k: torch.cat([(c.values or {}).get(k, (c.layers or {}).get(k, c.text)) for c in conds])
              for k in sorted({k for c in conds for k in (c.values or {})})}
    return Cond(torch.cat([c.text for c in conds]), layers or None, values=values or None)


def encode(parts, input_ids: torch.Tensor) -> Cond:
    """The Cond of token ids [B, 77]: the text encoder's last hidden states for every layer,
    unless `parts.conditioner` (a method's own, e.g. a per-layer word) makes it."""
    conditioner = getattr(parts, "conditioner", None)
    if conditioner is not None:
        return conditioner(parts, input_ids)
    return Cond(parts.encode_text(input_ids))


def eps(unet, x: torch.Tensor, t, cond: Cond) -> torch.Tensor:
    """The UNet's noise prediction for latents x at timestep t under `cond`."""
    cond = cond.resolved(t)
    if not cond.layers and not cond.values:
        return unet(x, t, encoder_hidden_states=cond.text).sample
    route(unet)
    kwargs = {LAYERS_KW: dict(cond.layers or {})}
    if cond.values:
        kwargs[VALUES_KW] = dict(cond.values)
    return unet(x, t, encoder_hidden_states=cond.text, cross_attention_kwargs=kwargs).sample


def pools_text(unet) -> bool:
    """Does `unet` also read the text outside its cross-attention layers? diffusers'
    addition_embed_type="text" (the toy world's UNet) pools `Cond.text` into the time
    embedding; a stock SD UNet does not. A per-layer word must give that path a word too."""
    return getattr(unet.config, "addition_embed_type", None) == "text"


# Where a block runs in the UNet's forward pass (diffusers' UNet2DConditionModel.forward)
_FORWARD_ORDER = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}


def cross_attention_layers(unet) -> list[str]:
    """The names `Cond.layers` uses: each cross-attention layer's processor key, in the order
    the UNet's forward pass runs them: down blocks, mid block, up blocks (NeTI's layer index,
    the authors' constants.UNET_LAYERS IN01..IN08, MID, OUT03..OUT11). `unet.attn_processors`
    itself lists the up blocks before the mid block (module registration order)."""
    names = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    return sorted(names, key=lambda n: _FORWARD_ORDER.get(n.split(".", 1)[0], len(_FORWARD_ORDER)))


class Route:
    """An attention processor that gives a named cross-attention layer its own encoder
    states (see the module docstring) and otherwise is the processor it wraps."""

    def __init__(self, name: str, inner: Any):
        self.name, self.inner = name, inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 tinv_layers: Mapping[str, torch.Tensor] | None = None,
                 tinv_values: Mapping[str, torch.Tensor] | None = None, **kw):
        if encoder_hidden_states is None:          # self-attention: nothing of the text
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, **kw)
        if tinv_layers and self.name in tinv_layers:
            encoder_hidden_states = tinv_layers[self.name]
        if not tinv_values or self.name not in tinv_values:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, **kw)
        # values from other states than the keys: the wrapped processor projects its values
        # with attn.to_v, so for this call to_v projects those states (normed as the keys are)
        states = tinv_values[self.name]
        if attn.norm_cross:
            states = attn.norm_encoder_hidden_states(states)
        to_v = attn.to_v
        attn.to_v = _Projecting(to_v, states)
        try:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, **kw)
        finally:
            attn.to_v = to_v


class _Projecting(torch.nn.Module):
    """A layer's to_v for one call: projects fixed `states` whatever it is given (the value
    states of Cond.values; a processor gives it the key states, of the same shape)."""

    def __init__(self, proj: torch.nn.Module, states: torch.Tensor):
        super().__init__()
        self.proj, self.states = proj, states

    def forward(self, given: torch.Tensor, *args, **kw) -> torch.Tensor:
        if given.shape != self.states.shape:
            raise ValueError(f"value states {tuple(self.states.shape)} for key states {tuple(given.shape)}")
        return self.proj(self.states.to(given.dtype), *args, **kw)


def route(unet) -> None:
    """Wrap every attention processor of `unet` in a Route (once; again after a method
    replaced processors, e.g. loaded LoRA or Custom Diffusion weights)."""
    procs = unet.attn_processors
    if all(isinstance(p, Route) for p in procs.values()):
        return
    unet.set_attn_processor({name: p if isinstance(p, Route) else Route(name, p) for name, p in procs.items()})
