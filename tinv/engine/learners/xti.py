"""P+ / Extended Textual Inversion (Voynov et al. 2023, arXiv 2303.09522): one learned word
per cross-attention layer of the UNet, all starting from the initializer word.

The prompt "a photo of S*" is encoded once per layer with S* replaced by that layer's word
(`<S*-l0>`, `<S*-l1>`, ... pseudo-words of the loop, so they are spliced, trained,
checkpointed and exported as S* is) and each layer attends to its own encoding
(conditioning.Cond.layers, routed by diffusers' attention processors). S* itself reaches no
cross-attention layer; it is the word of whatever else reads the text: a UNet that pools the
text into its time embedding (conditioning.pools_text: the toy world's) learns S* for that
path, a stock SD UNet has none and S* stays at its initializer, out of the optimizer.

Exports: `xti.safetensors`, one [1, D] vector per layer named by the layer's processor key
and S*'s own under "pooled", with the placeholder and layer order in its metadata;
`load(pipe, file)` puts it on a stock diffusers pipeline (tinv/engine/learners/pipeline.py
does the per-layer routing there).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from tinv.engine import conditioning
from tinv.engine.conditioning import Cond
from tinv.engine.learners import Learner
from tinv.engine.pseudo_words import PseudoWord, add_pseudo_word, set_vectors

FILE = "xti.safetensors"
POOLED = "pooled"          # S*'s own vector: the word of the text the UNet pools (if it does)
FORMAT = "tinv-xti/1"


def layer_placeholder(placeholder: str, i: int) -> str:
    return f"<{placeholder.strip('<>')}-l{i}>"


class LayerWords:
    """A conditioner (conditioning.encode): for each placeholder token it knows, every
    cross-attention layer gets the prompt encoded with that layer's word in its place."""

    def __init__(self):
        self.words: dict[int, dict[str, int]] = {}     # S*'s token id -> {layer: its word's token id}

    def add(self, token_id: int, layer_ids: Mapping[str, int]) -> None:
        self.words[int(token_id)] = dict(layer_ids)

    def __call__(self, parts, ids: torch.Tensor) -> Cond:
        ids = ids.to(parts.device)
        text = parts.encode_text(ids)
        hits = {tok: ids == tok for tok in self.words}
        if not any(h.any() for h in hits.values()):
            return Cond(text)
        names = list(next(iter(self.words.values())))
        per_layer = []
        for name in names:
            swapped = ids.clone()
            for tok, hit in hits.items():
                swapped[hit] = self.words[tok][name]
            per_layer.append(swapped)
        encoded = parts.encode_text(torch.cat(per_layer)).split(len(ids))   # one encoder call
        return Cond(text, dict(zip(names, encoded)))


def conditioner(parts) -> LayerWords:
    """The parts' LayerWords, installed on first use."""
    if not isinstance(getattr(parts, "conditioner", None), LayerWords):
        parts.conditioner = LayerWords()
    return parts.conditioner


class XTI(Learner):
    name = "xti"
    packable = False      # per-layer encodings for every row of a batch: one set at a time

    def __init__(self, parts, word: PseudoWord, cfg, gen):
        super().__init__(parts, word, cfg, gen)
        if cfg.num_vectors != 1:
            raise ValueError(f"xti learns one word per layer: num_vectors must be 1, got {cfg.num_vectors}")
        self.layers = conditioning.cross_attention_layers(parts.unet)
        # S* reaches no cross-attention layer: trained only where the UNet pools the text (out of
        # the optimizer otherwise, so weight decay leaves it at its initializer)
        self.trains_word = conditioning.pools_text(parts.unet)
        init = cfg.initializer_word if cfg.init == "word" else None
        self.layer_words = [add_pseudo_word(parts, layer_placeholder(cfg.placeholder, i), 1, init, gen)
                            for i in range(len(self.layers))]
        conditioner(parts).add(word.token_ids[0], {n: w.token_ids[0] for n, w in zip(self.layers, self.layer_words)})

    def words(self) -> list[PseudoWord]:
        return list(self.layer_words)

    def state(self) -> dict[str, Any]:
        # the vectors are the loop's (the set's words); this is how to put them back
        return {"placeholder": self.cfg.placeholder, "layers": list(self.layers),
                "words": [w.placeholder for w in self.layer_words]}


