"""The section 5.1 metrics on embeddings whose answers are known by hand."""
from __future__ import annotations

import numpy as np
import pytest

from tinv.harness.prompts import EvalPrompt
from tinv.methods import KINDS
from tinv.metrics import bootstrap, scores


def typed(n_boot: int, evaluator: str = "toyworld", dino: bool = False, clip: dict | None = None) -> dict:
    """A plan's typed evaluation and model settings (tinv.metrics.settings), as make_plan builds them."""
    from tinv.metrics.settings import EvalSettings, ModelSettings
    return {"eval": EvalSettings(seed=0, num_samples=1, steps=1, guidance=1.0, eta=0.0, batch_size=1,
                                 bootstrap_n=n_boot, bootstrap_seed=0, clip=clip),
            "model": ModelSettings(weights="w", evaluator=evaluator, dino=dino)}


def test_editability_paper_and_public_code_differ_as_they_should():
    # two samples at +-45 degrees around the text direction
    t = np.array([1.0, 0.0])
    emb = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2)
    e = scores.editability([(emb, t)], n_boot=200, seed=0)
    assert e["persample"]["value"] == pytest.approx(np.sqrt(0.5))   # mean of per-sample cosines
    assert e["meanemb"]["value"] == pytest.approx(1.0)              # cosine of the mean embedding
    # per-sample shares average exactly to each variant's value
    for v in e.values():
        assert np.mean(v["scores"]) == pytest.approx(v["value"])


def test_editability_averages_over_cells():
    t = np.array([1.0, 0.0])
    good, bad = np.array([[1.0, 0.0]] * 3), np.array([[0.0, 1.0]] * 3)
    e = scores.editability([(good, t), (bad, t)], n_boot=100, seed=0)
    assert e["persample"]["cells"] == pytest.approx([1.0, 0.0])
    assert e["persample"]["value"] == pytest.approx(0.5)


def test_reconstruction_is_the_mean_over_all_pairs():
    train = np.array([[1.0, 0.0], [0.0, 1.0]])
    samples = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    r = scores.reconstruction([scores.pair_matrix(train, samples)], n_boot=100, seed=0)
    assert r["value"] == pytest.approx(0.5)          # (1 + 0) / 2 for every sample
    assert r["scores"] == pytest.approx([0.5] * 3)


def test_image_only_never_pairs_an_image_with_itself():
    train = np.eye(3)
    with_self = scores.pair_matrix(train, train)
    without = scores.pair_matrix(train, train, exclude_self=True)
    assert np.nanmean(with_self) == pytest.approx(1 / 3)
    assert np.nanmean(without) == pytest.approx(0.0)


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0.3, 0.1, 16), rng.normal(0.3, 0.1, 1024)
    lo_s, hi_s = bootstrap.mean_ci([small], n=2000, seed=1)
    lo_l, hi_l = bootstrap.mean_ci([large], n=2000, seed=1)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 4     # ~ 1/sqrt(64) as wide
    assert bootstrap.mean_ci([small], n=500, seed=3) == bootstrap.mean_ci([small], n=500, seed=3)


def test_meanemb_interval_resamples_embeddings():
    rng = np.random.default_rng(0)
    t = np.array([1.0, 0.0, 0.0])
    emb = rng.normal([1.0, 0.0, 0.0], 0.8, size=(64, 3))
    e = scores.editability([(emb, t)], n_boot=1000, seed=0)
    lo, hi = e["meanemb"]["ci"]
    assert lo < e["meanemb"]["value"] < hi and hi - lo > 0.01


