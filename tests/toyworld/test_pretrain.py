"""The regenerate command runs every stage end to end (tiny settings) and resumes."""
import json

import numpy as np
import torch

from tinv.toyworld import pretrain
from tinv.toyworld.attributes import matches
from tinv.toyworld.concepts import EXCLUDE


def test_render_pool_is_deterministic_and_excludes_concepts():
    a, b = pretrain.render_pool(300, seed=5), pretrain.render_pool(300, seed=5)
    assert torch.equal(a["images"], b["images"]) and a["captions"] == b["captions"]
    scenes = [{k: pretrain.attributes.ALL[k][i] for k, i in zip(pretrain.ATTR_NAMES, row)}
              for row in a["attrs"].tolist()]
    assert not any(matches(s, e) for s in scenes for e in EXCLUDE)


def test_pretrain_tiny_end_to_end_and_resume(tmp_path):
    from tinv.models import load_parts
    from tinv.toyworld.evaluator import NAME, load_evaluator
    from tinv.toyworld.oracle import load_oracle
    args = ["--out", str(tmp_path), "--pool", "64", "--oracle-steps", "2", "--ae-steps", "2", "--decoder-steps", "1",
            "--evaluator-steps", "1", "--unet-steps", "2", "--batch", "4", "--export-every", "2", "--offset-from", "1"]
    pretrain.main(args)
    parts = load_parts(tmp_path / "pipeline")
    assert parts.resolution == 32 and parts.unet.config.addition_embed_type == "text"
    assert json.loads((tmp_path / "pipeline" / "training.json").read_text())["step"] == 2
    load_evaluator(weights=tmp_path / "evaluator" / f"{NAME}.safetensors")
    assert set(load_oracle(folder=tmp_path / "oracle").predict(torch.rand(2, 3, 32, 32))) >= {"shape", "outline"}
    # a second call resumes the joint stage from its checkpoint instead of starting over
    pretrain.main(args[:-6] + ["--unet-steps", "4", "--export-every", "2", "--offset-from", "1"])
    assert json.loads((tmp_path / "pipeline" / "training.json").read_text())["step"] == 4
    assert np.isfinite(torch.load(tmp_path / "joint.pt", weights_only=False)["step"])
