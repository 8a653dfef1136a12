"""The paper's successors on the one loop (tinv/engine/learners): each lowers its loss,
changes only its own parameters, resumes bit for bit, and a fresh model it is restored into
computes what the trained one computes."""
from __future__ import annotations

import pytest
import torch

from tinv.engine import conditioning, learners
from tinv.engine.inversion import InversionConfig, invert
from tinv.engine.pseudo_words import initializer_embedding

BASE = dict(initializer_word="cat", batch_size=2, seed=23)
# learner -> (its settings on the tiny models, which named parameters of the UNet and text
# encoder it may change: the embedding table's new rows are checked apart)
CASES = {
    "xti": (dict(lr=5e-3), lambda name: False),
    "neti": (dict(lr=1e-3), lambda name: False),      # the mapper is the learner's own module
}


def params(parts) -> dict[str, torch.Tensor]:
    out = {}
    for prefix, m in (("unet.", parts.unet), ("text.", parts.text_encoder), ("vae.", parts.vae)):
        for n, p in m.named_parameters():
            out[prefix + n] = p.detach().clone()
    return out


def config(learner: str, steps: int, **kw) -> InversionConfig:
    settings, _ = CASES[learner]
    return InversionConfig(steps=steps, learner=learner, **{**BASE, **settings, **kw})


def cond_of(parts, prompt: str) -> conditioning.Cond:
    return conditioning.encode(parts, parts.tokenize([prompt]))


def eps_of(parts, prompt: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, parts.unet.config.in_channels, parts.unet.config.sample_size,
                    parts.unet.config.sample_size, generator=g)
    t = torch.tensor([50, 700])
    with torch.no_grad():
        return conditioning.eps(parts.unet, x, t, cond_of(parts, prompt).expand(2))


@pytest.mark.parametrize("family", ["sd", "ldm"])
@pytest.mark.parametrize("learner", list(CASES))
def test_a_successor_lowers_its_loss_and_changes_only_its_own_parameters(make_parts, concept, family, learner):
    parts = make_parts(family)
    before = params(parts)
    table0 = parts.input_embeddings().weight.detach().clone()
    res = invert(parts, concept, config(learner, 60), progress=False)
    assert res.learner["name"] == learner
    assert res.eval_loss_before - res.eval_loss_after > 1e-3, (res.eval_loss_before, res.eval_loss_after)
    after = params(parts)
    own = CASES[learner][1]
    for name, p in before.items():
        if name.endswith("token_embedding.weight") or name.endswith("embed_tokens.weight"):
            continue
        if name in after and not own(name):
            assert torch.equal(after[name], p), f"{learner} changed {name}"
    table = parts.input_embeddings().weight
    assert torch.equal(table[: table0.shape[0]], table0)     # no old vocabulary row moved


def test_xti_learns_a_word_per_cross_attention_layer_and_each_layer_reads_its_own(make_parts, concept):
    parts = make_parts("sd")
    layers = conditioning.cross_attention_layers(parts.unet)
    res = invert(parts, concept, config("xti", 40), progress=False)
    words = res.learner["state"]["words"]
    assert len(words) == len(layers) == len(res.learner["state"]["layers"]) >= 2
    init = initializer_embedding(parts, "cat")
    # S* reaches no layer, so it stays at its initializer; every layer's word moved, differently
    assert torch.equal(res.embeds["<S*>"][0], init.to(res.embeds["<S*>"]))
    vecs = [res.embeds[w][0] for w in words]
    assert all(not torch.allclose(v, init, atol=1e-4) for v in vecs)
    assert not torch.allclose(vecs[0], vecs[1], atol=1e-5)
    cond = cond_of(parts, "a photo of <S*>")
    assert set(cond.layers) == set(layers)
    assert not torch.allclose(cond.layers[layers[0]], cond.layers[layers[1]])
    # a prompt without S* is encoded once, as the paper's setups are
    assert cond_of(parts, "a photo of a dog").layers is None


@pytest.mark.parametrize("learner", list(CASES))
def test_a_successor_resumes_bit_identically(make_parts, concept, tmp_path, learner):
    cfg = config(learner, 30, checkpoint_every=10)
    whole = invert(make_parts("sd"), concept, cfg, progress=False)
    invert(make_parts("sd"), concept, cfg, ckpt_dir=tmp_path, progress=False, stop_at=20)
    resumed = invert(make_parts("sd"), concept, cfg, ckpt_dir=tmp_path, progress=False)
    assert resumed.losses == whole.losses
    for k, v in whole.embeds.items():
        assert torch.equal(resumed.embeds[k], v), k
    for k, v in whole.learner["state"].items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(resumed.learner["state"][k], v), k


@pytest.mark.parametrize("learner", list(CASES))
def test_a_restored_successor_computes_what_the_trained_one_computes(make_parts, concept, learner):
    from tinv.harness.learned import install
    trained = make_parts("sd")
    res = invert(trained, concept, config(learner, 20), progress=False)
    fresh = make_parts("sd")
    install(fresh, res)
    prompt = "a photo of <S*> on a beach"
    assert torch.allclose(eps_of(fresh, prompt), eps_of(trained, prompt), atol=1e-6)
    # and it is the learned thing that matters: the model without it computes something else
    assert not torch.allclose(eps_of(make_parts("sd"), "a photo of cat on a beach"), eps_of(trained, prompt), atol=1e-4)