@pytest.mark.parametrize("method, expected", [
    ({"name": "image_only", "learns": False, "reference": "image_only"}, 0.0),
    ({"name": "bipartite_inversion", "learns": True, "bipartite": True}, 0.0),   # regenerations of each image
    ({"name": "single_word", "learns": True}, 1 / 3),                            # fresh samples: every pair counts
])
def test_evaluate_leaves_out_self_pairs_where_sample_i_is_training_image_i(identity_encoder, method, expected):
    from types import SimpleNamespace as NS

    import torch

    from tinv.metrics import encoders, protocol

    train = torch.eye(3).reshape(3, 3, 1, 1)          # three orthogonal "images"
    prompt = EvalPrompt("a photo of {} at night")
    from tinv.methods import kind_of
    plan = NS(kind=kind_of(method), concept=NS(initializer="star"), **typed(50),
              prompts=[prompt], recon=NS(template="A photo of {}"))
    cells = [NS(prompt=-1, images=train.clone(), text="A photo of <S*>"),
             NS(prompt=0, images=train.clone(), text="a photo of <S*> at night")]
    out = protocol.evaluate(plan, cells, train, "cpu")
    assert out["metrics"]["reconstruction_clip"] == pytest.approx(expected)


def test_editability_per_difficulty_level_averages_its_own_prompts(monkeypatch):
    """Rows carry editability for prompts asking one change, two, three or more: each level's
    value is the mean over its own prompts' cells (a text embedding per prompt sets it here)."""
    from types import SimpleNamespace as NS

    import torch

    from tinv.metrics import encoders, protocol

    class Fixed:   # every image embeds to e0; prompt k's text to cos = k / 10 with e0
        def images(self, x):
            return np.tile([1.0, 0.0], (len(x), 1))

        def texts(self, texts):
            return np.array([[int(t.split()[-1]) / 10, np.sqrt(1 - (int(t.split()[-1]) / 10) ** 2)] for t in texts])

    monkeypatch.setattr(encoders, "cached", lambda *a, **k: Fixed())
    asked = [{"style": "sketch"}, {"size": "small", "count": "two"}, {"style": "pixel"},
             {"style": "sketch", "size": "small", "background": "sky", "count": "two"}]
    prompts = [EvalPrompt(f"{{}} {k}", attributes=a) for k, a in enumerate(asked, 1)]
    plan = NS(kind=KINDS["learned word"], concept=NS(initializer="star"),
              **typed(20), prompts=prompts, recon=NS(template="A photo of {}"))
    train = torch.zeros(2, 3, 1, 1)
    cells = [NS(prompt=-1, images=train, text="r")] + [NS(prompt=i, images=train, text=str(i)) for i in range(4)]
    m = protocol.evaluate(plan, cells, train, "cpu")["metrics"]
    assert m["editability_clip_meanemb_d1"] == pytest.approx((0.1 + 0.3) / 2)
    assert m["editability_clip_meanemb_d2"] == pytest.approx(0.2)
    assert m["editability_clip_meanemb_d3"] == pytest.approx(0.4)
    assert m["editability_clip_meanemb"] == pytest.approx(0.25)


def test_dreambench_metrics_as_dreambench_computes_them(monkeypatch):
    """CLIP-I: every edit prompt's samples against the real images; CLIP-T: each prompt's
    text, S* read as the class word, against its samples; both on the CLIPScore scale too.
    The truth is set by construction: orthogonal images, texts that point at one of them."""
    from types import SimpleNamespace as NS

    import torch

    from tinv.metrics import encoders, protocol

    class Identity:
        def images(self, x):
            return np.asarray(x, dtype=float).reshape(len(x), -1)

        def texts(self, texts):
            seen.extend(texts)      # "a star at night" -> axis 0, anything else -> -axis 1
            return np.array([[1.0, 0, 0] if t == "a star at night" else [0, -1.0, 0] for t in texts])

    seen: list[str] = []
    monkeypatch.setattr(encoders, "cached", lambda *a, **k: Identity())
    eye = torch.eye(3).reshape(3, 3, 1, 1)
    train = eye[:2]                                       # real images: axes 0 and 1
    prompts = [EvalPrompt("a {} at night"), EvalPrompt("a {} on the moon")]
    plan = NS(kind=KINDS["learned word"], concept=NS(initializer="star"), prompts=prompts,
              **typed(20), recon=NS(template="A photo of {}"))
    cells = [NS(prompt=-1, images=train, text="r"),
             NS(prompt=0, images=eye[[0, 0]], text="a <S*> at night"),      # both samples on axis 0
             NS(prompt=1, images=eye[[1, 2]], text="a <S*> on the moon")]   # axis 1 and axis 2
    m = protocol.evaluate(plan, cells, train, "cpu")["metrics"]
    assert "a star at night" in seen and "a star on the moon" in seen      # S* read as the class word
    # CLIP-I: prompt 0's pairs (0,0),(0,0),(1,0),(1,0) -> 0.5; prompt 1's (0,1),(0,2),(1,1),(1,2) -> 0.25
    assert m["dreambench_clip_i"] == pytest.approx((0.5 + 0.25) / 2)
    # CLIP-T: prompt 0's text is axis 0 -> 1, 1; prompt 1's is -axis 1 -> -1, 0
    assert m["dreambench_clip_t"] == pytest.approx((1.0 + (-0.5)) / 2)
    assert m["dreambench_clip_t_clipscore"] == pytest.approx((2.5 + 0.0) / 2)   # negatives clipped to 0
    assert m["dreambench_clip_i_clipscore"] == pytest.approx(2.5 * m["dreambench_clip_i"])