LEARNER = XTI


def _check_layers(stored: list[str], parts, what: str) -> None:
    """Each word is named by its layer, so only the set of layers must match (results stored
    before cross_attention_layers took the forward order list the mid block last)."""
    layers = conditioning.cross_attention_layers(parts.unet)
    if sorted(stored) != sorted(layers):
        raise ValueError(f"{what} for layers {list(stored)} do not fit this UNet's cross-attention layers {layers}")


def restore(parts, learned: Mapping[str, Any], words: Mapping[str, PseudoWord]) -> None:
    st = learned["state"]
    _check_layers(list(st["layers"]), parts, "xti words")
    conditioner(parts).add(words[st["placeholder"]].token_ids[0],
                           {n: words[w].token_ids[0] for n, w in zip(st["layers"], st["words"])})


def vectors(parts, learned: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Layer name -> its word's vector [1, D], and "pooled" -> S*'s, from the parts' embedding table."""
    st = learned["state"]
    table = parts.input_embeddings().weight
    ids = parts.tokenizer.convert_tokens_to_ids(list(st["words"]) + [st["placeholder"]])
    return {n: table[i].detach().float().cpu().reshape(1, -1).clone() for n, i in zip(st["layers"] + [POOLED], ids)}


def export(parts, learned: Mapping[str, Any], folder: Path) -> dict[str, str]:
    from safetensors.torch import save_file

    from tinv.core import atomic
    st = learned["state"]
    meta = {"format": FORMAT, "placeholder": st["placeholder"], "layers": json.dumps(list(st["layers"]))}
    path = Path(folder) / FILE
    with atomic.replacing(path) as tmp:
        save_file(vectors(parts, learned), str(tmp), metadata=meta)
    return {"xti": str(path)}


def usage(files: Mapping[str, Path], placeholder: str) -> list[str]:
    return [f'P+ (diffusers): placeholder = tinv.engine.learners.xti.load(pipe, "{files["xti"]}"), then '
            f'tinv.engine.learners.pipeline.generate(pipe, "a photo of {placeholder}") (the word alone, '
            f'in the embedding files, is the initializer: every layer reads its own word)']


def read(path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """(placeholder, layer -> [1, D]) from an exported file; a ValueError naming a wrong one."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a tinv P+ (xti) file (format {meta.get('format')!r})")
        layers = json.loads(meta["layers"])
        return meta["placeholder"], {n: f.get_tensor(n) for n in layers + [POOLED]}


def install_file(parts, path: str | Path) -> str:
    """Put an exported P+ file's words into `parts` (tokenizer, text encoder, conditioner);
    returns its placeholder, which prompts then use as the engine's would."""
    placeholder, per_layer = read(path)
    pooled = per_layer.pop(POOLED)
    _check_layers(list(per_layer), parts, f"{str(path)!r} holds words")
    layers = list(per_layer)
    base = set_vectors(parts, placeholder, pooled)
    words = [set_vectors(parts, layer_placeholder(placeholder, i), v) for i, v in enumerate(per_layer.values())]
    conditioner(parts).add(base.token_ids[0], {n: w.token_ids[0] for n, w in zip(layers, words)})
    return placeholder


def load(pipe, path: str | Path) -> str:
    """Put an exported P+ file on a stock StableDiffusionPipeline; returns its placeholder.
    Generate with `tinv.engine.learners.pipeline.generate(pipe, prompt, ...)`."""
    from tinv.engine.learners.pipeline import parts_of
    return install_file(parts_of(pipe), path)
