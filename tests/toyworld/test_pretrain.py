"""The regenerate command runs every stage end to end (tiny settings) and resumes."""
import json

import numpy as np
import torch

import pytest

from tinv.tools import pretrain
from tinv.toyworld import nets
from tinv.toyworld.attributes import matches
from tinv.toyworld.concepts import EXCLUDE


def test_render_pool_is_deterministic_and_excludes_concepts():
    a, b = pretrain.render_pool(300, seed=5), pretrain.render_pool(300, seed=5)
    assert torch.equal(a["images"], b["images"]) and a["captions"] == b["captions"]
    scenes = [{k: pretrain.attributes.ALL[k][i] for k, i in zip(pretrain.ATTR_NAMES, row)}
              for row in a["attrs"].tolist()]
    assert not any(matches(s, e) for s in scenes for e in EXCLUDE)


def test_pretrain_tiny_end_to_end_and_resume(tmp_path):
    from tinv.engine.models import load_parts
    from tinv.toyworld.evaluator import NAME, load_evaluator
    from tinv.toyworld.oracle import load_oracle
    args = ["--out", str(tmp_path), "--pool", "64", "--oracle-steps", "2", "--ae-steps", "2", "--decoder-steps", "1",
            "--evaluator-steps", "1", "--unet-steps", "2", "--batch", "4", "--compound-p", "0.5", "--compound-from", "1",
            "--export-every", "2", "--offset-from", "1", "--identity-from", "3"]
    pretrain.main(args)
    parts = load_parts(tmp_path / "pipeline")
    assert parts.resolution == 32 and parts.unet.config.addition_embed_type == "text"   # ToyWorld 1-3 layout
    assert json.loads((tmp_path / "pipeline" / "training.json").read_text())["step"] == 2
    load_evaluator(weights=tmp_path / "evaluator" / f"{NAME}.safetensors")
    assert set(load_oracle(folder=tmp_path / "oracle").predict(torch.rand(2, 3, 32, 32))) >= {"shape", "outline"}
    assert "unet+text identity" not in json.loads((tmp_path / "times.json").read_text())
    # a second call resumes the joint stage from its checkpoint instead of starting over, and
    # crosses into the identity stage (ToyWorld 2's side channel) at step 3
    pretrain.main(args[:-12] + ["--unet-steps", "4", "--export-every", "2", "--offset-from", "1", "--identity-from", "3"])
    training = json.loads((tmp_path / "pipeline" / "training.json").read_text())
    assert training["step"] == 4 and training["identity"]["from"] == 3
    assert "unet+text identity" in json.loads((tmp_path / "times.json").read_text())
    assert np.isfinite(torch.load(tmp_path / "joint.pt", weights_only=False)["step"])
    # and into the style stage (ToyWorld 3's style compounds) at step 4
    pretrain.main(args[:-12] + ["--unet-steps", "5", "--export-every", "5", "--offset-from", "1", "--identity-from",
                                "3", "--style-from", "4"])
    training = json.loads((tmp_path / "pipeline" / "training.json").read_text())
    assert training["step"] == 5 and training["identity"]["style_from"] == 4
    assert "unet+text style" in json.loads((tmp_path / "times.json").read_text())
    # and into ToyWorld 4 at step 5: the UNet reshaped into SD's layout, the export is that layout
    pretrain.main(args[:-12] + ["--unet-steps", "6", "--export-every", "6", "--offset-from", "1", "--identity-from",
                                "3", "--style-from", "4", "--reshape-from", "5"])
    training = json.loads((tmp_path / "pipeline" / "training.json").read_text())
    assert training["step"] == 6 and training["identity"]["layout"] == "sd"
    unet = load_parts(tmp_path / "pipeline").unet
    assert unet.config.addition_embed_type is None and len(set(unet.config.down_block_types)) == 2
    assert torch.load(tmp_path / "joint.pt", weights_only=False)["layout"] == "sd"


def test_reshape_carries_the_old_blocks_and_starts_new_attention_at_zero():
    from tinv.toyworld import nets
    torch.manual_seed(0)
    old = nets.unet("toyworld3")
    new, report = pretrain.reshape_unet(old, "sd")
    assert new.config.addition_embed_type is None and report["carried"] > report["of"] // 2
    o, n = old.state_dict(), new.state_dict()
    # the old 4x4 cross-attention block, the 8x8 ResNet and the finest up block keep their weights
    for a, b in (("down_blocks.2.attentions.0.proj_in.weight",) * 2, ("down_blocks.1.resnets.0.conv1.weight",) * 2,
                 ("up_blocks.0.attentions.1.proj_out.weight", "up_blocks.1.attentions.1.proj_out.weight"),
                 ("up_blocks.2.resnets.1.conv2.weight", "up_blocks.3.resnets.1.conv2.weight")):
        assert torch.equal(o[a], n[b]), (a, b)
    # new cross-attention blocks (8x8) add nothing until trained; the fresh 2x2 level is listed
    assert "down_blocks.1.attentions.0" in report["fresh"] and "down_blocks.3.resnets.0" in report["fresh"]
    for name in ("down_blocks.1.attentions.0.proj_out", "up_blocks.2.attentions.0.proj_out"):
        assert not n[name + ".weight"].any() and not n[name + ".bias"].any()