def test_toy_worlds_dino_is_its_clip_image_tower_short_of_the_projection_and_tells_concepts_apart():
    """The positive control of the toy world's DINO stand-in: on the shipped evaluator, the
    training images of one concept are closer to each other than to any other concept's, by
    a wide margin, and the similarities are not CLIP-I's (another space, not a renamed copy)."""
    from pathlib import Path

    import torch
    from PIL import Image

    from tinv.metrics import encoders
    from tinv.toyworld import concepts

    folders = sorted(p for p in Path(concepts.__file__).parent.joinpath("concepts").iterdir() if p.is_dir())
    images = [torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) / 255.0
                           for f in sorted(d.glob("*.png"))]) for d in folders]
    tower = encoders.TowerEncoder.toyworld("cpu")
    clip = encoders.cached(encoders.ClipEncoder.toyworld, "cpu")
    emb = [tower.images(x) for x in images]
    assert emb[0].shape[1] != clip.images(images[0]).shape[1]           # the tower's width, not the joint space
    for i, e in enumerate(emb):
        within = (e @ e.T)[~np.eye(len(e), dtype=bool)].mean()
        nearest_other = max((e @ f.T).mean() for j, f in enumerate(emb) if j != i)
        assert within > nearest_other, folders[i].name
    within = np.mean([(e @ e.T)[~np.eye(len(e), dtype=bool)].mean() for e in emb])
    across = np.mean([(e @ f.T).mean() for i, e in enumerate(emb) for j, f in enumerate(emb) if i != j])
    assert within - across > 0.2


@pytest.mark.parametrize("evaluator, dino, expected", [("toyworld", False, True), ("open_clip", False, False)])
def test_dino_rows_on_the_toy_world_and_where_a_model_runs_dino(monkeypatch, evaluator, dino, expected):
    """The toy world always scores DINO (its stand-in); a real model only with `model.dino`."""
    from types import SimpleNamespace as NS

    import torch

    from tinv.metrics import encoders, protocol

    made = []

    class Identity:
        def images(self, x):
            return np.asarray(x, dtype=float).reshape(len(x), -1)

        def texts(self, texts):
            return np.ones((len(texts), 3))

    monkeypatch.setattr(encoders, "cached", lambda factory, *a: made.append(factory) or Identity())
    eye = torch.eye(3).reshape(3, 3, 1, 1)
    plan = NS(kind=KINDS["learned word"], concept=NS(initializer="star"), prompts=[EvalPrompt("a {} at night")],
              **typed(20, evaluator, dino, clip={"model": "x", "pretrained": None}),
              recon=NS(template="A photo of {}"))
    cells = [NS(prompt=-1, images=eye, text="r"), NS(prompt=0, images=eye, text="a <S*> at night")]
    m = protocol.evaluate(plan, cells, eye, "cpu")["metrics"]
    assert ({"reconstruction_dino", "dreambench_dino"} <= set(m)) is expected
    assert (encoders.TowerEncoder.toyworld in made) is expected
