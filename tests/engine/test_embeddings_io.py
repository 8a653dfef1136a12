"""Exported words load in each tool and mean there what they mean in tinv.

A tiny random SD (CLIP) and LDM (BERT) pipeline are saved to a folder as a user's model
would be. tinv inverts a word on each with the job's own placeholder `<S*>` (capitals on
purpose: the CLIP tokenizer lower-cases prompts) for every setup that shapes the vectors:
k = 1, 2, 3, progressive, per-image tokens. Each export is then loaded the way its tool
loads it, into a fresh copy of the saved pipeline, and the prompt as a user of that tool
writes it must give tinv's text-encoder output for "a photo of <S*> on the moon"
(<= 1e-6):

- diffusers: `StableDiffusionPipeline.from_pretrained(folder).load_textual_inversion(file)`,
  then `encode_prompt("a photo of <s*> on the moon")`;
- AUTOMATIC1111: its rule, followed by `a1111_encode` below: the trigger word is the file
  name, its tokens in the prompt are replaced by the k vectors;
- the authors' code: its rule, followed by `authors_encode` below: their stock tokenizer
  reads the prompt, every position whose id is `string_to_token[s]` gets s's vectors
  (k > 1: inserted, the row cut back to the context length).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from tinv.engine.embeddings_io import (AUTHORS_PLACEHOLDER, a1111_trigger, authors_tokens, diffusers_token,
                                export_result, import_embeddings, read_embeddings)
from tinv.engine.inversion import InversionConfig, invert
from tinv.engine.models import MAX_TOKENS, load_parts, save_parts
from tinv.engine.pseudo_words import expand_prompt

PLACEHOLDER = "<S*>"                      # tinv.harness.job's placeholder
PROMPT = "a photo of {} on the moon"
TOL = 1e-6
CASES = {
    "k1": dict(num_vectors=1),
    "k2": dict(num_vectors=2),
    "k3": dict(num_vectors=3),
    # steps 0, 1: one vector; step 2: two; the third is never unlocked and keeps its init
    "progressive": dict(num_vectors=3, progressive_interval=2),
    "per_image_tokens": dict(num_vectors=1, per_image_tokens=True),
}


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    """{family: folder} of tiny random pipelines saved as a user's model folder."""
    from tinv.engine.models import tiny_ldm_parts, tiny_sd_parts
    root = tmp_path_factory.mktemp("stock")
    return {"sd": save_parts(tiny_sd_parts(seed=0), root / "sd"),
            "ldm": save_parts(tiny_ldm_parts(seed=0), root / "ldm")}


_TRAINED: dict = {}


@pytest.fixture
def trained(stock, tmp_path_factory):
    """(family, case) -> the engine after inversion, its exports and its encoding of PROMPT."""
    def get(family: str, case: str):
        if (family, case) not in _TRAINED:
            from tinv.engine.data import ConceptImages
            engine = load_parts(stock[family])
            images = ConceptImages(pixels=torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1,
                                   paths=[])
            cfg = InversionConfig(placeholder=PLACEHOLDER, initializer_word="cat", steps=3, batch_size=1,
                                  lr=0.05, **CASES[case])
            res = invert(engine, images, cfg, progress=False)
            # the job's layout: <job folder>/embeddings/
            folder = tmp_path_factory.mktemp(f"{family}-{case}") / f"red_star-{case}-0123abcd" / "embeddings"
            paths = export_result(res, folder)
            _TRAINED[family, case] = (engine, res, paths)
        return _TRAINED[family, case]
    return get


def engine_encoding(engine, prompt: str) -> torch.Tensor:
    with torch.no_grad():
        return engine.encode_text(engine.tokenize([prompt]))


# --- diffusers -----------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", ["diffusers", "a1111"])
def test_diffusers_load_textual_inversion_gives_the_engine_encoding(stock, trained, case, fmt):
    from diffusers import StableDiffusionPipeline
    engine, res, paths = trained("sd", case)
    expected = engine_encoding(engine, PROMPT.format(PLACEHOLDER))
    pipe = StableDiffusionPipeline.from_pretrained(stock["sd"], safety_checker=None, requires_safety_checker=False)
    pipe.load_textual_inversion(str(paths[fmt]))
    # what a user of each file types: the exported token / the A1111 file's trigger word
    # (diffusers expands a multi-vector word only when the prompt spells it as the CLIP
    # tokenizer prints it, lower case: "<S*>" typed in a prompt stays one vector there.)
    word = diffusers_token(PLACEHOLDER) if fmt == "diffusers" else paths[fmt].stem
    assert word == ("<s*>" if fmt == "diffusers" else word.lower())
    with torch.no_grad():
        out, _ = pipe.encode_prompt(PROMPT.format(word), "cpu", 1, do_classifier_free_guidance=False)
    assert (out - expected).abs().max().item() <= TOL
    k = CASES[case]["num_vectors"]
    # diffusers expanded the word to all k of its rows
    assert pipe.maybe_convert_prompt(PROMPT.format(word), pipe.tokenizer).count(f"{word}_") == k - 1


