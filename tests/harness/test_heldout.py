"""Reconstruction against one fixed held-out image set per concept (appendix B, Figure 12):
the same images for every training-set size, none of them a training image, and a column
that is absent (with the reason in the row) where a concept has no held-out set."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from tinv.core.errors import InputError
from tinv.harness import concepts, plan
from tinv.harness.prompts import EvalPrompt
from tinv.methods import KINDS
from tinv.metrics import encoders, protocol
from tinv.toyworld import concepts as toy

from .conftest import FAST, TOY, one_error, rows, run_cli, sweep_name
from .test_config import _compose
from .test_metrics import typed

HELD = "reconstruction_clip_heldout"


def _cfg(*overrides: str) -> dict:
    return OmegaConf.to_container(_compose(*overrides), resolve=True)


def _plan(cfg: dict):
    return plan.make_plan(plan.effective_config(cfg), {})


def _images(folder: Path, colors) -> Path:
    folder.mkdir(parents=True)
    for i, c in enumerate(colors):
        Image.new("RGB", (32, 32), c).save(folder / f"{i}.png")
    return folder


def test_a_toy_concepts_heldout_set_is_the_same_for_every_set_size_and_no_training_image(tmp_path):
    parts = NS(resolution=32)
    got = []
    for n in (1, 5, 25):
        p = _plan(_cfg("concept=red_star", f"train_images={n}"))
        train = concepts.training_images(p, parts, tmp_path)
        held, said = concepts.heldout_images(p, parts, tmp_path)
        assert said.startswith(f"{toy.N_HELDOUT} images in ")
        got.append(held.pixels)
    assert all(torch.equal(got[0], g) for g in got[1:])
    # the largest training set shares no image with it
    flat_train = train.pixels.reshape(len(train.pixels), -1)
    for h in got[0].reshape(len(got[0]), -1):
        assert (flat_train - h).abs().amax(dim=1).min() > 0.05
    # and the evaluator embeds the same set to the same vectors whatever the size
    if TOY:
        clip = encoders.ClipEncoder.toyworld("cpu")
        a, b = clip.images((got[0] + 1) / 2), clip.images((got[2] + 1) / 2)
        assert np.array_equal(a, b) and a.shape[0] == toy.N_HELDOUT


def test_a_toy_concept_trains_on_at_most_the_images_before_its_heldout_set():
    p = _plan(_cfg("concept=red_star", f"train_images={toy.HELDOUT_FIRST + 1}"))
    with pytest.raises(InputError, match="held-out"):
        concepts.scan_images(p)


def test_a_folder_concept_has_a_heldout_set_only_with_heldout_path(tmp_path):
    train = _images(tmp_path / "cat", ["red", "blue", "green"])
    other = _images(tmp_path / "cat_more", ["yellow", "white"])
    base = ("concept=folder", f"concept.path={train}", "concept.initializer=cat")
    parts = NS(resolution=32)
    held, said = concepts.heldout_images(_plan(_cfg(*base)), parts, tmp_path)
    assert held is None and "concept.heldout_path" in said
    held, said = concepts.heldout_images(_plan(_cfg(*base, f"concept.heldout_path={other}")), parts, tmp_path)
    assert len(held) == 2 and str(other) in said
    # the held-out set may not be the training set, whole or in part
    for bad, named in ((train, "own folder"), (_images(tmp_path / "mixed", ["yellow", "red"]), "training images")):
        with pytest.raises(InputError, match=named):
            concepts.scan_images(_plan(_cfg(*base, f"concept.heldout_path={bad}")))


def test_an_unset_heldout_path_keeps_job_ids_and_inversion_keys_and_a_set_one_only_the_job_id(tmp_path):
    from tinv.harness import learned
    train = _images(tmp_path / "cat", ["red", "blue", "green"])
    other = _images(tmp_path / "cat_more", ["yellow", "white"])
    cfg = _cfg("concept=folder", f"concept.path={train}", "concept.initializer=cat")
    assert cfg["concept"]["heldout_path"] is None
    bare = {**cfg, "concept": {k: v for k, v in cfg["concept"].items() if k != "heldout_path"}}
    assert plan.job_location(cfg)[0] == plan.job_location(bare)[0]        # rows from before the setting
    assert learned.key(_plan(cfg)) == learned.key(_plan(bare))
    held = _cfg("concept=folder", f"concept.path={train}", "concept.initializer=cat", f"concept.heldout_path={other}")
    assert plan.job_location(held)[0] != plan.job_location(cfg)[0]         # another row (one more column)
    assert learned.key(_plan(held)) == learned.key(_plan(cfg))             # the same inversion, reused
    first = plan.job_location(held)[0]
    Image.new("RGB", (32, 32), "black").save(other / "0.png")             # new held-out images: a new job
    assert plan.job_location(held)[0] != first
    default = _cfg()                                                       # the default job, toy concept
    assert "heldout_path" not in default["concept"]


def test_heldout_reconstruction_scores_the_samples_against_the_heldout_set_whatever_the_training_set(identity_encoder):
    e = torch.eye(3).reshape(3, 3, 1, 1)
    samples = e[[0, 0]]                       # both samples draw image 0
    heldout = e[[0, 1]]                       # half the held-out set is image 0
    plan_ = NS(kind=KINDS["learned word"], concept=NS(initializer="star"), prompts=[EvalPrompt("{} at night")],
               **typed(20), recon=NS(template="A photo of {}"))   # the typed settings make_plan builds
    cells = [NS(prompt=-1, images=samples, text="r"), NS(prompt=0, images=samples, text="e")]
    small, large = e[[0]], e[[0, 1, 2, 2]]    # two training-set sizes
    got = [protocol.evaluate(plan_, cells, train, "cpu", heldout)["metrics"] for train in (small, large)]
    assert [m["reconstruction_clip"] for m in got] == pytest.approx([1.0, 0.25])   # against its own images
    assert [m[HELD] for m in got] == pytest.approx([0.5, 0.5])                    # against the fixed set
    assert HELD not in protocol.evaluate(plan_, cells, small, "cpu")["metrics"]     # none given: no column


# ----------------------------------------------------------------------------- end to end
def test_a_toy_job_with_two_training_images_writes_the_heldout_column(runs):
    res = run_cli([*FAST, "concept=red_star", "train_images=2"], runs)
    assert res.returncode == 0, res.stderr[-3000:]
    [row] = rows(runs)
    assert row["concept"]["n_images"] == 2
    value = row["metrics"][HELD]
    assert -1.0 <= value <= 1.0 and value != row["metrics"]["reconstruction_clip"]
    lo, hi = row["metrics_ci"][HELD]
    assert lo <= value <= hi
    assert row["eval_protocol"]["reconstruction_heldout"].startswith(f"{toy.N_HELDOUT} images in ")
    [rec] = [p for p in row["per_prompt"] if p["role"] == "reconstruction"]
    assert rec[HELD] == value


def test_a_folder_concept_writes_the_column_with_heldout_path_and_says_why_not_without(runs, tmp_path):
    rng = np.random.default_rng(0)
    def noisy(folder, n):
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        return folder
    train, other = noisy(tmp_path / "cat", 3), noisy(tmp_path / "cat_more", 2)
    res = run_cli(["-m", *FAST, "concept=folder", f"concept.path={train}", "concept.initializer=cat",
                   f"concept.heldout_path=null,{other}"], runs)      # one process, the same inversion
    assert res.returncode == 0, res.stderr[-3000:]
    with_, without = sorted(rows(runs, sweep_name(res)), key=lambda r: HELD in r["metrics"], reverse=True)
    assert isinstance(with_["metrics"][HELD], float)
    assert with_["eval_protocol"]["reconstruction_heldout"] == f"2 images in {other}"
    assert HELD not in without["metrics"] and "concept.heldout_path" in without["eval_protocol"]["reconstruction_heldout"]
    assert without["training"]["embedding_dist_init"] == with_["training"]["embedding_dist_init"]   # one inversion


def test_a_heldout_path_that_is_the_training_folder_is_one_error_before_any_work(runs, tmp_path):
    train = _images(tmp_path / "cat", ["red", "blue", "green"])
    line = one_error(run_cli([*FAST, "concept=folder", f"concept.path={train}", "concept.initializer=cat",
                              f"concept.heldout_path={train}"], runs), runs)
    assert "concept.heldout_path" in line
