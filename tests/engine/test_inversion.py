"""The inversion loop: every setup lowers the diffusion loss, touches only its own rows,
resumes bit for bit, and packs independent sets without changing their gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tinv.engine import checkpoint
from tinv.engine.data import cache_latents, load_concept_images
from tinv.engine.inversion import (CHECKPOINT_NAME, InversionConfig, eval_prompt, fixed_eval_loss, invert,
                            invert_packed)
from tinv.engine.pseudo_words import PseudoWord, expand_prompt, initializer_embedding

# Tiny-model settings: batch 2, a few images; the setups are the paper's, as data.
BASE = dict(initializer_word="cat", batch_size=2, lr=5e-3, seed=23)
SETUPS = {
    "single_word": dict(),
    "two_word": dict(num_vectors=2),
    "three_word": dict(num_vectors=3),
    "progressive": dict(num_vectors=3, progressive_interval=30),
    "regularized_l2": dict(num_vectors=2, reg_weight=1e-3, reg_form="l2"),
    "regularized_gram_mean": dict(num_vectors=2, reg_weight=1e-3, reg_form="gram_mean"),
    "per_image": dict(per_image_tokens=True),
}


def frozen_untouched(parts) -> bool:
    return all(not p.requires_grad and p.grad is None
               for m in (parts.unet, parts.vae, parts.text_encoder) for p in m.parameters())


@pytest.mark.parametrize("family", ["sd", "ldm"])
@pytest.mark.parametrize("setup", list(SETUPS))
def test_setup_lowers_loss_and_changes_only_its_rows(make_parts, concept, family, setup):
    parts = make_parts(family)
    table0 = parts.input_embeddings().weight.detach().clone()
    cfg = InversionConfig(steps=100, **BASE, **SETUPS[setup])
    res = invert(parts, concept, cfg, progress=False)

    assert res.steps == 100 and len(res.losses) == 100
    table = parts.input_embeddings().weight
    assert torch.equal(table[: table0.shape[0]], table0)          # every old row bit-identical
    n_new = cfg.num_vectors + (len(concept) if cfg.per_image_tokens else 0)
    assert table.shape[0] == table0.shape[0] + n_new
    for name, ids in res.token_ids.items():                      # the words stay in the encoder
        assert torch.equal(table[ids], res.embeds[name].to(table))
    init = initializer_embedding(parts, "cat")
    assert not torch.allclose(res.embeds[cfg.placeholder][0], init, atol=1e-4)   # it did learn
    assert frozen_untouched(parts)

    # Measured independently of the loop: the learned word lowers the fixed-pairs loss.
    word = PseudoWord(cfg.placeholder, [parts.tokenizer.convert_ids_to_tokens(i) for i in
                                        res.token_ids[cfg.placeholder]], res.token_ids[cfg.placeholder],
                      torch.empty(0))
    ids = parts.tokenize([expand_prompt(eval_prompt(cfg), [word])])
    after = fixed_eval_loss(parts, cache_latents(parts, concept), ids)
    assert after == pytest.approx(res.eval_loss_after, rel=1e-6)
    # Far above float noise (~1e-6): the tiny random nets move it by 2e-3 .. 1e-2.
    assert res.eval_loss_before - after > 1e-3, (setup, family, res.eval_loss_before, after)


def test_regularization_keeps_vectors_near_initializer(make_parts, concept):
    drift = {}
    for w in (0.0, 10.0):
        parts = make_parts("sd")
        res = invert(parts, concept, InversionConfig(steps=30, num_vectors=2, reg_weight=w, **BASE),
                     progress=False)
        init = initializer_embedding(parts, "cat")
        drift[w] = (res.embeds["<S*>"] - init).norm().item()
    assert drift[10.0] < 0.5 * drift[0.0]


def test_two_regularizer_forms_agree_for_one_vector_and_differ_for_two():
    from tinv.engine.inversion import _Set
    d = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    fake = _Set.__new__(_Set)
    fake.word = PseudoWord("<S*>", ["<S*>", "<S*>_1"], [0, 1], torch.zeros(2, 2), "cat", torch.nn.Parameter(d))
    fake.cfg = InversionConfig(initializer_word="cat", reg_weight=1.0, reg_form="l2")
    l2 = fake.regularizer().item()
    fake.cfg = InversionConfig(initializer_word="cat", reg_weight=1.0, reg_form="gram_mean")
    gram = fake.regularizer().item()
    assert l2 == pytest.approx(1 + 4 + 9 + 1)
    assert gram == pytest.approx((5 + 1 + 1 + 10) / 4)   # mean of [[5, 1], [1, 10]]
    fake.word.vectors = torch.nn.Parameter(d[:1])
    fake.word.init = torch.zeros(1, 2)
    assert fake.regularizer().item() == pytest.approx(5.0)
    fake.cfg = InversionConfig(initializer_word="cat", reg_weight=1.0, reg_form="l2")
    assert fake.regularizer().item() == pytest.approx(5.0)


def test_progressive_locked_vectors_get_no_gradient_and_counter_is_checkpointed(make_parts, concept, tmp_path):
    cfg = InversionConfig(steps=40, num_vectors=3, progressive_interval=30, checkpoint_every=10, **BASE)
    assert [cfg.active_vectors(s) for s in (0, 29, 30, 59, 60, 1000)] == [1, 1, 2, 2, 3, 3]
    parts = make_parts("sd")
    res = invert(parts, concept, cfg, tmp_path, progress=False, stop_at=20)
    init = initializer_embedding(parts, "cat")
    v = res.embeds["<S*>"]
    # Locked vectors only saw AdamW's decoupled weight decay: v0 * (1 - lr * wd)^steps.
    decayed = init * (1 - cfg.lr_effective * cfg.weight_decay) ** 20
    assert torch.allclose(v[1:], decayed.expand(2, -1), atol=1e-6)
    assert not torch.allclose(v[0], decayed, atol=1e-3)
    state = checkpoint.load(tmp_path / CHECKPOINT_NAME)
    assert state["sets"][0]["step"] == 20


def test_interrupted_then_resumed_equals_straight_run(make_parts, concept, tmp_path):
    cfg = InversionConfig(steps=30, num_vectors=2, progressive_interval=15, per_image_tokens=True,
                          checkpoint_every=10, **BASE)
    straight = invert(make_parts("sd"), concept, cfg, tmp_path / "a", progress=False)
    first = invert(make_parts("sd"), concept, cfg, tmp_path / "b", progress=False, stop_at=20)
    assert first.steps == 20
    state = checkpoint.load(tmp_path / "b" / CHECKPOINT_NAME)
    assert state["sets"][0]["step"] == 20 and state["sets"][0]["optimizer"]["state"]
    assert set(state["rng"]) == {"torch", "numpy", "python"}
    resumed = invert(make_parts("sd"), concept, cfg, tmp_path / "b", progress=False)
    assert resumed.steps == 30
    assert resumed.losses == straight.losses
    for name in straight.embeds:
        assert torch.equal(resumed.embeds[name], straight.embeds[name]), name


def test_resume_with_other_config_is_refused(make_parts, concept, tmp_path):
    cfg = InversionConfig(steps=4, checkpoint_every=2, **BASE)
    invert(make_parts("sd"), concept, cfg, tmp_path, progress=False, stop_at=2)
    other = InversionConfig(steps=4, checkpoint_every=2, **{**BASE, "lr": 1e-2})
    with pytest.raises(ValueError, match=f"{CHECKPOINT_NAME}.*different config"):
        invert(make_parts("sd"), concept, other, tmp_path, progress=False)


def test_packed_sets_train_as_if_alone(make_parts, concept, tmp_path):
    folder = tmp_path / "blue"
    folder.mkdir()
    for i, im in enumerate(concept.pixels):
        arr = ((im.flip(0).permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        from PIL import Image
        Image.fromarray(arr).save(folder / f"{i}.png")
    other = load_concept_images(folder, 32)
    a = InversionConfig(steps=15, placeholder="<a*>", **BASE)
    b = InversionConfig(steps=15, placeholder="<b*>", num_vectors=2, progressive_interval=5,
                        per_image_tokens=True, **{**BASE, "seed": 7, "initializer_word": "dog"})
    alone = [invert(make_parts("sd"), concept, a, progress=False),
             invert(make_parts("sd"), other, b, progress=False)]
    packed = invert_packed(make_parts("sd"), [(concept, a), (other, b)], progress=False)
    one = invert_packed(make_parts("sd"), [(concept, a), (other, b)], progress=False, one_batch=True)
    for solo, pack, batch in zip(alone, packed, one):
        # each set's micro-batch in its own UNet call: bit for bit its lone run
        assert solo.losses == pack.losses and solo.eval_loss_after == pack.eval_loss_after
        for name in solo.embeds:
            assert torch.equal(solo.embeds[name], pack.embeds[name]), name
        # one UNet batch for both: the same up to float error
        assert np.allclose(solo.losses, batch.losses, rtol=1e-4, atol=1e-6)
        for name in solo.embeds:
            assert torch.allclose(solo.embeds[name], batch.embeds[name], rtol=1e-4, atol=1e-5), name


def test_learning_rate_rule_is_recorded(make_parts, concept):
    cfg = InversionConfig(steps=1, n_devices=2, **{**BASE, "batch_size": 4})
    assert cfg.lr_effective == pytest.approx(0.04)        # 2 GPUs x batch 4 x 5e-3
    res = invert(make_parts("sd"), concept, cfg, progress=False)
    assert res.lr_effective == pytest.approx(0.04) and "= 0.04" in res.lr_rule
    assert InversionConfig(scale_lr=False, **BASE).lr_effective == 5e-3


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="<S\\*>.*initializer_word"):
        InversionConfig(init="word")
    with pytest.raises(ValueError, match="reg_form='l3'"):
        InversionConfig(initializer_word="cat", reg_form="l3")


def test_folder_input_with_style_templates_and_finished_rerun(make_parts, concept_dir, tmp_path):
    cfg = InversionConfig(steps=3, templates="style", center_crop=True, checkpoint_every=2, **BASE)
    first = invert(make_parts("ldm"), concept_dir, cfg, tmp_path, progress=False)
    assert first.steps == 3 and len(first.losses) == 3
    again = invert(make_parts("ldm"), concept_dir, cfg, tmp_path, progress=False)   # finished: no new steps
    assert again.losses == first.losses and torch.equal(again.embeds["<S*>"], first.embeds["<S*>"])


# ----------------------------------------------------------------------------- DVAR
def test_dvar_criterion_on_synthetic_series():
    from tinv.engine.dvar import should_stop, variance_ratio
    # Still descending: the last 20 of 40 steps hold (20/40)^2 = 1/4 of a line's variance.
    falling = list(np.linspace(1.0, 0.5, 40))
    assert variance_ratio(falling, 20) == pytest.approx(np.var(falling[-20:]) / np.var(falling))
    assert variance_ratio(falling, 20) == pytest.approx(0.25, abs=0.01)
    assert not should_stop(falling, window=20, threshold=0.15)
    # A descent that ends in a plateau: the last 20 only jitter around the floor.
    plateau = falling + [0.5 + 1e-3 * (-1) ** i for i in range(40)]
    assert should_stop(plateau, window=20, threshold=0.15)
    assert not should_stop(plateau[:19], window=20, threshold=0.15)   # no decision before a full window
    assert variance_ratio(plateau[:19], 20) is None
    assert should_stop([0.7] * 30, window=20, threshold=0.15)         # a loss that never moves is flat
    assert not should_stop(plateau, window=20, threshold=0.0)         # threshold 0: log, never stop
    # The criterion is relative: a line long enough against the window reads as flat
    # ((20/100)^2 = 0.04), which is why the window scales with the run's length.
    assert should_stop(list(np.linspace(1.0, 0.5, 100)), window=20, threshold=0.15)


DVAR = dict(stop="dvar", dvar_window=15, dvar_threshold=0.15)


def test_dvar_stops_a_real_inversion_where_its_fixed_batch_loss_flattens(make_parts, concept):
    from tinv.engine.dvar import should_stop
    # threshold 0 logs L_det and never stops: the run the criterion is read off
    logged = invert(make_parts("sd"), concept, InversionConfig(steps=80, **{**DVAR, "dvar_threshold": 0.0}, **BASE),
                    progress=False)
    series = logged.dvar["losses"]
    assert logged.steps == 80 and len(series) == 80 and logged.dvar["stopped_at"] is None
    first = next(t for t in range(1, 81) if should_stop(series[:t], 15, 0.15))
    assert first < 80                 # the tiny model's loss flattens within a few dozen steps

    res = invert(make_parts("sd"), concept, InversionConfig(steps=80, **DVAR, **BASE), progress=False)
    assert res.dvar["stopped_at"] == res.steps == first == len(res.losses) == len(res.dvar["losses"])
    assert res.dvar["losses"] == series[:first]          # the same run, cut where the criterion fired
    assert res.dvar["steps_saved"] == 80 - first and res.dvar["ratio"] < 0.15

    fixed = invert(make_parts("sd"), concept, InversionConfig(steps=80, **BASE), progress=False)
    assert fixed.steps == 80 and fixed.dvar == {}         # the paper's fixed steps stay the default
    assert fixed.losses[:first] == res.losses             # tracking L_det changes no training step


def test_dvar_resumed_job_stops_at_the_same_step(make_parts, concept, tmp_path):
    cfg = InversionConfig(steps=80, checkpoint_every=5, **DVAR, **BASE)
    straight = invert(make_parts("sd"), concept, cfg, tmp_path / "a", progress=False)
    stop = straight.dvar["stopped_at"]
    assert stop is not None and stop > 10
    first = invert(make_parts("sd"), concept, cfg, tmp_path / "b", progress=False, stop_at=10)   # preempted
    assert first.steps == 10 and first.dvar["stopped_at"] is None and first.dvar["steps_saved"] == 0
    resumed = invert(make_parts("sd"), concept, cfg, tmp_path / "b", progress=False)
    assert resumed.dvar == straight.dvar and resumed.losses == straight.losses
    assert torch.equal(resumed.embeds["<S*>"], straight.embeds["<S*>"])
    assert checkpoint.load(tmp_path / "b" / CHECKPOINT_NAME)["sets"][0]["stopped_at"] == stop
    again = invert(make_parts("sd"), concept, cfg, tmp_path / "b", progress=False)      # finished: no new step
    assert again.steps == stop and again.dvar == straight.dvar


def test_packed_sets_stop_at_their_own_steps(make_parts, concept, tmp_path):
    early = InversionConfig(steps=60, placeholder="<a*>", checkpoint_every=5, **DVAR, **BASE)
    full = InversionConfig(steps=60, placeholder="<b*>", checkpoint_every=5, **{**BASE, "seed": 7})
    alone = [invert(make_parts("sd"), concept, c, progress=False) for c in (early, full)]
    assert alone[0].steps < 60
    # preempted after the DVAR set stopped, then resumed: each set as if it had run alone
    invert_packed(make_parts("sd"), [(concept, early), (concept, full)], tmp_path, progress=False,
                  stop_at=alone[0].steps + 5)
    packed = invert_packed(make_parts("sd"), [(concept, early), (concept, full)], tmp_path, progress=False)
    assert [r.steps for r in packed] == [alone[0].steps, 60]
    assert packed[0].dvar["stopped_at"] == alone[0].dvar["stopped_at"]
    for solo, pack in zip(alone, packed):
        assert solo.losses == pack.losses and solo.dvar == pack.dvar     # each set's own UNet calls
        for name in solo.embeds:
            assert torch.equal(solo.embeds[name], pack.embeds[name]), name


def test_bad_stop_is_named():
    with pytest.raises(ValueError, match="stop='early'"):
        InversionConfig(initializer_word="cat", stop="early")
