"""The paper's successors on the one loop (tinv/engine/learners): each lowers its loss,
changes only its own parameters, resumes bit for bit, and a fresh model it is restored into
computes what the trained one computes."""
from __future__ import annotations

import dataclasses
from pathlib import Path

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
    # the tiny BERT vocabulary has no "ktn": S* starts at the initializer word here (the
    # authors' rare token is tested on CLIP's vocabulary below)
    "custom_diffusion": (dict(lr=5e-3, class_noun=True, learner_args={"init_token": ""}),
                         lambda name: ".attn2.processor.to_k_custom_diffusion." in name
                         or ".attn2.processor.to_v_custom_diffusion." in name),
    # DreamBooth-LoRA: only the LoRA it adds trains (the base projections it wraps do not);
    # "sks" is three word pieces in the tiny BERT vocabulary, "elmo" one token in both
    "lora": (dict(class_noun=True, learner_args={"identifier": "elmo"}), lambda name: ".lora_" in name),
    "neti": (dict(lr=1e-3), lambda name: False),      # the mapper is the learner's own module
    # DreamBooth: the whole UNet trains (its own rate, larger than the script's 5e-6 so a few
    # steps move a random UNet); the text encoder stays
    "dreambooth": (dict(class_noun=True, learner_args={"identifier": "elmo", "lr": 1e-4}),
                   lambda name: name.startswith("unet.")),
}


def params(parts) -> dict[str, torch.Tensor]:
    out = {}
    for prefix, m in (("unet.", parts.unet), ("text.", parts.text_encoder), ("vae.", parts.vae)):
        for n, p in m.named_parameters():
            out[prefix + n] = p.detach().clone()
    return out


def base_names(ps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parameters under the names they had before a peft adapter wrapped their layer
    (peft moves `to_q.weight` to `to_q.base_layer.weight`)."""
    return {n.replace(".base_layer.", "."): p for n, p in ps.items()}


def tensors(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a learner state, nested mappings flattened."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        return {k: v for key, sub in state.items() for k, v in tensors(sub, f"{prefix}.{key}").items()}
    return {}


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


@pytest.mark.parametrize("family", ["sd", "sd2", "ldm"])      # SD 1.x, SD 2.x (v-prediction) and LDM layouts
@pytest.mark.parametrize("learner", list(CASES))
def test_a_successor_lowers_its_loss_and_changes_only_its_own_parameters(make_parts, concept, family, learner):
    parts = make_parts(family)
    before = params(parts)
    table0 = parts.input_embeddings().weight.detach().clone()
    res = invert(parts, concept, config(learner, 60), progress=False)
    assert res.learner["name"] == learner
    assert res.eval_loss_before - res.eval_loss_after > 1e-3, (res.eval_loss_before, res.eval_loss_after)
    assert res.learner["moved"] > 1e-3        # the row's measure of how far its tensors went
    after = base_names(params(parts))
    own = CASES[learner][1]
    assert set(before) <= set(after)            # every parameter is still there (a LoRA wraps, not replaces)
    assert all(own(name) for name in set(after) - set(before))   # what a learner adds is its own
    for name, p in before.items():
        if name.endswith("token_embedding.weight") or name.endswith("embed_tokens.weight"):
            continue
        if not own(name):
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
def test_a_learner_held_still_moves_nothing(make_parts, concept, learner):
    """The control of `moved`: at a vanishing learning rate (the LoRA's own rate too, which
    must be > 0) nothing the learner trains leaves its start, and the measure says so."""
    args = {**CASES[learner][0].get("learner_args", {}), **({"lr": 1e-12} if learner in ("lora", "dreambooth") else {})}
    res = invert(make_parts("sd"), concept, config(learner, 5, lr=1e-12, learner_args=args), progress=False)
    assert res.learner["moved"] < 1e-8


@pytest.mark.parametrize("learner", list(CASES))
def test_a_successor_resumes_bit_identically(make_parts, concept, tmp_path, learner):
    cfg = config(learner, 30, checkpoint_every=10)
    whole = invert(make_parts("sd"), concept, cfg, progress=False)
    invert(make_parts("sd"), concept, cfg, ckpt_dir=tmp_path, progress=False, stop_at=20)
    resumed = invert(make_parts("sd"), concept, cfg, ckpt_dir=tmp_path, progress=False)
    assert resumed.losses == whole.losses and resumed.curve == whole.curve
    assert resumed.learner["moved"] == whole.learner["moved"]     # measured from the run's start
    for k, v in whole.embeds.items():
        assert torch.equal(resumed.embeds[k], v), k
    got = tensors(resumed.learner["state"])
    for k, v in tensors(whole.learner["state"]).items():
        assert torch.equal(got[k], v), k


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
    assert not INVERSION["learner"].ok("dreamboth")
    with pytest.raises(ValueError, match="learner='dreamboth'"):
        InversionConfig(learner="dreamboth", initializer_word="cat")


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
    assert placeholder == "<S*>" and list(per_layer) == conditioning.cross_attention_layers(trained.unet) + ["pooled"]

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


def test_xti_trains_s_star_for_the_text_a_unet_pools_and_nothing_else_of_the_toy_world(concept):
    """The toy world's UNet pools the text into its time embedding (addition_embed_type
    "text"): S* is that path's word, so it learns there; the layer words learn as anywhere."""
    from tinv.engine.models import load_parts
    from tinv.toyworld import MODEL_DIR
    parts = load_parts(MODEL_DIR)
    assert conditioning.pools_text(parts.unet)
    before = params(parts)
    init = initializer_embedding(parts, "cat").clone()
    res = invert(parts, concept, config("xti", 10, lr=5e-2), progress=False)
    assert not torch.allclose(res.embeds["<S*>"][0], init, atol=1e-4)
    after = params(parts)
    assert all(torch.equal(p, after[n]) for n, p in before.items() if "token_embedding" not in n)


