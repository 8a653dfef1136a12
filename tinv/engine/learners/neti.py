"""NeTI (Alaluf et al. 2023, arXiv 2305.15391, "A Neural Space-Time Representation for
Text-to-Image Personalization"): S* is not a vector but a small network, the mapper, of
(denoising timestep t, cross-attention layer l) -> the word's input embedding there.

The mapper, as the authors' code builds it (github.com/NeuralTextualInversion/NeTI):

- a positional encoding of (t, l) (models/positional_encoding.py): random Fourier features
  [sin(Wx), cos(Wx)] of x = (t, l), W [1024, 2] ~ N(0, 1) scaled per column by sigma_t = 0.03
  and sigma_l = 2.0 (training/config.py pe_sigmas), the 2048-vector normalized to unit length;
- an input layer onto anchors: Linear(2048, 10 x n_layers) whose rows start as the encodings
  of 10 time anchors (t = 0, 100, ..., 900; config.py num_pe_time_anchors) at every layer
  (NeTIPositionalEncoding.init_layer), so the first hidden unit says "how near (t, l) is to
  each anchor";
- Linear -> 128, LayerNorm, LeakyReLU, twice (models/neti_mapper.py set_net), then nested
  dropout on those 128 units and a Linear to the embedding width (twice it with the bypass);
- the output rescaled to the norm of the super-category word's embedding
  (coach.py _add_concept_token_to_tokenizer: target_norm; here the initializer word's).

Nested dropout (neti_mapper.py apply_nested_dropout, nested_dropout_prob = 0.5): in training,
with probability 0.5 the hidden units from a random index on are zeroed, so the first units
carry the coarse concept and later ones its detail; at inference the units from N on can be
cut (`truncation`, the evaluation option `eval.neti_truncation`) to trade fidelity for
editability. The authors draw the coin once per layer's encoder call and the index per row;
so does this module, from the set's generator (a resumed run draws the same).

Conditioning (models/net_clip_text_embedding.py, coach.py get_text_conditioning): every
cross-attention layer gets the prompt encoded with S*'s input embedding replaced by the
mapper's output for (t, that layer), t being each training row's own timestep. Here all
layers x rows go through one encoder call (conditioning.Cond.at / Cond.layers). A UNet that
also pools the text into its time embedding (diffusers' addition_embed_type="text": the toy
world's; SD has none) reads it there too, so that path is one more "layer" with its own word
(`TEXT`, last): left on the initializer's encoding, it kept the toy world's red star from
being learned (oracle colour 1/16 of "A photo of S*" samples after 300 steps; 15/16 with it,
as single_word's 15/16).

The textual bypass (neti_mapper.py output_bypass, on by default in training/config.py and
input_configs/train.yaml; the setting `output_bypass`): the mapper outputs two vectors, its
last layer twice as wide and the whole output rescaled to the super-category word's norm
(neti_mapper.py get_output) before it is split in halves (net_clip_text_embedding.py). The
first half is S*'s input embedding, as without the bypass. The second is added to the text
encoder's OUTPUT at S*'s position, before its final layer norm: rescaled to the norm of the
state there and scaled by 0.2 (`bypass_scale`; neti_clip_text_encoder.py: existing_state +
0.2 * bypass_output), then the final norm; the encoder returns both states, and each
cross-attention layer computes its keys from the first and its values from the bypassed one
(models/xti_attention_processor.py: key = to_k(_ehs), value = to_v(_ehs_bypass)); here
Cond.layers and Cond.values (conditioning.Route). The negative prompt of guided sampling has
no S* and no bypass (the authors' sd_pipeline_call.py encodes it plainly). The toy world's
pooled-text path reads the keys' states (it is no attention layer; SD has no such path).
`method=neti_no_bypass` is the authors' ablation without it.

The layer index is the UNet's forward order, down, mid, up (constants.py UNET_LAYERS: IN01 ..
IN08, MID, OUT03 .. OUT11; xti_attention_processor.py counts the layers as they are called):
conditioning.cross_attention_layers. A stored mapper keeps the order it was trained with
(`layers` in its state and file), so one trained before the order was fixed reads its own.

Exports `neti.safetensors`: the mapper's tensors ("mapper.*") and S*'s table vector
("word"), with the placeholder, the layer order, the mapper's settings, its target norm and
the scheduler's number of training timesteps in the metadata; `load(pipe, file)` puts it on a
stock StableDiffusionPipeline (tinv/engine/learners/pipeline.py resolves it per step).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from tinv.engine import conditioning
from tinv.engine.conditioning import Cond
from tinv.engine.learners import ARGS, Learner, cpu_state
from tinv.engine.pseudo_words import PseudoWord, set_vectors

FILE = "neti.safetensors"
FORMAT = "tinv-neti/1"


class Mapper(nn.Module):
    """(t, l) -> S*'s input embedding at timestep t and cross-attention layer l."""

    def __init__(self, n_layers: int, dim: int, settings: Mapping[str, Any], norm: float | None,
                 timesteps: int, gen: torch.Generator):
        super().__init__()
        s = dict(settings)
        self.n_layers, self.dim, self.norm = n_layers, dim, norm
        self.hidden, self.p = int(s["hidden"]), float(s["nested_dropout_prob"])
        self.nested = bool(s["nested_dropout"])
        self.bypass = bool(s["output_bypass"])       # a second vector: the textual bypass
        self.bypass_scale = float(s["bypass_scale"])
        self.gen: torch.Generator | None = gen        # nested dropout's draws (training only)
        self.truncation: int | None = None            # keep the first N hidden units (inference)
        w = torch.randn(int(s["frequencies"]), 2, generator=gen)
        w[:, 0] *= s["sigma_t"]
        w[:, 1] *= s["sigma_l"]
        self.register_buffer("w", w)                 # fixed: the authors detach it
        anchors = int(s["time_anchors"])
        # nn.Linear initializes from the global RNG: seed it from the set's generator, so the
        # mapper is the same on every run with the set's seed, and leave the global RNG be
        seed = int(torch.randint(2 ** 62, (), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.input = nn.Linear(2 * len(w), anchors * n_layers)
            self.net = nn.Sequential(nn.Linear(anchors * n_layers, self.hidden), nn.LayerNorm(self.hidden),
                                     nn.LeakyReLU(), nn.Linear(self.hidden, self.hidden),
                                     nn.LayerNorm(self.hidden), nn.LeakyReLU())
            self.output = nn.Linear(self.hidden, 2 * dim if self.bypass else dim)
        step = timesteps // anchors
        grid = torch.tensor([(ta, la) for ta in range(0, step * anchors, step) for la in range(n_layers)],
                            dtype=torch.float32)
        with torch.no_grad():
            self.input.weight.copy_(self.encode(grid[:, 0], grid[:, 1]))

    def encode(self, t: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        """Unit-length random Fourier features of (t, l): [N] x [N] -> [N, 2 x frequencies]."""
        wx = torch.stack([t.float(), layer.float()], dim=1) @ self.w.T
        v = torch.cat([torch.sin(wx), torch.cos(wx)], dim=1)
        return v / v.norm(dim=1, keepdim=True)

    def forward(self, t: torch.Tensor, layer: torch.Tensor, groups: int = 1
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(S*'s input embeddings [N, dim], the bypass vectors [N, dim] or None); `groups`
        consecutive blocks of rows are one encoder call each (one per layer), which is what
        nested dropout's coin is drawn for."""
        h = self.net(self.input(self.encode(t, layer)))
        keep = self._kept(len(h), groups, h.device)
        if keep is not None:
            h = h * keep
        out = self.output(h)
        # the authors rescale the whole output, both halves together, then split it
        out = out if self.norm is None else nn.functional.normalize(out, dim=-1) * self.norm
        return (out[:, :self.dim], out[:, self.dim:]) if self.bypass else (out, None)

    def _kept(self, n: int, groups: int, device) -> torch.Tensor | None:
        units = torch.arange(self.hidden)
        if self.training and self.nested and torch.is_grad_enabled():
            # only passes that train the mapper; a fixed-batch loss under no_grad sees it whole
            hit = (torch.rand(groups, generator=self.gen) < self.p).repeat_interleave(n // groups)
            cut = torch.randint(self.hidden, (n,), generator=self.gen)
            keep = ~hit[:, None] | (units[None] < cut[:, None])
            return keep.to(device=device, dtype=torch.float32)
        if not self.training and self.truncation is not None:
            return (units < self.truncation).to(device=device, dtype=torch.float32)
        return None


def _final_norm(encoder) -> nn.Module:
    """The text encoder's last module, the norm over its last hidden states: CLIP's
    final_layer_norm, LDMBert's encoder layer_norm (where the bypass goes in before)."""
    for path in ("text_model.final_layer_norm", "final_layer_norm", "model.layer_norm"):
        m = encoder
        for name in path.split("."):
            m = getattr(m, name, None)
        if isinstance(m, nn.Module):
            return m
    raise ValueError(f"neti's textual bypass: no final norm found in {type(encoder).__name__}")


class _Bypassed:
    """A forward hook on the text encoder's final norm: besides the states it returns (the
    keys'), the states with each bypass added at S*'s positions before the norm (the values')."""

    def __init__(self, bypasses: list[tuple[torch.Tensor, torch.Tensor, float]]):
        self.bypasses, self.states = bypasses, None

    def __call__(self, module, inputs, output):
        x = inputs[0]
        y = x
        for mask, vec, scale in self.bypasses:
            # rescaled to the norm of the encoder's state at S* (neti_clip_text_encoder.py)
            b = nn.functional.normalize(vec.to(x.dtype), dim=-1)[:, None, :] * x.norm(dim=-1, keepdim=True)
            y = torch.where(mask[..., None], y + scale * b, y)
        self.states = module.forward(y)      # forward, not __call__: the hook does not re-enter
        return output


class _Replaced(nn.Module):
    """The text encoder's input embedding module with S*'s rows replaced, row by row, for one
    encoder call (wraps whatever is installed: the loop's SplicedEmbedding while training)."""

    def __init__(self, inner: nn.Module, mask: torch.Tensor, vectors: torch.Tensor):
        super().__init__()
        self.inner, self.mask, self.vectors = inner, mask, vectors

    @property
    def weight(self) -> torch.Tensor:
        return self.inner.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.inner(input_ids)
        return torch.where(self.mask[..., None], self.vectors[:, None, :].to(out.dtype), out)


# A UNet with diffusers' addition_embed_type="text" (the toy world's) also pools the text into
# its time embedding: a consumer of the text besides the cross-attention layers, so it gets its
# own (t, l) word too, as the last "layer" (a stock SD UNet has none: the authors' 16 layers).
TEXT = "add_embedding"


def consumers(unet) -> list[str]:
    """What reads the text in `unet`: its cross-attention layers, then the pooled-text path."""
    return conditioning.cross_attention_layers(unet) + ([TEXT] if conditioning.pools_text(unet) else [])


class SpaceTimeWords:
    """A conditioner (conditioning.encode): a prompt with a known S* is a Cond whose `at(t)`
    holds, per cross-attention layer, the prompt encoded with the mapper's vector for (t, l)."""

    def __init__(self):
        self.mappers: dict[int, Mapper] = {}       # S*'s token id -> its mapper
        self.layers: list[str] = []

    def add(self, token_id: int, mapper: Mapper, layers: list[str]) -> None:
        self.mappers[int(token_id)], self.layers = mapper, list(layers)

    def truncate(self, n: int | None) -> None:
        for m in self.mappers.values():
            if n is not None and not 1 <= n <= m.hidden:
                raise ValueError(f"neti_truncation={n}: the mapper has {m.hidden} units (use 1..{m.hidden} or null)")
            m.truncation = n

    def __call__(self, parts, ids: torch.Tensor) -> Cond:
        ids = ids.to(parts.device)
        text = parts.encode_text(ids)
        if not any((ids == tok).any() for tok in self.mappers):
            return Cond(text)
        return Cond(text, at=lambda t: self.at(parts, ids, t, text))

    def at(self, parts, ids: torch.Tensor, t, text: torch.Tensor) -> Cond:
        t = torch.as_tensor(t, device=parts.device).reshape(-1)
        if len(t) != len(ids):
            if len(ids) == 1:            # one prompt at several timesteps: a row for each
                ids, text = ids.expand(len(t), -1), text.expand(len(t), -1, -1)
            elif len(t) == 1:            # a batch at one timestep (sampling)
                t = t.expand(len(ids))
            else:
                raise ValueError(f"neti: {len(t)} timesteps for {len(ids)} prompts")
        n_layers, b = len(self.layers), len(ids)
        # every layer x row in one encoder call, layer-major (the blocks Cond.layers splits)
        all_ids = ids.repeat(n_layers, 1)
        layer = torch.arange(n_layers, device=parts.device).repeat_interleave(b)
        swaps, bypasses = [], []
        for tok, mapper in self.mappers.items():
            mask = all_ids == tok
            if mask.any():
                vec, bypass = mapper(t.repeat(n_layers), layer, groups=n_layers)
                swaps.append((mask, vec))
                if bypass is not None:
                    bypasses.append((mask, bypass, mapper.bypass_scale))
        encoder = parts.text_encoder
        base = encoder.get_input_embeddings()
        emb = base
        for mask, vec in swaps:
            emb = _Replaced(emb, mask, vec)
        encoder.set_input_embeddings(emb)
        hook = _Bypassed(bypasses)
        handle = _final_norm(encoder).register_forward_hook(hook) if bypasses else None
        try:
            encoded = parts.encode_text(all_ids)
        finally:
            encoder.set_input_embeddings(base)
            if handle is not None:
                handle.remove()
        per = dict(zip(self.layers, encoded.split(b)))
        pooled = per.pop(TEXT, text)          # the pooled-text path reads the keys' states
        values = None
        if hook.states is not None:
            values = dict(zip(self.layers, hook.states.split(b)))
            values.pop(TEXT, None)
        return Cond(pooled, per, values=values)


def conditioner(parts) -> SpaceTimeWords:
    """The parts' SpaceTimeWords, installed on first use."""
    if not isinstance(getattr(parts, "conditioner", None), SpaceTimeWords):
        parts.conditioner = SpaceTimeWords()
    return parts.conditioner


def _timesteps(parts) -> int:
    return int(getattr(parts.scheduler.config, "num_train_timesteps", 1000))


class NeTI(Learner):
    name = "neti"
    packable = False      # per-row, per-layer encodings: one set at a time
    trains_word = False   # S* is replaced by the mapper everywhere; its vector stays the initializer

    def __init__(self, parts, word: PseudoWord, cfg, gen):
        super().__init__(parts, word, cfg, gen)
        if cfg.num_vectors != 1:
            raise ValueError(f"neti maps (t, l) to one word: num_vectors must be 1, got {cfg.num_vectors}")
        self.layers = consumers(parts.unet)
        table = parts.input_embeddings().weight
        # the authors rescale to the super-category token's norm; S* starts as that word
        norm = float(table[word.token_ids[0]].float().norm()) if self.args["normalize_output"] else None
        self.mapper = Mapper(len(self.layers), table.shape[1], self.args, norm, _timesteps(parts), gen)
        self.mapper.to(parts.device).train()
        conditioner(parts).add(word.token_ids[0], self.mapper, self.layers)

    def param_groups(self) -> list[dict]:
        # the loop's lr (the authors' 1e-3, scaled by batch x accumulation) and weight decay
        return [{"params": list(self.mapper.parameters())}]

    def state(self) -> dict[str, Any]:
        return {"placeholder": self.cfg.placeholder, "layers": list(self.layers), "settings": dict(self.args),
                "norm": self.mapper.norm, "timesteps": _timesteps(self.parts),
                **{f"mapper.{k}": v for k, v in cpu_state(self.mapper.state_dict()).items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.mapper.load_state_dict(_mapper_tensors(state))

    def finish(self, parts) -> None:
        self.mapper.eval()


LEARNER = NeTI


def _mapper_tensors(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {k[len("mapper."):]: v for k, v in state.items() if k.startswith("mapper.")}


# What a mapper stored before a setting existed ran with (a mapper from before the textual
# bypass has none: its output layer is one vector wide)
BEFORE = {"output_bypass": False}


def _install(parts, token_id: int, state: Mapping[str, Any]) -> Mapper:
    # the mapper's layer index is the position in the order it was trained with
    layers = list(state["layers"])
    if sorted(layers) != sorted(consumers(parts.unet)):
        raise ValueError(f"neti mapper for layers {layers} does not fit this UNet's "
                         f"text consumers {consumers(parts.unet)}")
    dim = parts.input_embeddings().weight.shape[1]
    mapper = Mapper(len(layers), dim, {**ARGS["neti"], **BEFORE, **state["settings"]}, state["norm"],
                    int(state["timesteps"]), torch.Generator().manual_seed(0))   # weights: loaded next
    mapper.load_state_dict(_mapper_tensors(state))
    mapper.gen = None
    mapper.to(parts.device).eval()
    conditioner(parts).add(token_id, mapper, layers)
    return mapper


def restore(parts, learned: Mapping[str, Any], words: Mapping[str, PseudoWord]) -> None:
    st = learned["state"]
    _install(parts, words[st["placeholder"]].token_ids[0], st)


def prepare_sampling(parts, learned: Mapping[str, Any], eval_cfg: Mapping[str, Any]) -> None:
    """Truncate the mapper at `eval.neti_truncation` hidden units (null: keep them all)."""
    truncate(parts, (eval_cfg or {}).get("neti_truncation"))


def truncate(parts, n: int | None) -> None:
    """Keep the first n of the mapper's nested-dropout units at inference (None: all)."""
    conditioner(parts).truncate(n)


def export(parts, learned: Mapping[str, Any], folder: Path) -> dict[str, str]:
    from safetensors.torch import save_file

    from tinv.core import atomic
    st = learned["state"]
    table = parts.input_embeddings().weight
    token = parts.tokenizer.convert_tokens_to_ids(st["placeholder"])
    tensors = {**{k: v.contiguous() for k, v in st.items() if k.startswith("mapper.")},
               "word": table[token].detach().float().cpu().reshape(1, -1).clone()}
    meta = {"format": FORMAT, "placeholder": st["placeholder"], "layers": json.dumps(list(st["layers"])),
            "settings": json.dumps(st["settings"]), "norm": json.dumps(st["norm"]),
            "timesteps": str(st["timesteps"])}
    path = Path(folder) / FILE
    with atomic.replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return {"neti": str(path)}


def read(path: str | Path) -> tuple[str, torch.Tensor, dict[str, Any]]:
    """(placeholder, S*'s table vector [1, D], mapper state as `NeTI.state()`) from an
    exported file; a ValueError naming a wrong one."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a tinv NeTI file (format {meta.get('format')!r})")
        state = {"placeholder": meta["placeholder"], "layers": json.loads(meta["layers"]),
                 "settings": json.loads(meta["settings"]), "norm": json.loads(meta["norm"]),
                 "timesteps": int(meta["timesteps"]),
                 **{k: f.get_tensor(k) for k in f.keys() if k.startswith("mapper.")}}
        return meta["placeholder"], f.get_tensor("word"), state


def install_file(parts, path: str | Path, truncation: int | None = None) -> str:
    """Put an exported NeTI file into `parts` (tokenizer, text encoder, conditioner); returns
    its placeholder, which prompts then use as the engine's would."""
    placeholder, vector, state = read(path)
    word = set_vectors(parts, placeholder, vector)
    _install(parts, word.token_ids[0], state)
    truncate(parts, truncation)
    return placeholder


def load(pipe, path: str | Path, truncation: int | None = None) -> str:
    """Put an exported NeTI file on a stock StableDiffusionPipeline; returns its placeholder.
    Generate with `tinv.engine.learners.pipeline.generate(pipe, prompt, ...)`; `truncation`
    (or `truncate(pipeline.parts_of(pipe), n)` later) keeps the mapper's first n units."""
    from tinv.engine.learners.pipeline import parts_of
    return install_file(parts_of(pipe), path, truncation)


def usage(files: Mapping[str, Path], placeholder: str) -> list[str]:
    return [f'NeTI (diffusers): placeholder = tinv.engine.learners.neti.load(pipe, "{files["neti"]}", '
            f'truncation=None), then tinv.engine.learners.pipeline.generate(pipe, "a photo of {placeholder}") '
            f'(the word alone, in the embedding files, is the initializer: the network makes it per step and layer)']
