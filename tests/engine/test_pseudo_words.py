"""Placeholders: k tokens each, prompt expansion, and clear errors at the boundary."""
from __future__ import annotations

import pytest
import torch

from tinv.engine.pseudo_words import PseudoWordError, add_pseudo_word, expand_prompt, initializer_embedding


@pytest.mark.parametrize("family", ["sd", "ldm"])
def test_k_vectors_start_at_initializer_and_expand(make_parts, family):
    parts = make_parts(family)
    word = add_pseudo_word(parts, "<S*>", 3, "cat")
    table = parts.input_embeddings().weight
    assert word.tokens == ["<S*>", "<S*>_1", "<S*>_2"]
    for i in word.token_ids:
        assert torch.equal(table[i], initializer_embedding(parts, "cat"))
    prompt = expand_prompt("a photo of <S*> on the moon", [word], {"<S*>": 2})
    assert prompt == "a photo of <S*> <S*>_1 on the moon"
    ids = parts.tokenize([expand_prompt("a photo of <S*>", [word])])[0].tolist()
    assert ids[4:7] == word.token_ids    # [start] a photo of <S*> <S*>_1 <S*>_2


@pytest.mark.parametrize("family", ["sd", "ldm"])
def test_placeholder_already_in_vocabulary_is_an_error(make_parts, family):
    parts = make_parts(family)
    with pytest.raises(PseudoWordError, match="'cat'.*already in the tokenizer's vocabulary"):
        add_pseudo_word(parts, "cat", 1, "dog")


@pytest.mark.parametrize("family", ["sd", "ldm"])
def test_multi_token_initializer_is_an_error(make_parts, family):
    parts = make_parts(family)
    with pytest.raises(PseudoWordError, match="'sculptureyy' is 3 tokens"):
        add_pseudo_word(parts, "<S*>", 1, "sculptureyy")
    assert "<S*>" not in parts.tokenizer.get_vocab()   # nothing half-added


def test_random_init_is_uniform_unit_interval(make_parts):
    parts = make_parts("sd")
    word = add_pseudo_word(parts, "<R>", 2, None, torch.Generator().manual_seed(0))
    v = parts.input_embeddings().weight[word.token_ids]
    assert v.min() >= 0 and v.max() < 1 and v.std() > 0.1


@pytest.mark.parametrize("family", ["sd", "ldm"])
def test_tokenize_expands_multi_vector_words_like_diffusers(make_parts, family):
    parts = make_parts(family)
    word = add_pseudo_word(parts, "<S*>", 3, "cat")
    single = add_pseudo_word(parts, "<S*>x", 1, "dog")
    plain = parts.tokenize(["a <S*> and <S*>x"])[0].tolist()
    [and_id] = parts.tokenizer("and", add_special_tokens=False).input_ids
    assert plain[2:7] == word.token_ids + [and_id] + single.token_ids
    written_out = parts.tokenize(["a <S*> <S*>_1 <S*>_2 and <S*>x"])[0]
    assert written_out.tolist() == plain                      # never expanded twice
    unexpanded = parts.tokenize(["a <S*>"], expand=False)[0].tolist()
    assert unexpanded[2:4] == [word.token_ids[0], parts.tokenizer.sep_token_id
                               if family == "ldm" else parts.tokenizer.eos_token_id]
