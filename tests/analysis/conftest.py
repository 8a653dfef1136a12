"""Fixture sweeps: job folders holding result rows shaped like docs/DESIGN.md's.

Scores are drawn around known per-setup means, so the tests can check that a figure
puts each setup where its data are and that the intervals cover the truth.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from analysis import collect

CONCEPTS = ("red_star", "blue_cube", "green_ring", "cat_toy")
PROMPTS = ("a photo of {} on the moon", "an oil painting of {}", "elmo holding a {}")
SAMPLES_PER_PROMPT = 6
# setup -> (true reconstruction, true editability), roughly the paper's curve
TRUTH = {
    "single_word": (0.78, 0.26), "two_word": (0.80, 0.22), "three_word": (0.81, 0.21),
    "progressive": (0.79, 0.23), "regularized": (0.74, 0.28), "per_image_tokens": (0.80, 0.20),
    "high_lr": (0.82, 0.19), "low_lr": (0.66, 0.30), "pivotal_tuning": (0.84, 0.18),
    "bipartite_inversion": (0.83, 0.20), "human_captions_short": (0.64, 0.29),
    "human_captions_long": (0.67, 0.28), "image_only": (0.88, 0.15), "prompt_only": (0.55, 0.32),
}
NOISE = 0.03


def make_row(method: str, concept: str, seed: int = 23, rng=None, rec_mean=None, edit_mean=None,
             status: str = "ok", num_images: int = 5, guidance: float = 5.0, artifacts=None,
             concept_folder: str | None = None) -> dict:
    """A result row as tinv/harness/job.py writes it, with per-sample scores."""
    rng = rng or np.random.default_rng(0)
    r0, e0 = TRUTH.get(method, (0.7, 0.25))
    r0 = r0 if rec_mean is None else rec_mean
    e0 = e0 if edit_mean is None else edit_mean
    n = SAMPLES_PER_PROMPT * len(PROMPTS)
    scores = {
        "reconstruction_clip": (r0 + NOISE * rng.standard_normal(n)).tolist(),
        "editability_clip_persample": (e0 + NOISE * rng.standard_normal(n)).tolist(),
        "editability_clip_meanemb": (e0 + 0.01 + NOISE * rng.standard_normal(len(PROMPTS))).tolist(),
        "reconstruction_dino": (r0 - 0.2 + NOISE * rng.standard_normal(n)).tolist(),
        "reconstruction_oracle": rng.binomial(1, min(r0, 1.0), n).astype(float).tolist(),
        "editability_oracle": rng.binomial(1, min(e0 * 3, 1.0), n).astype(float).tolist(),
    }
    metrics = {k: float(np.mean(v)) for k, v in scores.items()}
    ok = status == "ok"
    return {
        "schema": 1, "job_id": f"{concept}-{method}-{seed}-{num_images}-{guidance}", "status": status,
        "error": None if ok else "RuntimeError: CUDA out of memory", "sweep": "fixture",
        "choices": {"method": method, "concept": concept, "model": "toyworld", "eval": "paper",
                    "logger": "none", "hydra/launcher": "basic"},
        "config": {"seed": seed, "sweep": "fixture", "results_root": "runs",
                   "method": {"name": method, "inversion": {"lr": 5e-3, "num_vectors": 1}},
                   "concept": {"name": concept, "kind": "object", "path": f"toyworld/concepts/{concept}",
                               "initializer": "star"},
                   "eval": {"name": "paper", "guidance": guidance, "steps": 50,
                            "num_samples": SAMPLES_PER_PROMPT}},
        "folder": "ignored",
        "metrics": metrics if ok else {},
        "metrics_ci": {k: [v - 0.01, v + 0.01] for k, v in metrics.items()} if ok else {},
        "per_prompt": [{"role": "reconstruction", "prompt": "A photo of {}", "n": SAMPLES_PER_PROMPT}] + [
            {"role": "editability", "prompt": p.format("{}"), "text": p.format(""),
             "n": SAMPLES_PER_PROMPT, "editability_clip_meanemb": scores["editability_clip_meanemb"][i]}
            for i, p in enumerate(PROMPTS)],
        "scores": scores if ok else {},
        "timings": {"invert_s": 1.0, "sample_s": 2.0, "evaluate_s": 0.5, "total_s": 3.5},
        "provenance": {"sha": "abc123", "dirty": False, "device": "cpu", "versions": {"torch": "2"}},
        "artifacts": artifacts or {},
        "training": {"steps": 100, "lr_effective": 0.04},
        "concept": {"name": concept, "kind": "object", "folder": concept_folder or f"/nowhere/{concept}",
                    "initializer": "star", "n_images": num_images},
        "traceback": None if ok else "Traceback (most recent call last): ...",
    }


def write_row(job_dir: Path, row: dict) -> Path:
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "result.json").write_text(json.dumps(row))
    return job_dir


def sample_color(ci: int, key: int, k: int) -> tuple[int, int, int]:
    """A distinct color per (concept, cell, sample), so tests can find each tile."""
    return (20 + 50 * ci) % 256, (30 + 60 * key) % 256, (40 + 35 * k) % 256


def _save_training(folder: Path, n: int, ci: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((32, 32, 3), (200, 40 * ci, 10 * i), np.uint8)).save(folder / f"{i:02d}.png")


def _save_grids(job: Path, ci: int) -> dict[str, str]:
    """Sample grids exactly as tinv/harness/job.py's save_grids writes them."""
    from torchvision.utils import save_image
    (job / "samples").mkdir(parents=True, exist_ok=True)
    out = {}
    for key_i, key in enumerate(["reconstruction"] + [f"p{i:02d}" for i in range(len(PROMPTS))]):
        imgs = torch.stack([torch.tensor(sample_color(ci, key_i, k), dtype=torch.float32)[:, None, None]
                            .expand(3, 16, 16) / 255 for k in range(SAMPLES_PER_PROMPT)])
        save_image(imgs, job / "samples" / f"{key}.png", nrow=min(8, len(imgs)), padding=1)
        out[key] = f"samples/{key}.png"
    return out


