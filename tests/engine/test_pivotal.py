"""Pivotal tuning: the tuned loss falls, nothing else moves, the tuned tensors round-trip."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from tinv.engine.data import ConceptImages, cache_latents
from tinv.engine.models import tiny_ldm_parts, tiny_sd_parts
from tinv.engine.pivotal import (TUNED_FILENAME, PivotalConfig, load_tuned, pivotal_tune, save_tuned,
                          select_params)
from tinv.engine.pseudo_words import add_pseudo_word

PLACEHOLDER = "<s*>"


def _parts_with_pivot(family):
    parts = tiny_sd_parts() if family == "sd" else tiny_ldm_parts()
    add_pseudo_word(parts, PLACEHOLDER, 1, generator=torch.Generator().manual_seed(0))
    return parts


def _images(n=3):
    g = torch.Generator().manual_seed(4)
    return ConceptImages(pixels=torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, paths=[])


@pytest.fixture(scope="module", params=["sd", "ldm"])
def tuned(request):
    """Tune the cross-attention of a tiny model once; keep the before/after state."""
    parts = _parts_with_pivot(request.param)
    unet_before = {n: p.detach().clone() for n, p in parts.unet.named_parameters()}
    text_before = {n: p.detach().clone() for n, p in parts.text_encoder.named_parameters()}
    # lr far above the paper's 1e-6 so that 40 steps on a random model show a clear drop
    cfg = PivotalConfig(params="attn2", lr=2e-3, steps=40, batch_size=4, placeholder=PLACEHOLDER)
    result = pivotal_tune(parts, cache_latents(parts, _images()), cfg, progress=False)
    return parts, cfg, result, unet_before, text_before


def test_tuned_loss_on_training_latents_falls(tuned):
    _, _, result, _, _ = tuned
    assert len(result.losses) == 40
    assert result.eval_loss_after < 0.95 * result.eval_loss_before


def test_only_the_chosen_params_change(tuned):
    parts, _, result, unet_before, text_before = tuned
    assert result.tuned and all(".attn2." in n for n in result.tuned)
    for name, p in parts.unet.named_parameters():
        changed = not torch.equal(p, unet_before[name])
        assert changed == (name in result.tuned), name
        assert not p.requires_grad
    for name, p in parts.text_encoder.named_parameters():  # the pivot word stays fixed
        assert torch.equal(p, text_before[name]), name
    assert not parts.unet.training


def test_save_load_round_trip(tuned, tmp_path):
    parts, cfg, result, unet_before, _ = tuned
    path = save_tuned(parts, result, tmp_path / "embeddings", cfg)
    assert path == tmp_path / "embeddings" / TUNED_FILENAME
    assert sorted(load_file(path)) == result.tuned        # only what was tuned
    fresh = tiny_sd_parts() if parts.family == "sd" else tiny_ldm_parts()
    assert sorted(load_tuned(fresh, path.parent)) == result.tuned
    tuned_state = dict(parts.unet.named_parameters())
    for name, p in fresh.unet.named_parameters():
        expected = tuned_state[name] if name in result.tuned else unet_before[name]
        assert torch.equal(p, expected), name


def test_param_sets_select_by_name():
    unet = tiny_sd_parts().unet
    attn2, attn, every = (select_params(unet, k) for k in ("attn2", "attn", "all"))
    assert set(attn2) < set(attn) < set(every)
    assert any(".attn1." in n for n in attn) and len(every) == len(list(unet.parameters()))
    with pytest.raises(ValueError, match="'attn3'"):
        select_params(unet, "attn3")
    with pytest.raises(ValueError, match="params='attn3'"):
        PivotalConfig(params="attn3")


def test_missing_pivot_word_is_a_clear_error():
    parts = tiny_sd_parts()
    with pytest.raises(ValueError, match="<s\\*>.*not in the tokenizer"):
        pivotal_tune(parts, _images(), PivotalConfig(steps=1, placeholder=PLACEHOLDER), progress=False)


def test_load_rejects_a_foreign_file_untouched(tmp_path):
    parts = tiny_sd_parts()
    name, p = next(iter(select_params(parts.unet, "attn2").items()))
    bad = tmp_path / "bad.safetensors"
    save_file({name: torch.zeros(p.shape[0] + 1)}, bad)
    before = p.detach().clone()
    with pytest.raises(ValueError, match="bad.safetensors.*shape"):
        load_tuned(parts, bad)
    assert torch.equal(p, before)
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_tuned(parts, tmp_path / "nothing.safetensors")