def test_a_file_that_is_not_a_p_plus_file_is_named(tmp_path):
    from safetensors.torch import save_file

    from tinv.engine.learners import xti
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="other.safetensors.*not a tinv P\\+"):
        xti.read(path)

def test_custom_diffusion_trains_only_the_cross_attention_kv_and_its_word(make_parts, concept):
    from tinv.engine.learners.custom_diffusion import KV
    parts = make_parts("sd")
    before = params(parts)
    cross = conditioning.cross_attention_layers(parts.unet)
    res = invert(parts, concept, config("custom_diffusion", 30), progress=False)
    after = params(parts)
    trained = {k for k in after if "custom_diffusion" in k}
    assert trained == {f"unet.{n}.{w}" for n in cross for w in KV} and len(trained) == 2 * len(cross) >= 4
    for n in cross:       # each K/V started at its layer's own to_k / to_v and moved away from it
        layer = n.rsplit(".processor", 1)[0]
        for w, own in zip(KV, ("to_k", "to_v")):
            start = before[f"unet.{layer}.{own}.weight"]
            assert not torch.allclose(after[f"unet.{n}.{w}"], start, atol=1e-5), (n, w)
            assert torch.equal(res.learner["state"][f"{n}.{w}"], after[f"unet.{n}.{w}"])
    for name, p in before.items():      # nothing else of the UNet (its own to_k/to_v included)
        if name.startswith("unet."):
            assert torch.equal(after[name], p), name
    assert not torch.equal(res.embeds["<S*>"][0], initializer_embedding(parts, "cat"))   # the word learned too


def test_custom_diffusion_starts_its_word_at_the_authors_rare_token(make_parts, concept):
    parts = make_parts("sd")
    ktn = parts.tokenizer.get_vocab()["ktn"]
    assert ktn == 42170 and len(parts.tokenizer("ktn", add_special_tokens=False).input_ids) == 2
    row = parts.input_embeddings().weight[ktn].detach().clone()
    res = invert(parts, concept, config("custom_diffusion", 0, learner_args={}), progress=False)
    assert torch.equal(res.embeds["<S*>"][0], row)         # the default init_token, by its entry
    assert res.embedding_dist_init == 0.0
    with pytest.raises(ValueError, match="init_token='ktn' is not an entry"):
        invert(make_parts("ldm"), concept, config("custom_diffusion", 1, learner_args={}), progress=False)
    with pytest.raises(ValueError, match="learner_args.init_tokn is not a setting"):
        config("custom_diffusion", 1, learner_args={"init_tokn": "ktn"})


