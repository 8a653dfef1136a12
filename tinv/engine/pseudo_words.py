"""Pseudo-words: placeholders with k learned vectors in the tokenizer and text encoder.

A placeholder "<S*>" with k vectors owns k new tokens "<S*>", "<S*>_1", ..., "<S*>_{k-1}"
(the diffusers multi-vector naming, so exported files load there unchanged); a prompt's
"<S*>" expands to the active ones. During training the learned vectors live in their own
nn.Parameter and are spliced into the frozen embedding lookup (`SplicedEmbedding`), so
no other row of the embedding table can change, not even through weight decay.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:   # tinv.engine.models imports diffusers: seconds the checks before a model load need not pay
    from tinv.engine.models import Parts


class PseudoWordError(ValueError):
    """A placeholder or initializer that cannot be used; the message names it."""


@dataclass
class PseudoWord:
    placeholder: str               # the string prompts use, e.g. "<S*>"
    tokens: list[str]              # its k vocabulary entries
    token_ids: list[int]
    init: torch.Tensor             # [k, D] starting vectors (regularization target if word-initialized)
    initializer_word: str | None = None
    vectors: nn.Parameter | None = field(default=None, repr=False)  # [k, D] while training

    @property
    def num_vectors(self) -> int:
        return len(self.tokens)


def token_names(placeholder: str, num_vectors: int) -> list[str]:
    return [placeholder] + [f"{placeholder}_{i}" for i in range(1, num_vectors)]


def _vocab(parts: Parts) -> dict[str, int]:
    return parts.tokenizer.get_vocab()


def initializer_embedding(parts: Parts, word: str) -> torch.Tensor:
    """The input embedding [D] of a word that must be exactly one token."""
    ids = parts.tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1:
        pieces = parts.tokenizer.convert_ids_to_tokens(ids)
        raise PseudoWordError(f"initializer word {word!r} is {len(ids)} tokens {pieces} for this "
                              "tokenizer; pick a word that is a single token")
    return parts.input_embeddings().weight[ids[0]].detach().clone()


def add_pseudo_word(parts: Parts, placeholder: str, num_vectors: int = 1,
                    initializer_word: str | None = None,
                    generator: torch.Generator | None = None) -> PseudoWord:
    """Add a placeholder's k tokens to tokenizer and text encoder, rows set to their init.

    init: copies of the initializer word's embedding, or uniform random in [0, 1) (the
    authors' choice) when no word is given."""
    if num_vectors < 1:
        raise PseudoWordError(f"{placeholder!r}: num_vectors must be >= 1, got {num_vectors}")
    names = token_names(placeholder, num_vectors)
    vocab = _vocab(parts)
    taken = [n for n in names if n in vocab]
    if taken:
        raise PseudoWordError(f"placeholder token(s) {taken} already in the tokenizer's vocabulary; "
                              "choose another with concept.placeholder (a job checks this before the model loads: "
                              "tinv.harness.tokens)")
    dim = parts.input_embeddings().weight.shape[1]
    if initializer_word:
        init = initializer_embedding(parts, initializer_word).expand(num_vectors, dim).clone()
    else:
        init = torch.rand(num_vectors, dim, generator=generator).to(parts.input_embeddings().weight)
    parts.tokenizer.add_tokens(names)
    ids = parts.tokenizer.convert_tokens_to_ids(names)
    _grow_embeddings(parts, len(parts.tokenizer))
    with torch.no_grad():
        parts.input_embeddings().weight[ids] = init.to(parts.input_embeddings().weight)
    check_single_tokens(parts, names, ids)
    return PseudoWord(placeholder, names, list(ids), init, initializer_word)


def check_single_tokens(parts: Parts, names: list[str], ids: list[int]) -> None:
    """Each placeholder token must survive tokenization as itself (BERT lower-cases, CLIP splits)."""
    got = parts.tokenizer(" ".join(names), add_special_tokens=False).input_ids
    if list(got) != list(ids):
        raise PseudoWordError(f"placeholder tokens {names} do not tokenize to themselves ({got} != {ids}); "
                              "choose another with concept.placeholder, e.g. '<T*>'")