# --- AUTOMATIC1111 -------------------------------------------------------------------------

class SplicedRows(nn.Module):
    """An input-embedding table whose output rows are rewritten by `fix(ids, embeds)`, the way
    A1111's EmbeddingsWithFixes and the authors' EmbeddingManager hook a text encoder."""

    def __init__(self, base: nn.Embedding, fix):
        super().__init__()
        self.base, self.fix = base, fix

    @property
    def weight(self):
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fix(ids, self.base(ids).clone())


def encode_with(parts, ids: torch.Tensor, fix) -> torch.Tensor:
    base = parts.input_embeddings()
    parts.text_encoder.set_input_embeddings(SplicedRows(base, fix))
    try:
        with torch.no_grad():
            return parts.text_encoder(ids)[0]
    finally:
        parts.text_encoder.set_input_embeddings(base)


def a1111_encode(parts, embeddings_dir: Path, prompt: str) -> torch.Tensor:
    """A1111's rule on a stock CLIP pipeline: every `<name>.pt` in its embeddings folder is the trigger
    word `name`; where the prompt's tokens spell that word, its k vectors take their place
    (one chunk: BOS + 75 tokens + EOS, padded with the end token as for SD 1.x)."""
    tok = parts.tokenizer
    words = []
    for f in sorted(embeddings_dir.glob("*.pt")):
        data = torch.load(f, map_location="cpu", weights_only=True)
        params = data["string_to_param"]
        assert len(params) == 1, f"{f.name}: A1111 wants one term per file"
        words.append((tok([f.stem], add_special_tokens=False).input_ids[0], next(iter(params.values()))))
    ids = tok(prompt, add_special_tokens=False).input_ids
    tokens, fixes, i = [], [], 0
    while i < len(ids):
        match = next(((w, v) for w, v in sorted(words, key=lambda x: -len(x[0])) if ids[i:i + len(w)] == w), None)
        if match is None:
            tokens.append(ids[i])
            i += 1
            continue
        fixes.append((len(tokens), match[1]))
        tokens += [0] * match[1].shape[0]
        i += len(match[0])
    chunk = [tok.bos_token_id] + tokens[:MAX_TOKENS - 2] + [tok.eos_token_id]
    chunk += [tok.pad_token_id] * (MAX_TOKENS - len(chunk))

    def fix(_ids, emb):
        for offset, vec in fixes:
            emb[0, 1 + offset:1 + offset + vec.shape[0]] = vec.to(emb)
        return emb
    return encode_with(parts, torch.tensor([chunk]), fix)


@pytest.mark.parametrize("case", CASES)
def test_a1111_rule_gives_the_engine_encoding(stock, trained, case, tmp_path):
    engine, res, paths = trained("sd", case)
    webui = tmp_path / "stable-diffusion-webui" / "embeddings"    # where a user copies the file
    webui.mkdir(parents=True)
    shutil.copy(paths["a1111"], webui)
    trigger = paths["a1111"].stem
    assert trigger == f"red_star-{case}-0123abcd" and trigger == a1111_trigger(paths["a1111"].parent)
    assert re.fullmatch(r"[a-z0-9._-]+", trigger)           # a file name on any system, CLIP-normal
    expected = engine_encoding(engine, PROMPT.format(PLACEHOLDER))
    out = a1111_encode(load_parts(stock["sd"]), webui, PROMPT.format(trigger))
    assert (out - expected).abs().max().item() <= TOL
    # the trigger really was found: without the file the prompt means something else
    plain = a1111_encode(load_parts(stock["sd"]), tmp_path, PROMPT.format(trigger))
    assert (plain - expected).abs().max().item() > 1e-3


# --- the authors' code ---------------------------------------------------------------------