def test_custom_diffusion_exports_what_a_stock_pipeline_loads(make_parts, concept, tmp_path):
    """The job's two files (S* and the K/V) on a stock StableDiffusionPipeline built from fresh
    parts compute the trained model's eps, loaded the way diffusers' README says."""
    from tinv.engine.embeddings_io import export_result
    from tinv.engine.learners.custom_diffusion import FILE
    from tinv.engine.models import to_pipeline
    trained = make_parts("sd")
    res = invert(trained, concept, config("custom_diffusion", 20), progress=False)
    files = dict(export_result(res, tmp_path, "sd"))
    assert learners.export(trained, res.learner, tmp_path) == {"custom_diffusion": str(tmp_path / FILE)}
    pipe = to_pipeline(make_parts("sd"))
    # a text state that is not zero: with zeros, K = V = 0 whatever the projections hold
    probe = dict(sample=torch.zeros(1, 4, 8, 8), timestep=10,
                 encoder_hidden_states=torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        stock = pipe.unet(**probe).sample
    pipe.unet.load_attn_procs(str(tmp_path), weight_name=FILE, _pipeline=pipe)
    pipe.load_textual_inversion(files["diffusers"])
    assert all(type(p).__name__ == "CustomDiffusionAttnProcessor" for p in pipe.unet.attn_processors.values())
    prompt = "a photo of <s*> cat"
    with torch.no_grad():
        ids = pipe.tokenizer(pipe.maybe_convert_prompt(prompt, pipe.tokenizer), padding="max_length",
                             max_length=77, return_tensors="pt").input_ids
        text = pipe.text_encoder(ids)[0]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 4, 8, 8, generator=g)
        got = pipe.unet(x, torch.tensor([50, 700]), encoder_hidden_states=text.expand(2, -1, -1)).sample
    assert torch.allclose(got, eps_of(trained, "a photo of <S*> cat"), atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(pipe.unet(**probe).sample, stock, atol=1e-6)   # the trained K/V did load


def test_custom_diffusion_processors_compose_with_the_layer_route(make_parts, concept):
    """conditioning.Route wraps the trained processors: per-layer text reaches them, and the
    same text through the route computes what the plain call does."""
    parts = make_parts("sd")
    invert(parts, concept, config("custom_diffusion", 5), progress=False)
    cond = cond_of(parts, "a photo of <S*> cat").expand(2)
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([50, 700])
    with torch.no_grad():
        plain = conditioning.eps(parts.unet, x, t, cond)
        layers = conditioning.cross_attention_layers(parts.unet)
        same = conditioning.eps(parts.unet, x, t, conditioning.Cond(cond.text, {n: cond.text for n in layers}))
        other = cond_of(parts, "a photo of a dog").expand(2).text
        moved = conditioning.eps(parts.unet, x, t, conditioning.Cond(cond.text, {layers[0]: other}))
    procs = parts.unet.attn_processors
    assert all(type(p.inner).__name__.startswith("CustomDiffusion") for p in procs.values())
    assert torch.allclose(same, plain, atol=1e-6) and not torch.allclose(moved, plain, atol=1e-5)
# ------------------------------------------------------------------ DreamBooth-LoRA (lora.py)
def lora_config(steps: int, **args) -> InversionConfig:
    return InversionConfig(steps=steps, learner="lora", class_noun=True, learner_args=args, **BASE)


def test_dreambooth_lora_trains_the_lora_and_holds_s_star_at_the_identifier(make_parts, concept):
    from tinv.engine.learners.lora import lora_parameters
    parts = make_parts("sd")
    base = params(parts)
    res = invert(parts, concept, lora_config(20), progress=False)      # identifier: the default "sks"
    sks = initializer_embedding(parts, "sks")
    assert torch.equal(res.embeds["<S*>"][0], sks.to(res.embeds["<S*>"]))   # not learned, not decayed
    # so the prompt with S* is the prompt with the identifier, to the last bit
    assert torch.equal(cond_of(parts, "a photo of <S*> cat").text, cond_of(parts, "a photo of sks cat").text)
    lora = res.learner["state"]["lora"]
    assert lora.keys() == lora_parameters(parts.unet).keys() and len(lora) >= 8
    # B starts at zero (the model starts as it was); every B moved, and the base weights did not
    assert all(v.abs().max() > 0 for k, v in lora.items() if ".lora_B." in k)
    after = base_names(params(parts))
    assert all(torch.equal(after[n], p) for n, p in base.items() if n.startswith("unet."))
    assert not torch.allclose(eps_of(parts, "a photo of sks cat"), eps_of(make_parts("sd"), "a photo of sks cat"),
                              atol=1e-5)


def test_dreambooth_lora_prior_preservation_adds_the_class_loss_and_resumes_bit_identically(make_parts, concept, tmp_path):
    plain = invert(make_parts("sd"), concept, lora_config(2), progress=False)
    prior = {w: invert(make_parts("sd"), concept, dataclasses.replace(
        lora_config(2), prior_preservation=True, num_class_images=3, prior_loss_weight=w), progress=False)
             for w in (1.0, 2.0)}
    # the first micro-batch is the same instance batch; the option adds w x the class batch's loss
    assert plain.diffusion_losses[0] == prior[1.0].diffusion_losses[0] == prior[2.0].diffusion_losses[0]
    assert plain.losses[0] == plain.diffusion_losses[0]
    term = {w: r.losses[0] - r.diffusion_losses[0] for w, r in prior.items()}
    assert term[1.0] > 1e-3 and term[2.0] == pytest.approx(2 * term[1.0], rel=1e-4)
    assert prior[1.0].prior_losses[0] == pytest.approx(term[1.0], rel=1e-6) and not plain.prior_losses
    cfg = dataclasses.replace(lora_config(12), prior_preservation=True, num_class_images=3, checkpoint_every=4)
    whole = invert(make_parts("sd"), concept, cfg, progress=False)
    invert(make_parts("sd"), concept, cfg, ckpt_dir=tmp_path, progress=False, stop_at=8)
    resumed = invert(make_parts("sd"), concept, cfg, ckpt_dir=tmp_path, progress=False)
    assert resumed.losses == whole.losses and resumed.prior_losses == whole.prior_losses
    assert len(set(whole.prior_losses)) > 1                 # the prior term is there and moves
    got = tensors(resumed.learner["state"])
    assert all(torch.equal(got[k], v) for k, v in tensors(whole.learner["state"]).items())


def test_dreambooth_lora_exports_a_file_a_stock_pipeline_loads(make_parts, concept, tmp_path):
    import json

    from tinv.engine import learners
    from tinv.engine.models import to_pipeline
    trained = make_parts("sd")
    res = invert(trained, concept, lora_config(10), progress=False)
    files = learners.export(trained, res.learner, tmp_path / "embeddings")
    assert json.loads(open(files["lora_info"]).read())["trigger"] == "sks cat"
    fresh = make_parts("sd")
    untouched = eps_of(fresh, "a photo of sks cat on a beach")
    pipe = to_pipeline(fresh)                      # diffusers' own pipeline over fresh parts
    pipe.load_lora_weights(tmp_path / "embeddings")
    # the stock pipeline, prompted with the trigger, computes what the engine's trained parts do
    got = eps_of(fresh, "a photo of sks cat on a beach")
    assert torch.allclose(got, eps_of(trained, "a photo of <S*> cat on a beach"), atol=1e-6)
    assert not torch.allclose(got, untouched, atol=1e-5)


def test_dreambooth_lora_refuses_bad_settings_before_training(make_parts, concept):
    with pytest.raises(ValueError, match="learner_args.rnak is not a setting of learner 'lora'"):
        lora_config(2, rnak=8)
    with pytest.raises(ValueError, match="learner_args.rank=4.0 must be a whole number >= 1"):
        lora_config(2, rank=4.0)
    with pytest.raises(ValueError, match="learner_args.rank=0 must be a whole number >= 1"):   # the registry's range
        lora_config(2, rank=0)
    with pytest.raises(ValueError, match="identifier 'sks' is 3 tokens"):
        invert(make_parts("ldm"), concept, lora_config(2), progress=False)

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

    def run():            # both halves (the word and the bypass), as one vector per row
        return torch.cat(m(t, layer), dim=1)
    m.eval()
    whole = run().detach()
    m.train()
    with torch.no_grad():                      # a fixed-batch loss during training: the whole mapper
        assert torch.equal(run(), whole)
    drawn = gen.get_state()
    dropped = run()
    assert not torch.equal(gen.get_state(), drawn)             # the set's generator draws it...
    assert (dropped - whole).abs().amax(dim=1).min() > 1e-4     # ...and every row lost units
    gen.set_state(drawn)
    assert torch.equal(run(), dropped)                          # ...so a resumed run draws the same
    m.eval()
    assert torch.equal(run(), whole)
    off = Mapper(4, 32, {**learners.ARGS["neti"], "nested_dropout": False}, 1.0, 1000,
                 torch.Generator().manual_seed(0)).train()
    assert torch.equal(off(t, layer)[0], off.eval()(t, layer)[0])


def test_neti_mapper_outputs_the_word_and_the_bypass_at_the_super_category_norm_together():
    """The authors rescale the mapper's whole output (both halves) to the super-category
    word's norm, then split it (neti_mapper.py get_output, net_clip_text_embedding.py)."""
    from tinv.engine.learners.neti import Mapper
    t, layer = torch.tensor([10, 500, 990]), torch.tensor([0, 1, 2])
    on = Mapper(3, 32, learners.ARGS["neti"], 2.0, 1000, torch.Generator().manual_seed(0)).eval()
    word, bypass = on(t, layer)
    assert word.shape == bypass.shape == (3, 32)
    torch.testing.assert_close(torch.cat([word, bypass], 1).norm(dim=1), torch.full((3,), 2.0))
    assert (word.norm(dim=1) < 2.0).all() and not torch.allclose(word, bypass)
    off = Mapper(3, 32, {**learners.ARGS["neti"], "output_bypass": False}, 2.0, 1000,
                 torch.Generator().manual_seed(0)).eval()
    word, none = off(t, layer)
    assert none is None and off.output.out_features == 32
    torch.testing.assert_close(word.norm(dim=1), torch.full((3,), 2.0))


@pytest.mark.parametrize("family", ["sd", "sd2", "ldm"])
def test_neti_bypass_moves_the_values_only_and_at_scale_zero_is_no_bypass(make_parts, concept, family):
    """The textual bypass: S*'s output state plus 0.2 x the mapper's second vector (at that
    state's norm), read by the cross-attention values, not the keys. Positive control: on, it
    changes what the UNet computes; scaled to zero, it computes what no bypass does."""
    from tinv.engine.learners.neti import conditioner
    parts = make_parts(family)
    invert(parts, concept, config("neti", 3), progress=False)
    layers = conditioning.cross_attention_layers(parts.unet)
    prompt = "a photo of <S*>"
    ids = parts.tokenize([prompt])
    pos = int((ids[0] == parts.tokenizer.convert_tokens_to_ids("<S*>")).nonzero()[0])
    c = _at(cond_of(parts, prompt), 500)
    assert set(c.values) == set(c.layers) == set(layers)
    for n in layers:      # the values' states differ from the keys' at S* only (the final norm is per token)
        diff = (c.values[n] - c.layers[n]).abs().amax(dim=-1)[0]
        assert diff[pos] > 1e-4 and diff[:pos].max() == 0 and diff[pos + 1:].max() == 0, n
    on = eps_of(parts, prompt)
    no_values = lambda cond: conditioning.Cond(cond.text, cond.layers)        # noqa: E731
    with torch.no_grad():
        x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([50, 700])
        full = cond_of(parts, prompt).expand(2)
        assert torch.allclose(conditioning.eps(parts.unet, x, t, full), on)
        keys_only = conditioning.eps(parts.unet, x, t, conditioning.Cond(
            full.text, at=lambda tt: no_values(full.resolved(tt))))
    assert (keys_only - on).abs().max() > 1e-5                       # the bypass changes the output
    mapper = next(iter(conditioner(parts).mappers.values()))
    mapper.bypass_scale = 0.0
    zero = eps_of(parts, prompt)
    torch.testing.assert_close(zero, keys_only, atol=1e-6, rtol=0)    # scaled to zero: no bypass


def test_neti_no_bypass_is_the_ablation_its_cond_has_no_values(make_parts, concept, tmp_path):
    from tinv.engine.learners import neti
    from tinv.harness.learned import install
    parts = make_parts("sd")
    res = invert(parts, concept, config("neti", 3, learner_args={"output_bypass": False}), progress=False)
    assert res.learner["state"]["settings"]["output_bypass"] is False
    assert _at(cond_of(parts, "a photo of <S*>"), 500).values is None
    prompt = "a photo of <S*> on a beach"
    fresh = make_parts("sd")           # its export round trip computes what the engine computes
    neti.install_file(fresh, learners.export(parts, res.learner, tmp_path)["neti"])
    torch.testing.assert_close(eps_of(fresh, prompt), eps_of(parts, prompt), atol=1e-6, rtol=0)
    # a mapper stored before the bypass existed (its settings do not name it) restores as one
    old = {**res.learner, "state": {**res.learner["state"], "settings": {
        k: v for k, v in res.learner["state"]["settings"].items() if k not in ("output_bypass", "bypass_scale")}}}
    older = make_parts("sd")
    install(older, dataclasses.replace(res, learner=old))
    torch.testing.assert_close(eps_of(older, prompt), eps_of(parts, prompt), atol=1e-6, rtol=0)


def test_cross_attention_layers_run_in_the_unets_forward_order(make_parts):
    """down, mid, up: the order the forward pass calls the layers (the NeTI authors' layer
    index, constants.UNET_LAYERS), which diffusers' attn_processors (up before mid) is not."""
    for family in ("sd", "ldm"):
        unet = make_parts(family).unet
        layers = conditioning.cross_attention_layers(unet)
        blocks = [n.split(".")[0] for n in layers]
        assert blocks == sorted(blocks, key=["down_blocks", "mid_block", "up_blocks"].index)
        assert "mid_block" in blocks and blocks[-1] == "up_blocks"
        called = []
        hooks = [unet.get_submodule(n.rsplit(".processor", 1)[0]).register_forward_hook(
            lambda m, i, o, n=n: called.append(n)) for n in layers]
        with torch.no_grad():
            unet(torch.zeros(1, 4, 8, 8), 10, encoder_hidden_states=torch.zeros(1, 77, 32))
        for h in hooks:
            h.remove()
        assert called == layers


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
    assert state["settings"]["output_bypass"] is True           # the file carries the bypass
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


# ----------------------------------------------------------------------------- DreamBooth
def db_config(steps: int, **kw) -> InversionConfig:
    args = {"identifier": "elmo", "lr": 1e-4, **kw.pop("learner_args", {})}
    return InversionConfig(steps=steps, learner="dreambooth", class_noun=True, learner_args=args, **{**BASE, **kw})


def test_dreambooth_fine_tunes_the_whole_unet_with_the_prior_term_and_holds_s_star(make_parts, concept):
    parts = make_parts("sd")
    before = params(parts)
    res = invert(parts, concept, db_config(8, prior_preservation=True, num_class_images=3), progress=False)
    after = params(parts)
    unet = [n for n in before if n.startswith("unet.")]
    moved = [n for n in unet if not torch.equal(after[n], before[n])]
    assert len(moved) > 0.9 * len(unet)                       # every weight of the UNet trains
    assert all(torch.equal(after[n], p) for n, p in before.items()
               if n.startswith(("text.", "vae.")) and "embedding" not in n)
    elmo = initializer_embedding(parts, "elmo")
    assert torch.equal(res.embeds["<S*>"][0], elmo.to(res.embeds["<S*>"]))     # S* is the identifier
    assert len(res.prior_losses) == 8 and len(set(res.prior_losses)) > 1          # the prior term, moving
    assert all(a > b for a, b in zip(res.losses, res.diffusion_losses))
    assert "gradient clipping" in res.notes["leaves_out"]     # the row says what the port leaves out


def test_dreambooth_trains_the_text_encoder_and_its_identifier_row_by_option(make_parts, concept):
    parts = make_parts("sd")
    before = params(parts)
    res = invert(parts, concept, db_config(4, lr=1e-4, scale_lr=False, learner_args={"train_text_encoder": True}),
                 progress=False)
    after = params(parts)
    text = [n for n in before if n.startswith("text.") and "embedding" not in n]
    assert sum(not torch.equal(after[n], before[n]) for n in text) > 0.5 * len(text)
    assert not torch.equal(res.embeds["<S*>"][0], initializer_embedding(parts, "elmo").to(res.embeds["<S*>"]))


@pytest.mark.parametrize("train_text", [False, True])
def test_dreambooth_exports_weights_a_stock_pipeline_loads_and_draws_what_the_engine_draws(
        make_parts, concept, tmp_path, train_text):
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    from tinv.engine.models import to_pipeline
    from tinv.engine.sampling import initial_noise, sample
    trained = make_parts("sd")
    res = invert(trained, concept, db_config(6, lr=1e-4, scale_lr=False,
                                             learner_args={"train_text_encoder": train_text}), progress=False)
    files = learners.export(trained, res.learner, tmp_path)
    stock = make_parts("sd")                           # the base weights, nothing learned, no S*
    pipe = to_pipeline(stock)
    assert all(Path(f).is_file() for f in files.values())
    pipe.unet = UNet2DConditionModel.from_pretrained(Path(files["dreambooth_unet"]).parent)
    if train_text:
        pipe.text_encoder = CLIPTextModel.from_pretrained(Path(files["dreambooth_text_encoder"]).parent)
    assert ("dreambooth_text_encoder" in files) == train_text
    pipe.scheduler = DDIMScheduler.from_config(stock.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    seeds = [0, 1]
    x_T, _ = initial_noise(trained, seeds)
    ours = sample(trained, ["a photo of <S*> cat on a beach"], seeds, steps=6, guidance=5.0, progress=False)
    kw = dict(num_images_per_prompt=2, latents=x_T, num_inference_steps=6, guidance_scale=5.0,
              height=stock.resolution, width=stock.resolution, output_type="pt")
    theirs = pipe("a photo of elmo cat on a beach", **kw).images        # the trigger, typed as text
    torch.testing.assert_close(torch.as_tensor(theirs).float(), ours, atol=1e-4, rtol=0)
    plain = to_pipeline(make_parts("sd"))
    plain.scheduler = DDIMScheduler.from_config(stock.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    assert (torch.as_tensor(plain("a photo of elmo cat on a beach", **kw).images).float() - ours).abs().max() > 1e-3


def test_custom_diffusion_augments_as_its_authors_with_a_masked_loss(make_parts, concept):
    """Their random rescale: small images pasted on a gray canvas with the loss masked to them
    and "a far away"/"very small" prompts, large ones cropped ("zoomed in"/"close up"), drawn
    from the set's generator; off by its option."""
    from tinv.engine.inversion import _Set
    from tinv.engine.pseudo_words import learning

    def batches(**args):
        parts = make_parts("sd")
        parts.freeze()
        s = _Set(parts, concept, config("custom_diffusion", 1, batch_size=8,
                                        learner_args={"init_token": "", **args}))
        with learning(parts, s.words):
            return [s.draw(parts) for _ in range(4)]
    drawn = batches()
    prompts = [p for b in drawn for p in b[1]]
    cover = torch.cat([b[2] for b in drawn]).mean(dim=(1, 2, 3))
    small = [p.startswith(("a far away ", "very small ")) for p in prompts]
    large = [p.startswith(("zoomed in ", "close up ")) for p in prompts]
    assert any(small) and any(large) and all("<S*> cat" in p for p in prompts)
    assert all(cover[i] == 1 for i, big in enumerate(large) if big)          # a crop: all of it counts
    assert all(cover[i] < 0.4 for i, sm in enumerate(small) if sm)            # a small paste: its region only
    again = batches()
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(drawn, again))   # the set's generator
    assert all(b[2] is None and not b[1][0].startswith(("a far", "very", "zoomed", "close")) for b in batches(augment=False))


@pytest.mark.parametrize("learner", ["xti", "neti"])
def test_sampling_streams_draw_the_same_images_with_per_layer_words(make_parts, concept, learner):
    """Batches sampled side by side on threads (sampling.set_streams) are each computed as
    alone: with a per-layer word (XTI's layers in the call's kwargs; NeTI's words, which swap
    module state per call and so are sampled one batch at a time) the images equal one
    stream's bit for bit."""
    from tinv.engine.sampling import sample
    parts = make_parts()
    invert(parts, concept, config(learner, 2), progress=False)
    args = dict(prompts=["a photo of <S*>", "<S*> at night"], seeds=[0, 1, 2], steps=3, batch_size=2,
                progress=False)
    one = sample(parts, **args, streams=1)
    assert torch.equal(sample(parts, **args, streams=3), one)