def _grow_embeddings(parts: Parts, n: int) -> None:
    # Done by hand (not resize_token_embeddings) so old rows are copied bit for bit and
    # both families (CLIPTextModel, LDMBertModel) take the same path.
    old = parts.input_embeddings()
    if old.num_embeddings >= n:
        return
    new = nn.Embedding(n, old.embedding_dim, padding_idx=old.padding_idx,
                       device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:old.num_embeddings] = old.weight
    new.requires_grad_(False)
    parts.text_encoder.set_input_embeddings(new)
    parts.text_encoder.config.vocab_size = n


def expand_prompt(prompt: str, words: list[PseudoWord], active: dict[str, int] | None = None) -> str:
    """Replace each placeholder by its first `active[placeholder]` tokens (all by default).

    One regex pass, longest placeholder first, so "<S*>" inside "<S*>_1" is never re-expanded."""
    by_name = {w.placeholder: w for w in words}
    if not by_name:
        return prompt
    pattern = "|".join(re.escape(p) for p in sorted(by_name, key=len, reverse=True))

    def sub(m: re.Match) -> str:
        w = by_name[m.group(0)]
        n = w.num_vectors if active is None else active.get(w.placeholder, w.num_vectors)
        return " ".join(w.tokens[:n])
    return re.sub(pattern, sub, prompt)


class SplicedEmbedding(nn.Module):
    """A frozen embedding table whose rows `ids` are read from learned parameters instead."""

    def __init__(self, base: nn.Embedding, words: list[PseudoWord]):
        super().__init__()
        self.base = base
        self.words = words
        slot = torch.full((base.num_embeddings,), -1, dtype=torch.long, device=base.weight.device)
        ids = torch.tensor([i for w in words for i in w.token_ids], device=base.weight.device)
        slot[ids] = torch.arange(len(ids), device=base.weight.device)
        self.register_buffer("slot", slot, persistent=False)

    @property
    def weight(self) -> torch.Tensor:  # some callers read .weight (shape, dtype)
        return self.base.weight

    @property
    def num_embeddings(self) -> int:
        return self.base.num_embeddings

    @property
    def embedding_dim(self) -> int:
        return self.base.embedding_dim

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.base(input_ids)
        slot = self.slot[input_ids]
        learned = torch.cat([w.vectors for w in self.words]).to(out.dtype)
        return torch.where((slot >= 0)[..., None], learned[slot.clamp(min=0)], out)


@contextmanager
def learning(parts: Parts, words: list[PseudoWord]):
    """Within: each word's rows come from `word.vectors` (created from the table if unset).
    On exit: the learned values are written into the table rows and the plain table is back."""
    base = parts.input_embeddings()
    for w in words:
        if w.vectors is None:
            w.vectors = nn.Parameter(base.weight[w.token_ids].detach().clone().float())
    parts.text_encoder.set_input_embeddings(SplicedEmbedding(base, words))
    try:
        yield
    finally:
        parts.text_encoder.set_input_embeddings(base)
        write_rows(parts, words)


def write_rows(parts: Parts, words: list[PseudoWord]) -> None:
    """Copy each word's learned vectors into its embedding-table rows."""
    table = parts.input_embeddings().weight
    with torch.no_grad():
        for w in words:
            if w.vectors is not None:
                table[w.token_ids] = w.vectors.detach().to(table)


def set_vectors(parts: Parts, placeholder: str, vectors: torch.Tensor) -> PseudoWord:
    """Add a placeholder with given vectors [k, D] (used by imports); errors as add_pseudo_word."""
    vectors = torch.as_tensor(vectors).reshape(-1, parts.input_embeddings().weight.shape[1])
    word = add_pseudo_word(parts, placeholder, vectors.shape[0])
    word.init = vectors.clone()
    table = parts.input_embeddings().weight
    with torch.no_grad():
        table[word.token_ids] = vectors.to(table)
    return word
