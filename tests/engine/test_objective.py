"""Eq. 2 in one function (tinv/engine/objective.py): it computes the equation as written by
hand, and the loop that now calls it computes, bit for bit, what the loop computed when it
wrote the equation out itself (a transcription of that step is kept here as the reference)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tinv.engine import conditioning, objective
from tinv.engine.inversion import InversionConfig, _Set, invert, invert_packed
from tinv.engine.pseudo_words import learning


def _batch(parts, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, s = parts.unet.config.in_channels, parts.unet.config.sample_size
    z = torch.randn(n, c, s, s, generator=g)
    cond = conditioning.encode(parts, parts.tokenize(["a photo of a cat"] * n))
    return z, cond


def _by_hand(parts, z, t, noise, cond):
    """|| target - eps_theta(sqrt(a_t) z + sqrt(1 - a_t) eps, t, c) ||^2, written out."""
    a = parts.scheduler.alphas_cumprod[t].float()[:, None, None, None]
    z_t = a.sqrt() * z + (1 - a).sqrt() * noise
    with torch.no_grad():
        pred = parts.unet(z_t, t, encoder_hidden_states=cond.text).sample
    v_pred = parts.scheduler.config.prediction_type == "v_prediction"
    goal = a.sqrt() * noise - (1 - a).sqrt() * z if v_pred else noise
    return ((pred - goal) ** 2).mean(dim=(1, 2, 3))


@pytest.mark.parametrize("family", ["sd", "sd2"])          # eps- and v-prediction
def test_the_loss_is_eq_2_written_by_hand(make_parts, family):
    parts = make_parts(family)
    parts.freeze()
    sched = objective.training_scheduler(parts)
    z, cond = _batch(parts)
    t, noise = objective.draw(sched, z.shape, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)      # the draw's order: t, then eps
    assert torch.equal(t, torch.randint(sched.config.num_train_timesteps, (3,), generator=g))
    assert torch.equal(noise, torch.randn(z.shape, generator=g))
    per = _by_hand(parts, z, t, noise, cond)
    with torch.no_grad():
        got = objective.loss(parts, sched, z, t, noise, cond)
        groups = objective.loss(parts, sched, z, t, noise, cond, groups=[1, 2])
        weighted = objective.loss(parts, sched, z, t, noise, cond, weight=torch.tensor([2.0, 0.0, 1.0]))
    torch.testing.assert_close(got, per.mean(), rtol=1e-5, atol=0)
    torch.testing.assert_close(groups[0], per[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(groups[1], per[1:].mean(), rtol=1e-5, atol=0)
    torch.testing.assert_close(weighted, (2 * per[0] + per[2]) / 3, rtol=1e-5, atol=0)
    assert got.item() > 0.1            # a real loss, not a degenerate zero


def test_a_mask_keeps_the_loss_to_its_region_at_latent_or_pixel_resolution(make_parts):
    parts = make_parts("sd")
    parts.freeze()
    sched = objective.training_scheduler(parts)
    z, cond = _batch(parts, n=2)
    t, noise = objective.draw(sched, z.shape, torch.Generator().manual_seed(1))
    s = z.shape[-1]
    left = torch.zeros(2, 1, s, s)
    left[..., : s // 2] = 1
    with torch.no_grad():
        a = parts.scheduler.alphas_cumprod[t][:, None, None, None]
        pred = parts.unet(a.sqrt() * z + (1 - a).sqrt() * noise, t, encoder_hidden_states=cond.text).sample
        want = ((pred - noise)[..., : s // 2] ** 2).mean()
        got = objective.loss(parts, sched, z, t, noise, cond, mask=left)
        factor = parts.resolution // s          # the same region given at pixel resolution
        pixel = objective.loss(parts, sched, z, t, noise, cond,
                               mask=left.repeat_interleave(factor, 2).repeat_interleave(factor, 3))
        whole = objective.loss(parts, sched, z, t, noise, cond, mask=torch.ones(2, 1, s, s))
        plain = objective.loss(parts, sched, z, t, noise, cond)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    torch.testing.assert_close(pixel, want, rtol=1e-5, atol=0)
    torch.testing.assert_close(whole, plain, rtol=1e-5, atol=0)
    assert abs(got.item() - plain.item()) > 1e-4           # the region matters
    with pytest.raises(ValueError, match=r"loss mask is \[B, 1, H, W\] with B = 2, got \(3, 1, 8, 8\)"):
        objective.loss(parts, sched, z, t, noise, cond, mask=torch.ones(3, 1, 8, 8))


def _reference_step(parts, sched, sets):
    """The loop's optimizer step as it was written before Eq. 2 had its own function (commit
    856ee94, inversion._optimizer_step), kept verbatim as the reference for the refactor."""
    for s in sets:
        s.optimizer.zero_grad(set_to_none=True)
    losses = 0.0
    out = []
    drawn = [s.draw(parts) for s in sets]       # (then: s.draw(parts.device), the same draws)
    z = torch.cat([d[0] for d in drawn])
    prompts = [p for d in drawn for p in d[1]]
    t = torch.cat([torch.randint(sched.config.num_train_timesteps, (s.cfg.batch_size,), generator=s.gen)
                   for s in sets]).to(parts.device)
    noise = torch.cat([torch.randn(d[0].shape, generator=s.gen) for s, d in zip(sets, drawn)]).to(z)
    cond = conditioning.encode(parts, parts.tokenize(prompts, expand=False))
    pred = conditioning.eps(parts.unet, sched.add_noise(z, noise, t).to(parts.dtype), t, cond.to(parts.dtype))
    target = noise if sched.config.prediction_type != "v_prediction" else sched.get_velocity(z, noise, t)
    sizes = [s.cfg.batch_size for s in sets]
    for s, p, y in zip(sets, pred.float().split(sizes), target.float().split(sizes)):
        loss = F.mse_loss(p, y) + s.regularizer()
        losses = losses + loss
        out.append(loss.item())
    losses.backward()
    for s in sets:
        s.optimizer.step()
        s.step += 1
    return out


@pytest.mark.parametrize("family", ["sd", "sd2"])
def test_the_loop_computes_what_it_computed_before_eq_2_was_gathered(make_parts, concept, family):
    """A few steps of a plain set and of a packed pair (a regularized one among them), by the
    loop and by the reference transcription: the same losses to the last bit."""
    cfgs = [InversionConfig(placeholder="<a>", initializer_word="cat", batch_size=2, steps=4, seed=3),
            InversionConfig(placeholder="<b>", initializer_word="dog", batch_size=3, steps=4, seed=9,
                            num_vectors=2, reg_weight=1e-2)]
    loop_one = invert(make_parts(family), concept, cfgs[0], progress=False).losses
    # the reference ran a packed pair in ONE UNet batch, as one_batch does (the exact mode's
    # per-set batches equal it only where the CPU's kernels are batch invariant: not on every CPU)
    loop_two = [r.losses for r in invert_packed(make_parts(family), [(concept, c) for c in cfgs], progress=False,
                                                one_batch=True)]
    reference = []
    for group in ([cfgs[0]], cfgs):
        parts = make_parts(family)
        parts.freeze()
        sets = [_Set(parts, concept, c) for c in group]
        sched = objective.training_scheduler(parts)
        with learning(parts, [w for s in sets for w in s.words]):
            for s in sets:
                s.make_optimizer()
            reference.append(list(zip(*[_reference_step(parts, sched, sets) for _ in range(4)])))
    assert loop_one == list(reference[0][0])
    assert loop_two == [list(r) for r in reference[1]]
    assert len(set(loop_one)) == 4            # it trained: four different losses
