"""The one text-to-UNet seam (tinv/engine/conditioning.py): per-layer text reaches exactly the
cross-attention layer it names, on the toy model and on tiny SD / LDM pipelines; without
it the UNet computes what it computed before; and every caller goes through it."""
from __future__ import annotations

import pytest
import torch

from tinv.engine import conditioning, ddim_inversion, inversion, pivotal, sampling
from tinv.engine.conditioning import Cond
from tinv.engine.inversion_config import InversionConfig
from tinv.engine.models import load_parts
from tinv.engine.pivotal import PivotalConfig

PROMPTS = ["a photo of a red star", "a blue heart on grass", "a sketch of a tree", "moonlit water",
           "a green cross", "pixel art of a brick wall"]


@pytest.fixture(params=["toy", "sd", "ldm"])
def parts(request, make_parts):
    if request.param == "toy":
        from tinv.toyworld import MODEL_DIR
        return load_parts(MODEL_DIR).freeze()
    return make_parts(request.param).freeze()


def _latents(parts, n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *sampling.latent_shape(parts)), generator=g)


def _text(parts, prompt: str, n: int = 2) -> torch.Tensor:
    return parts.encode_text(parts.tokenize([prompt] * n))


@torch.no_grad()
def test_without_per_layer_text_the_unet_is_called_as_before(parts):
    x, t, ids = _latents(parts), torch.tensor([10, 500]), parts.tokenize(PROMPTS[:2])
    before = parts.unet(x, t, parts.encode_text(ids)).sample
    assert torch.equal(conditioning.eps(parts.unet, x, t, conditioning.encode(parts, ids)), before)
    assert not any(isinstance(p, conditioning.Route) for p in parts.unet.attn_processors.values())


@torch.no_grad()
def test_per_layer_text_reaches_the_layer_it_names(parts):
    names = conditioning.cross_attention_layers(parts.unet)
    assert len(names) >= 2, names
    x, t = _latents(parts), torch.tensor([10, 500])
    base = _text(parts, PROMPTS[0])
    own = {name: _text(parts, PROMPTS[1 + i % (len(PROMPTS) - 1)]) for i, name in enumerate(names)}
    seen: dict[str, torch.Tensor] = {}
    hooks = [parts.unet.get_submodule(name[:-len(".processor")]).to_k.register_forward_hook(
        lambda m, args, out, name=name: seen.__setitem__(name, args[0].clone())) for name in names]
    try:
        out = conditioning.eps(parts.unet, x, t, Cond(base, own))
    finally:
        for h in hooks:
            h.remove()
    for name in names:      # each cross-attention layer's keys were made from its own text
        assert torch.equal(seen[name], own[name]), name
    plain = conditioning.eps(parts.unet, x, t, Cond(base))
    assert not torch.allclose(out, plain)
    # the route is transparent: every layer given the base text is the plain call, exactly
    same = conditioning.eps(parts.unet, x, t, Cond(base, {name: base for name in names}))
    assert torch.equal(same, plain)
    # one layer alone changes the output, and differently from all of them
    one = conditioning.eps(parts.unet, x, t, Cond(base, {names[0]: own[names[0]]}))
    assert not torch.allclose(one, plain) and not torch.allclose(one, out)


@torch.no_grad()
def test_value_states_reach_the_values_of_the_layer_they_name_and_its_keys_stay(parts):
    """Cond.values (NeTI's textual bypass): the named layer's to_v projects those states, its
    to_k still its own text's; values equal to the keys' states are the plain call, exactly."""
    names = conditioning.cross_attention_layers(parts.unet)
    x, t = _latents(parts), torch.tensor([10, 500])
    base, other = _text(parts, PROMPTS[0]), _text(parts, PROMPTS[1])
    attn = parts.unet.get_submodule(names[0][:-len(".processor")])
    seen: dict[str, torch.Tensor] = {}
    hooks = [attn.to_k.register_forward_hook(lambda m, a, o: seen.__setitem__("k", a[0].clone())),
             attn.to_v.register_forward_hook(lambda m, a, o: seen.__setitem__("v", a[0].clone()))]
    try:
        out = conditioning.eps(parts.unet, x, t, Cond(base, values={names[0]: other}))
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(seen["k"], base) and torch.equal(seen["v"], other)
    assert attn.to_v is not None and not isinstance(attn.to_v, conditioning._Projecting)   # put back
    plain = conditioning.eps(parts.unet, x, t, Cond(base))
    assert not torch.allclose(out, plain)
    assert torch.equal(conditioning.eps(parts.unet, x, t, Cond(base, values={n: base for n in names})), plain)
    # guidance's [uncond, cond]: a Cond without values gives its own text to the values
    both = conditioning.cat([Cond(other[:1]), Cond(base[:1], values={names[0]: other[:1]})])
    assert torch.equal(both.values[names[0]], torch.cat([other[:1], other[:1]]))
    assert torch.equal(both.layers[names[0]], torch.cat([other[:1], base[:1]]))