def test_the_learner_names_are_the_config_checks():
    from tinv.harness.validate import INVERSION
    assert all(INVERSION["learner"].ok(n) for n in learners.NAMES)
    assert not INVERSION["learner"].ok("dreambooth")
    with pytest.raises(ValueError, match="learner='dreambooth'"):
        InversionConfig(learner="dreambooth", initializer_word="cat")


def test_a_p_plus_file_puts_the_words_on_a_stock_pipeline_and_it_draws_what_the_engine_draws(
        make_parts, concept, tmp_path):
    from diffusers import DDIMScheduler

    from tinv.engine.learners import pipeline, xti
    from tinv.engine.models import to_pipeline
    from tinv.engine.sampling import initial_noise, sample
    trained = make_parts("sd")
    res = invert(trained, concept, config("xti", 20), progress=False)
    files = learners.export(trained, res.learner, tmp_path)
    assert set(files) == {"xti"}
    placeholder, per_layer = xti.read(files["xti"])
    assert placeholder == "<S*>" and list(per_layer) == conditioning.cross_attention_layers(trained.unet)

    stock = make_parts("sd")                     # the same base weights, nothing learned
    pipe = to_pipeline(stock)
    pipe.scheduler = DDIMScheduler.from_config(stock.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    assert xti.install_file(pipeline.parts_of(pipe), files["xti"]) == "<S*>"
    prompt, seeds = "a photo of <S*> on a beach", [0, 1]
    x_T, _ = initial_noise(trained, seeds)
    ours = sample(trained, [prompt], seeds, steps=6, guidance=5.0, progress=False)
    theirs = pipeline.generate(pipe, prompt, num_images_per_prompt=2, latents=x_T,
                               num_inference_steps=6, guidance_scale=5.0, height=stock.resolution,
                               width=stock.resolution, output_type="pt").images
    torch.testing.assert_close(torch.as_tensor(theirs).float(), ours, atol=1e-4, rtol=0)
    # the per-layer words did the drawing: the plain pipeline's S* (the initializer) draws otherwise
    plain = pipe(prompt, latents=x_T, num_images_per_prompt=2, num_inference_steps=6, guidance_scale=5.0,
                 height=stock.resolution, width=stock.resolution, output_type="pt").images
    assert (torch.as_tensor(plain).float() - ours).abs().max() > 1e-3


def test_a_file_that_is_not_a_p_plus_file_is_named(tmp_path):
    from safetensors.torch import save_file

    from tinv.engine.learners import xti
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="other.safetensors.*not a tinv P\\+"):
        xti.read(path)


# ----------------------------------------------------------------------------- NeTI
def _at(cond: conditioning.Cond, t) -> conditioning.Cond:
    with torch.no_grad():
        return cond.resolved(torch.as_tensor(t))