def test_style_compound_caption_says_the_object_and_hides_the_look():
    from tinv.toyworld import attributes, captions
    rng = np.random.default_rng(1)
    for _ in range(50):
        scene = attributes.sample(rng)
        text, words = captions.style_compound_caption(scene, rng)
        assert text.endswith(f"in the style of {captions.COMPOUND_MARK}"), text
        assert words == [scene["style"], scene["background"]]
        head = text.split(" in the style of ")[0].split()
        # the look is the compound's alone: no style prefix and no background phrase in words
        assert not set(head) & {"photo", "sketch", "painting", "pixel", "night", "grass", "water", "brick", "sand"}, text


def test_style_vector_carries_the_outline_and_differs_by_look():
    from tinv.engine.models import tiny_clip_tokenizer
    tok = tiny_clip_tokenizer()
    table = torch.randn(len(tok), 64)
    look = dict(style="pixel", background="brick", outline="black")
    v = pretrain.style_vector(table, tok, look)
    d = pretrain.side_directions(64)
    assert float(v @ d["outline", "black"]) > float(v @ d["outline", "white"]) + 0.5
    assert not torch.allclose(v, pretrain.style_vector(table, tok, {**look, "background": "night"}))


def test_compound_caption_puts_one_mark_where_the_look_words_were():
    from tinv.toyworld import attributes, captions
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = attributes.sample(rng)
        text, words = captions.compound_caption(scene, rng)
        assert text.split().count(captions.COMPOUND_MARK) == 1, text
        assert words == [scene["color"], captions.PATTERN[scene["pattern"]], scene["shape"]]
        assert scene["shape"] not in text.split() and captions._plural(scene["shape"]) not in text.split()


def test_compounds_splice_the_merged_vector_into_the_chosen_rows_only():
    from tinv.engine.models import tiny_clip_tokenizer
    from tinv.toyworld import nets
    tok = tiny_clip_tokenizer()
    torch.manual_seed(0)
    text = nets.text_encoder(tok)
    attrs = torch.zeros(4, len(pretrain.ATTR_NAMES), dtype=torch.long)   # red solid circle, ...
    cap = tok(["a photo of a circle"] * 4, padding="max_length", max_length=77, return_tensors="pt").input_ids
    comp = pretrain.Compounds(tok, attrs, p=1.0)
    allowed = torch.tensor([True, False, True, False])
    out = comp.encode(text, cap, torch.arange(4), allowed, np.random.default_rng(0))
    plain = text(cap)[0]
    assert torch.allclose(out[1], plain[1]) and torch.allclose(out[3], plain[3])   # dropped/plain rows untouched
    assert not torch.allclose(out[0], plain[0])
    assert type(text.get_input_embeddings()) is torch.nn.Embedding                 # the table is restored
    out.sum().backward()
    # the merged words (colour, pattern, shape of attribute index 0) learn through the compound slot
    grads = text.get_input_embeddings().weight.grad.abs().sum(1)
    red = tok("red", add_special_tokens=False).input_ids[0]
    assert grads[red] > 0 and grads[comp.mark] == 0


def test_joint_step_is_the_engines_eq2_with_min_snr_weights():
    """Pretraining minimizes the engine's one loss (objective.loss): its value is the
    min-SNR-weighted epsilon MSE written out by hand, to float precision."""
    from tinv.engine.models import tiny_clip_tokenizer
    torch.manual_seed(0)
    joint = pretrain.Joint(tiny_clip_tokenizer(), seed=0, layout="sd")
    sched = nets.scheduler()
    z, noise = torch.randn(3, 4, 16, 16), torch.randn(3, 4, 16, 16)
    t = torch.tensor([10, 500, 990])
    cond = torch.randn(3, 77, joint.unet.config.cross_attention_dim)
    min_snr = torch.linspace(0.1, 1.0, sched.config.num_train_timesteps)
    with torch.no_grad():
        pred = joint.unet(sched.add_noise(z, noise, t), t, cond).sample
        by_hand = (((pred - noise) ** 2).mean(dim=(1, 2, 3)) * min_snr[t]).mean()
    before = [p.detach().clone() for p in joint.unet.parameters()][:3]
    loss = pretrain.joint_step(joint, sched, z, noise, t, cond, min_snr)
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-6)
    assert joint.step == 1 and any(not torch.equal(a, b) for a, b in zip(before, joint.unet.parameters()))