def _first_layer_conditioner(prompt: str, calls: list):
    def conditioner(parts, ids):
        calls.append(len(ids))
        first = conditioning.cross_attention_layers(parts.unet)[0]
        return Cond(parts.encode_text(ids), {first: _text(parts, prompt, len(ids))})
    return conditioner


def test_sampling_follows_a_conditioner_on_the_parts(make_parts):
    parts = make_parts("sd").freeze()
    kw = dict(prompts=["a photo of a cat", "a dog"], seeds=[0, 1], steps=3, guidance=5.0, progress=False)
    plain = sampling.sample(parts, **kw)
    calls: list[int] = []
    parts.conditioner = _first_layer_conditioner("a red star", calls)
    routed = sampling.sample(parts, **kw)
    assert calls == [3]                      # the two prompts and "" encoded once, as before
    assert not torch.allclose(routed, plain)
    parts.conditioner = lambda p, ids: Cond(p.encode_text(ids))     # the default, spelled out
    assert torch.equal(sampling.sample(parts, **kw), plain)


@torch.no_grad()
def test_a_timestep_dependent_cond_is_resolved_at_every_step(make_parts):
    parts = make_parts("sd").freeze()
    seen = []
    text = _text(parts, "a photo of a cat", 2)

    def at(t):
        seen.append(int(t))
        return Cond(text * (1 + int(t) / 1000))      # a word that changes with the timestep
    cond = Cond(text, at=at)
    uncond = sampling.encode_prompts(parts, [""]).expand(2)
    x = sampling.denoise(parts, _latents(parts), cond, uncond, steps=4, guidance=3.0)
    sched = sampling.ddim_scheduler(parts, 4)
    assert seen == [int(t) for t in sched.timesteps]
    static = sampling.denoise(parts, _latents(parts), Cond(text), uncond, steps=4, guidance=3.0)
    assert not torch.allclose(x, static)


def test_every_caller_goes_through_the_seam(make_parts, concept, monkeypatch):
    """Training runs the UNet through Eq. 2's one function (objective.loss), and it and the
    samplers through the seam."""
    from tinv.engine import objective
    parts = make_parts("sd")
    calls: dict[str, int] = {}
    losses: dict[str, int] = {}
    real, real_loss = conditioning.eps, objective.loss

    def caller() -> str:
        import inspect
        return inspect.stack()[2].function

    def counting(unet, x, t, cond):
        calls[caller()] = calls.get(caller(), 0) + 1
        return real(unet, x, t, cond)

    def counting_loss(*a, **kw):
        losses[caller()] = losses.get(caller(), 0) + 1
        return real_loss(*a, **kw)
    monkeypatch.setattr(conditioning, "eps", counting)
    monkeypatch.setattr(objective, "loss", counting_loss)
    cfg = InversionConfig(steps=2, batch_size=1, initializer_word="cat", checkpoint_every=0)
    result = inversion.invert(parts, concept, cfg, progress=False)
    latents = inversion.cache_latents(parts, concept)
    pivotal.pivotal_tune(parts, latents, PivotalConfig(steps=1, batch_size=1, placeholder=cfg.placeholder),
                         progress=False)
    ddim_inversion.bipartite(parts, latents.mean[:1, 0], ["a photo of <S*>"], [1.0, 3.0], steps=2, progress=False)
    sampling.sample(parts, ["a <S*>"], [0], steps=2, progress=False)
    assert result.steps == 2
    # the loop, its fixed-batch losses and pivotal tuning through Eq. 2's function; it, DDIM
    # inversion and sampling through the seam
    assert {"_micro_batch", "fixed_eval_loss", "pivotal_tune"} <= set(losses), losses
    assert {"loss", "guided_eps"} == set(calls), calls