def authors_encode(parts, ckpt_path: Path, prompt: str) -> torch.Tensor:
    """The authors' EmbeddingManager on a stock pipeline: their tokenizer call (padded to 77),
    then every position holding `string_to_token[s]` takes s's vectors; with more than one
    vector per token they are inserted there and the row is cut back to its length."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    s2t, s2p = ckpt["string_to_token"], ckpt["string_to_param"]
    for s, t in s2t.items():   # their check: the string is exactly one token of the stock vocabulary
        assert parts.tokenizer(s, add_special_tokens=False).input_ids == [int(t)], s
    ids = parts.tokenizer(prompt, truncation=True, max_length=MAX_TOKENS, padding="max_length",
                          return_tensors="pt").input_ids
    per_token = max(p.shape[0] for p in s2p.values())

    def fix(tokens, emb):
        tokens = tokens.clone()
        n = tokens.shape[1]
        for s, t in s2t.items():
            vec = s2p[s].detach().to(emb)
            if per_token == 1:
                emb[tokens == t] = vec
                continue
            rows, cols = torch.where(tokens == t)
            for r, c in sorted(zip(rows.tolist(), cols.tolist()), key=lambda rc: -rc[1]):
                tokens[r] = torch.cat([tokens[r][:c], t.repeat(vec.shape[0]), tokens[r][c + 1:]])[:n]
                emb[r] = torch.cat([emb[r][:c], vec, emb[r][c + 1:]])[:n]
        return emb
    return encode_with(parts, ids, fix)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("family", ["sd", "ldm"])
def test_authors_rule_finds_the_word_by_its_stock_token(stock, trained, family, case):
    engine, res, paths = trained(family, case)
    ckpt = torch.load(paths["authors"], map_location="cpu", weights_only=False)
    names = ckpt["tinv_names"]                       # {stock string: tinv placeholder}
    stand_in = {p: s for s, p in names.items()}
    assert stand_in[PLACEHOLDER] == AUTHORS_PLACEHOLDER == "*"
    stock_parts = load_parts(stock[family])
    assert int(ckpt["string_to_token"]["*"]) == stock_parts.tokenizer("*", add_special_tokens=False).input_ids[0]
    expected = engine_encoding(engine, PROMPT.format(PLACEHOLDER))
    out = authors_encode(stock_parts, paths["authors"], PROMPT.format("*"))
    assert (out - expected).abs().max().item() <= TOL
    if case == "per_image_tokens":
        assert set(names.values()) == set(res.embeds) and len(names) == 4
        img = "<S*-img1>"
        expected = engine_encoding(engine, f"a photo of a {PLACEHOLDER} with {img}")
        out = authors_encode(stock_parts, paths["authors"], f"a photo of a * with {stand_in[img]}")
        assert (out - expected).abs().max().item() <= TOL


def test_authors_stand_ins_are_single_stock_tokens_and_distinct(stock):
    for family in ("sd", "ldm"):
        tok = load_parts(stock[family]).tokenizer
        chosen = authors_tokens(tok, n_images=3)
        assert list(chosen)[0] == "*" and len(chosen) == 4 and len(set(chosen.values())) == 4
        for s, i in chosen.items():
            assert tok(s, add_special_tokens=False).input_ids == [i] and i != tok.unk_token_id


# --- tinv's own import ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["diffusers", "a1111", "authors"])
def test_every_format_round_trips_through_import(stock, trained, fmt):
    engine, res, paths = trained("sd", "k2")
    read = read_embeddings(paths[fmt])
    name = {"diffusers": "<s*>", "a1111": paths["a1111"].stem, "authors": PLACEHOLDER}[fmt]
    assert torch.equal(read[name], res.embeds[PLACEHOLDER])
    parts = load_parts(stock["sd"])
    words = import_embeddings(parts, paths[fmt])
    with torch.no_grad():
        out = parts.encode_text(parts.tokenize([expand_prompt(PROMPT.format(name), words)]))
    assert torch.equal(out, engine_encoding(engine, PROMPT.format(PLACEHOLDER)))


def test_authors_star_placeholder_needs_a_new_name(make_parts, tmp_path):
    from tinv.engine.embeddings_io import save_authors
    vec = torch.randn(1, 32)
    save_authors({"*": vec}, {"*": 265}, tmp_path / "embeddings.pt")
    parts = make_parts("sd")
    with pytest.raises(ValueError, match="'\\*'.*already in the tokenizer"):
        import_embeddings(parts, tmp_path / "embeddings.pt")
    [word] = import_embeddings(parts, tmp_path / "embeddings.pt", placeholder="<star>")
    assert torch.equal(parts.input_embeddings().weight[word.token_ids[0]], vec[0])
