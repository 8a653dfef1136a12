"""Model loading: tiny pipelines are the real classes and round-trip through a diffusers folder."""
from __future__ import annotations

import json

import pytest
import torch
from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertModel
from transformers import BertTokenizer, CLIPTextModel, CLIPTokenizer

from tinv.engine.models import detect_family, load_parts, save_parts

PROMPT = ["a photo of a cat on the moon"]


@pytest.mark.parametrize("family,encoder,tokenizer", [("sd", CLIPTextModel, CLIPTokenizer),
                                                      ("ldm", LDMBertModel, BertTokenizer)])
def test_tiny_parts_roundtrip_through_pipeline_folder(make_parts, tmp_path, family, encoder, tokenizer):
    parts = make_parts(family)
    assert isinstance(parts.text_encoder, encoder) and isinstance(parts.tokenizer, tokenizer)
    assert parts.resolution == 32 and parts.family == family
    save_parts(parts, tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["_class_name"] == ("StableDiffusionPipeline" if family == "sd" else "LDMTextToImagePipeline")
    assert detect_family(tmp_path / "pipe") == family
    loaded = load_parts(tmp_path / "pipe")
    assert loaded.family == family and loaded.resolution == parts.resolution
    ids = parts.tokenize(PROMPT)
    assert torch.equal(loaded.tokenize(PROMPT), ids)
    assert torch.equal(loaded.encode_text(ids), parts.encode_text(ids))
    assert not any(p.requires_grad for m in (loaded.unet, loaded.vae, loaded.text_encoder)
                   for p in m.parameters())


def test_folder_that_is_no_pipeline_is_named(tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(ValueError, match="junk"):
        load_parts(tmp_path / "junk")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "model_index.json").write_text(json.dumps({"_class_name": "Odd", "prior": []}))
    with pytest.raises(ValueError, match="odd.*neither"):
        load_parts(tmp_path / "odd")