def make_sweep(root: Path, setsize: bool = True, guidance: bool = True, images: bool = True) -> Path:
    """A sweep folder: every setup x concept, a set-size sweep on one concept, a guidance
    sweep of the two appendix-A methods; with sample and training images for the gallery."""
    rng = np.random.default_rng(1)
    sweep = root / "sweep"
    for ci, concept in enumerate(CONCEPTS):
        train = root / "concepts" / concept
        if images:
            _save_training(train, 4, ci)
        for method in TRUTH:
            job = sweep / f"{concept}-{method}"
            artifacts = {"samples": _save_grids(job, ci)} if images else {}
            write_row(job, make_row(method, concept, rng=rng, artifacts=artifacts, concept_folder=str(train)))
    if setsize:  # Figure 12: one concept, editability falls with the set size
        for n in (1, 2, 5, 10, 25):
            write_row(sweep / f"setsize-{n}", make_row("single_word", "red_star", rng=rng, num_images=n,
                                                        rec_mean=0.75 + 0.01 * np.log(n),
                                                        edit_mean=0.30 - 0.02 * np.log(n)))
    if guidance:  # Figure 11: both methods over s = 1..10
        for method in ("bipartite_inversion", "pivotal_tuning"):
            for s in (1.0, 2.5, 5.0, 7.5, 10.0):
                for concept in CONCEPTS[:2]:
                    write_row(sweep / f"guid-{method}-{s}-{concept}",
                              make_row(method, concept, rng=rng, guidance=s,
                                       edit_mean=0.15 + 0.01 * s, rec_mean=0.9 - 0.01 * s))
    return sweep


@pytest.fixture(scope="session")
def sweep_dir(tmp_path_factory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("analysis"))


@pytest.fixture(scope="session")
def results_csv(sweep_dir, tmp_path_factory) -> Path:
    """The fixture CSV: written by collect.py itself from the fixture sweep."""
    out = tmp_path_factory.mktemp("csv") / "results.csv"
    assert collect.main([str(sweep_dir), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tradeoff_csv(tmp_path_factory) -> Path:
    """Only the Figure-10 grid: every setup x concept, one seed."""
    root = tmp_path_factory.mktemp("tradeoff")
    sweep = make_sweep(root, setsize=False, guidance=False, images=False)
    out = root / "results.csv"
    assert collect.main([str(sweep), "-o", str(out)]) == 0
    return out
