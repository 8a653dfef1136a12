"""Prior preservation's class images (tinv/engine/prior.py, tinv.harness.learned.class_images):
the model's own samples of "a photo of a <class>", drawn once per (model, prompt, n, seed) and
shared through the job store, or a folder of real images; the loop adds their loss."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from tinv.engine import prior
from tinv.engine.inversion import InversionConfig, invert
from tinv.metrics.settings import ModelSettings

CFG = dict(initializer_word="cat", batch_size=2, seed=23, prior_preservation=True, num_class_images=3)


def counting(monkeypatch) -> list:
    calls = []
    real = prior.generate

    def generate(parts, prompt, n, *a, **kw):
        calls.append((prompt, n))
        return real(parts, prompt, n, *a, **kw)
    monkeypatch.setattr(prior, "generate", generate)
    return calls


def test_class_images_are_the_models_samples_of_the_class_prompt_cached_once(make_parts, tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    cfg = InversionConfig(**CFG)
    assert cfg.class_text == "a photo of a cat"
    fresh = prior.class_images(make_parts("sd"), cfg)                     # no cache: drawn in memory
    cached = prior.class_images(make_parts("sd"), cfg, cache=tmp_path / "cls")   # drawn and written
    again = prior.class_images(make_parts("sd"), cfg, cache=tmp_path / "cls")    # read back
    assert calls == [("a photo of a cat", 3)] * 2
    assert sorted(p.name for p in (tmp_path / "cls").glob("*.png")) == ["0000.png", "0001.png", "0002.png"]
    assert torch.equal(fresh.pixels, cached.pixels) and torch.equal(cached.pixels, again.pixels)
    assert fresh.pixels.shape[0] == 3 and fresh.pixels.std() > 0.01       # real, varied images
    assert not torch.equal(fresh.pixels[0], fresh.pixels[1])               # one seed each
    # the model's own: another model draws other images
    other = prior.class_images(make_parts("sd", seed=1), cfg)
    assert not torch.equal(other.pixels, fresh.pixels)


def test_the_store_draws_a_class_once_for_every_job_and_method_of_it(make_parts, tmp_path, monkeypatch):
    from tinv.harness import learned
    calls = counting(monkeypatch)
    cfg = {"model": {"path": "tiny-sd-for-tests"}, "results_root": str(tmp_path)}
    model = ModelSettings(weights="tiny-sd-for-tests")     # the plan's typed model block: its weights' fingerprint
    plans = [SimpleNamespace(icfg=InversionConfig(**CFG, learner=learner, class_noun=True,
                                                   learner_args={"identifier": "elmo"} if learner != "word" else {}),
                             cfg=cfg, model=model) for learner in ("lora", "dreambooth", "word")]
    got = [learned.class_images(p, make_parts("sd")) for p in plans]
    assert calls == [("a photo of a cat", 3)]
    assert all(torch.equal(g.pixels, got[0].pixels) for g in got)
    folders = list((tmp_path / "jobs" / "_class_images").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("a_photo_of_a_cat-")
    # another class, or another count, is another set
    dog = SimpleNamespace(icfg=dataclasses.replace(plans[2].icfg, initializer_word="dog"), cfg=cfg, model=model)
    learned.class_images(dog, make_parts("sd"))
    assert calls[-1] == ("a photo of a dog", 3) and len(list((tmp_path / "jobs" / "_class_images").iterdir())) == 2
    assert learned.class_images(SimpleNamespace(icfg=InversionConfig(initializer_word="cat"), cfg=cfg, model=model),
                                None) is None


def test_a_folder_of_real_class_images_is_used_as_it_is(make_parts, concept_dir, tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    cfg = InversionConfig(**{**CFG, "num_class_images": 2}, class_images=str(concept_dir))
    got = prior.class_images(make_parts("sd"), cfg)
    assert calls == [] and got.pixels.shape[0] == 2         # the first n of the folder, none drawn
    with pytest.raises(ValueError, match="class_images='/no/such/folder' is not a folder"):
        InversionConfig(**CFG, class_images="/no/such/folder")
    with pytest.raises(ValueError, match="class_prompt='a photo' .needs one"):
        InversionConfig(**CFG, class_prompt="a photo")


def test_the_prior_term_joins_the_loss_with_its_weight_and_resumes(make_parts, concept, tmp_path):
    """On the paper's own word too: the term is the loop's, not a learner's."""
    plain = invert(make_parts("sd"), concept, InversionConfig(**{**CFG, "prior_preservation": False}, steps=3),
                   progress=False)
    kept = invert(make_parts("sd"), concept, InversionConfig(**CFG, steps=3), progress=False)
    assert kept.diffusion_losses[0] == plain.diffusion_losses[0]          # the same instance batch first
    assert kept.losses[0] == pytest.approx(kept.diffusion_losses[0] + kept.prior_losses[0], rel=1e-6)
    assert len(kept.prior_losses) == 3 and min(kept.prior_losses) > 1e-3 and not plain.prior_losses
    cfg = InversionConfig(**CFG, steps=6, checkpoint_every=2)
    whole = invert(make_parts("sd"), concept, cfg, progress=False)
    invert(make_parts("sd"), concept, cfg, ckpt_dir=tmp_path, progress=False, stop_at=4)
    resumed = invert(make_parts("sd"), concept, cfg, ckpt_dir=tmp_path, progress=False)
    assert resumed.losses == whole.losses and resumed.prior_losses == whole.prior_losses
