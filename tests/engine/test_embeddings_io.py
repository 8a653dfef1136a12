"""Exported words load elsewhere (diffusers, A1111, the authors' layout) and mean the same."""
from __future__ import annotations

import pytest
import torch

from tinv.embeddings_io import export_result, import_embeddings, read_embeddings
from tinv.inversion import InversionConfig, invert
from tinv.models import to_pipeline
from tinv.pseudo_words import expand_prompt

# Lower case on purpose: diffusers' own multi-vector prompt expansion (maybe_convert_prompt)
# looks tokens up after the CLIP tokenizer lower-cases them, so it misses "<S*>_1" of an
# upper-case placeholder. tinv's Parts.tokenize has no such limit.
PLACEHOLDER = "<s*>"
PROMPT = f"a photo of {PLACEHOLDER} on the moon"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-vector word trained a few steps on tiny SD, exported in all three formats."""
    from tinv.data import ConceptImages
    from tinv.models import tiny_sd_parts
    parts = tiny_sd_parts(seed=0)
    images = ConceptImages(pixels=torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1,
                           paths=[])
    res = invert(parts, images, InversionConfig(placeholder=PLACEHOLDER, initializer_word="cat", num_vectors=2, steps=5, batch_size=2,
                                                lr=0.05), progress=False)
    folder = tmp_path_factory.mktemp("export")
    paths = export_result(res, folder)
    words = [w for w in _words(parts, res)]
    ids = parts.tokenize([expand_prompt(PROMPT, words)])
    with torch.no_grad():
        engine_out = parts.encode_text(ids)
    return res, paths, engine_out


def _words(parts, res):
    from tinv.pseudo_words import PseudoWord
    for name, ids in res.token_ids.items():
        yield PseudoWord(name, parts.tokenizer.convert_ids_to_tokens(ids), ids, res.embeds[name])


@pytest.mark.parametrize("fmt", ["diffusers", "a1111"])
def test_diffusers_load_textual_inversion_gives_engine_encoding(make_parts, trained, fmt):
    res, paths, engine_out = trained
    pipe = to_pipeline(make_parts("sd", seed=0))     # same random weights, no placeholder yet
    pipe.load_textual_inversion(str(paths[fmt]))
    with torch.no_grad():
        out, _ = pipe.encode_prompt(PROMPT, "cpu", 1, do_classifier_free_guidance=False)
    assert torch.allclose(out, engine_out, atol=1e-6)
    assert not torch.allclose(out, pipe.encode_prompt("a photo of cat cat on the moon", "cpu", 1, False)[0])


@pytest.mark.parametrize("fmt", ["diffusers", "a1111", "authors"])
def test_every_format_round_trips_through_import(make_parts, trained, fmt):
    res, paths, engine_out = trained
    read = read_embeddings(paths[fmt])
    assert torch.equal(read[PLACEHOLDER], res.embeds[PLACEHOLDER])
    parts = make_parts("sd", seed=0)
    words = import_embeddings(parts, paths[fmt])
    with torch.no_grad():
        out = parts.encode_text(parts.tokenize([expand_prompt(PROMPT, words)]))
    assert torch.equal(out, engine_out)


def test_authors_star_placeholder_needs_a_new_name(make_parts, tmp_path):
    from tinv.embeddings_io import save_authors
    vec = torch.randn(1, 32)
    save_authors({"*": vec}, {"*": 265}, tmp_path / "embeddings.pt")
    parts = make_parts("sd")
    with pytest.raises(ValueError, match="'\\*'.*already in the tokenizer"):
        import_embeddings(parts, tmp_path / "embeddings.pt")
    [word] = import_embeddings(parts, tmp_path / "embeddings.pt", placeholder="<star>")
    assert torch.equal(parts.input_embeddings().weight[word.token_ids[0]], vec[0])