def test_neti_gives_each_timestep_and_layer_its_own_word_and_leaves_s_star_be(make_parts, concept):
    parts = make_parts("sd")
    layers = conditioning.cross_attention_layers(parts.unet)
    res = invert(parts, concept, config("neti", 20), progress=False)
    assert torch.equal(res.embeds["<S*>"][0], initializer_embedding(parts, "cat").to(res.embeds["<S*>"]))
    prompt = "a photo of <S*>"
    ids = parts.tokenize([prompt])
    pos = int((ids[0] == parts.tokenizer.convert_tokens_to_ids("<S*>")).nonzero()[0])
    cond = cond_of(parts, prompt)
    assert cond.at is not None and cond_of(parts, "a photo of a dog").at is None
    late, early = _at(cond, 900), _at(cond, 100)
    assert list(late.layers) == layers and len(layers) >= 2
    assert not torch.allclose(late.layers[layers[0]], late.layers[layers[1]], atol=1e-4)   # per layer
    assert not torch.allclose(late.layers[layers[0]], early.layers[layers[0]], atol=1e-4)  # per timestep
    # only S* (and the causal text after it) changes: the tokens before it read the same
    torch.testing.assert_close(late.layers[layers[0]][:, :pos], early.layers[layers[0]][:, :pos])
    # a training batch: every row its own timestep, in one call
    both = _at(cond.expand(2), [900, 100])
    for name in layers:
        torch.testing.assert_close(both.layers[name][0], late.layers[name][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(both.layers[name][1], early.layers[name][0], atol=1e-5, rtol=0)


def test_neti_nested_dropout_is_on_in_training_only():
    from tinv.engine.learners.neti import Mapper
    gen = torch.Generator().manual_seed(0)
    m = Mapper(4, 32, {**learners.ARGS["neti"], "nested_dropout_prob": 1.0}, 1.0, 1000, gen)
    t, layer = torch.tensor([10, 500, 990, 10]), torch.tensor([0, 1, 2, 3])
    m.eval()
    whole = m(t, layer).detach()
    m.train()
    with torch.no_grad():                      # a fixed-batch loss during training: the whole mapper
        assert torch.equal(m(t, layer), whole)
    drawn = gen.get_state()
    dropped = m(t, layer)
    assert not torch.equal(gen.get_state(), drawn)             # the set's generator draws it...
    assert (dropped - whole).abs().amax(dim=1).min() > 1e-4     # ...and every row lost units
    gen.set_state(drawn)
    assert torch.equal(m(t, layer), dropped)                    # ...so a resumed run draws the same
    m.eval()
    assert torch.equal(m(t, layer), whole)
    off = Mapper(4, 32, {**learners.ARGS["neti"], "nested_dropout": False}, 1.0, 1000,
                 torch.Generator().manual_seed(0)).train()
    assert torch.equal(off(t, layer), off.eval()(t, layer))


def test_neti_truncation_is_applied_at_sampling_only_when_asked(make_parts, concept):
    parts = make_parts("sd")
    res = invert(parts, concept, config("neti", 20), progress=False)
    assert not any(m.training for m in parts.conditioner.mappers.values())   # finished: no dropout
    prompt = "a photo of <S*>"
    whole = eps_of(parts, prompt)
    assert torch.equal(eps_of(parts, prompt), whole)
    learners.prepare_sampling(parts, res.learner, {"neti_truncation": 128})    # every unit kept
    assert torch.equal(eps_of(parts, prompt), whole)
    learners.prepare_sampling(parts, res.learner, {"neti_truncation": 2})
    cut = eps_of(parts, prompt)
    assert (cut - whole).abs().max() > 1e-4
    learners.prepare_sampling(parts, res.learner, {"neti_truncation": None})
    assert torch.equal(eps_of(parts, prompt), whole)
    with pytest.raises(ValueError, match="neti_truncation=500"):
        learners.prepare_sampling(parts, res.learner, {"neti_truncation": 500})


def _toyworld_parts():
    from tinv.engine.models import load_parts
    from tinv.toyworld import MODEL_DIR
    if not (MODEL_DIR / "model_index.json").exists():
        pytest.skip("the toy world's weights are not here")
    return load_parts(MODEL_DIR, family="sd", device="cpu")


@pytest.mark.parametrize("model", ["tiny_sd", "toyworld"])
def test_a_neti_file_puts_the_mapper_on_a_stock_pipeline_and_it_draws_what_the_engine_draws(
        make_parts, concept, tmp_path, model):
    from diffusers import DDIMScheduler

    from tinv.engine.learners import neti, pipeline
    from tinv.engine.models import to_pipeline
    from tinv.engine.sampling import initial_noise, sample
    build = (lambda: make_parts("sd")) if model == "tiny_sd" else _toyworld_parts
    trained = build()
    res = invert(trained, concept, config("neti", 20), progress=False)
    # the toy UNet also pools the text into its time embedding: that path reads its own word
    assert (neti.TEXT in res.learner["state"]["layers"]) == (model == "toyworld")
    files = learners.export(trained, res.learner, tmp_path)
    assert set(files) == {"neti"}
    placeholder, vector, state = neti.read(files["neti"])
    assert placeholder == "<S*>" and state["layers"] == neti.consumers(trained.unet)
    for k, v in res.learner["state"].items():
        assert torch.equal(state[k], v) if isinstance(v, torch.Tensor) else state[k] == v, k

    stock = build()                              # the same base weights, nothing learned
    pipe = to_pipeline(stock)
    pipe.scheduler = DDIMScheduler.from_config(stock.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    assert neti.load(pipe, files["neti"]) == "<S*>"
    prompt, seeds = "a photo of <S*> on a beach", [0, 1]
    x_T, _ = initial_noise(trained, seeds)
    kw = dict(num_images_per_prompt=2, latents=x_T, num_inference_steps=6, guidance_scale=5.0,
              height=stock.resolution, width=stock.resolution, output_type="pt")
    ours = sample(trained, [prompt], seeds, steps=6, guidance=5.0, progress=False)
    theirs = pipeline.generate(pipe, prompt, **kw).images
    torch.testing.assert_close(torch.as_tensor(theirs).float(), ours, atol=1e-4, rtol=0)
    # the mapper did the drawing: the plain pipeline's S* (the initializer) draws otherwise
    plain = pipe(prompt, **kw).images
    assert (torch.as_tensor(plain).float() - ours).abs().max() > 1e-3
    # truncation, on the engine and on the pipeline alike, changes the images
    neti.truncate(pipeline.parts_of(pipe), 2)
    learners.prepare_sampling(trained, res.learner, {"neti_truncation": 2})
    ours_cut = sample(trained, [prompt], seeds, steps=6, guidance=5.0, progress=False)
    theirs_cut = pipeline.generate(pipe, prompt, **kw).images
    torch.testing.assert_close(torch.as_tensor(theirs_cut).float(), ours_cut, atol=1e-4, rtol=0)
    assert (ours_cut - ours).abs().max() > 1e-3


def test_a_file_that_is_not_a_neti_file_is_named(tmp_path):
    from safetensors.torch import save_file

    from tinv.engine.learners import neti
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="other.safetensors.*not a tinv NeTI"):
        neti.read(path)
