"""A sweep over evaluation settings only inverts each concept once (tinv/harness/learned.py): jobs
that differ only in eval.* reuse one stored inversion (and pivotal-tuned UNet), say so in
their timings, and get exactly what a fresh inversion of their own gives; under the
packed launcher and with two processes at once, too. Setups that start from the single word
(bipartite inversion, pivotal tuning) reuse its word the same way; a setup that learns
another word does not."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from tinv.engine import inversion, pivotal

from tinv.harness import joblock, learned

from tinv.launch import packing
from tinv.engine.embeddings_io import read_embeddings
from tinv.harness.job import run_job
from tinv.harness.plan import job_location, make_plan

from .conftest import FAST, REPO, rows, run_cli
from .test_config import _compose


def _cfg(root: Path, *extra: str) -> dict:
    return OmegaConf.to_container(_compose(*FAST, "cpu_threads=1", f"results_root={root}", *extra), resolve=True)


@pytest.fixture
def counted(monkeypatch):
    """How often this process inverts and pivotal-tunes."""
    calls = {"invert": 0, "pivotal": 0}
    real_invert, real_tune = inversion.invert_packed, pivotal.pivotal_tune

    def invert(*a, **k):
        calls["invert"] += 1
        return real_invert(*a, **k)

    def tune(*a, **k):
        calls["pivotal"] += 1
        return real_tune(*a, **k)
    monkeypatch.setattr(inversion, "invert_packed", invert)
    monkeypatch.setattr(pivotal, "pivotal_tune", tune)
    return calls


def _learned(row: dict) -> dict[str, torch.Tensor]:
    folder = Path(row["folder"])
    out = dict(read_embeddings(folder / row["artifacts"]["embeddings"]["authors"]))
    tuned = folder / "embeddings" / pivotal.TUNED_FILENAME
    if tuned.is_file():
        out.update({f"unet.{k}": v for k, v in load_file(tuned).items()})
    return out


@pytest.mark.parametrize("method", ["single_word", "pivotal_tuning"])
def test_jobs_differing_only_in_eval_run_one_inversion_identical_to_a_fresh_one(method, tmp_path, counted):
    root = tmp_path / "runs"
    first = run_job(_cfg(root, f"method={method}", "eval.guidance=5.0"))
    other_eval = (f"method={method}", "eval.guidance=2.0", "eval.num_samples=2")
    second = run_job(_cfg(root, *other_eval))
    assert first["job_id"] != second["job_id"]                 # two rows ...
    assert counted == {"invert": 1, "pivotal": int(method == "pivotal_tuning")}   # ... one inversion
    assert "invert_reused_from" not in first["timings"] and first["timings"]["invert_s"] > 0
    assert second["timings"]["invert_reused_from"] == first["job_id"] and second["timings"]["invert_s"] == 0
    assert second["training"] == first["training"]
    assert len(second["metrics"]) and second["per_prompt"][0]["n"] == 2   # its own evaluation

    # the same job with nothing stored (another results root): a fresh inversion, same bits
    fresh = run_job(_cfg(tmp_path / "fresh", *other_eval))
    assert counted["invert"] == 2 and "invert_reused_from" not in fresh["timings"]
    assert fresh["job_id"] == second["job_id"]
    got, want = _learned(second), _learned(fresh)
    assert got.keys() == want.keys() and "<S*>" in got
    assert (method == "pivotal_tuning") == any(k.startswith("unet.") for k in got)
    for name in want:
        assert torch.equal(got[name], want[name]), name
    assert second["metrics"] == fresh["metrics"]           # reuse changes nothing downstream

    # a rerun finds its row; nothing is inverted, nothing is rewritten
    assert run_job(_cfg(root, *other_eval)) == second and counted["invert"] == 2


def test_bipartite_and_pivotal_start_from_the_single_words_word_and_equal_their_fresh_rows(tmp_path, counted):
    root = tmp_path / "runs"
    single = run_job(_cfg(root, "method=single_word"))
    bipartite = run_job(_cfg(root, "method=bipartite_inversion"))
    tuned = run_job(_cfg(root, "method=pivotal_tuning"))
    assert counted == {"invert": 1, "pivotal": 1}                     # one word for three setups
    assert bipartite["timings"]["invert_reused_from"] == single["job_id"] and bipartite["timings"]["invert_s"] == 0
    assert "invert_reused_from" not in tuned["timings"]              # the tuning ran here ...
    assert tuned["timings"]["invert_word_from"] == single["job_id"] and tuned["timings"]["invert_s"] > 0  # ... from its word
    assert torch.equal(_learned(bipartite)["<S*>"], _learned(single)["<S*>"])
    words = sorted(p.parent.name for p in (root / "jobs" / "_inversions").glob("*/learned.pt"))
    assert len(words) == 2 and sum("-word-" in w for w in words) == 1 and sum("-pivotal_tuning-" in w for w in words) == 1

    # each alone in an empty store learns its own word: the same bits, the same row
    for method, shared in (("bipartite_inversion", bipartite), ("pivotal_tuning", tuned)):
        before = dict(counted)
        fresh = run_job(_cfg(tmp_path / method, f"method={method}"))
        assert counted["invert"] == before["invert"] + 1 and fresh["job_id"] == shared["job_id"]
        got, want = _learned(shared), _learned(fresh)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
        assert shared["metrics"] == fresh["metrics"]
        assert shared["training"]["fixed_batch_curve"] == fresh["training"]["fixed_batch_curve"]

    # the control: a setup that learns another word (regularized) inverts its own
    before = counted["invert"]
    reg = run_job(_cfg(root, "method=regularized"))
    assert counted["invert"] == before + 1 and "invert_reused_from" not in reg["timings"]
    assert reg["training"] != single["training"]


def test_an_unreadable_stored_inversion_is_computed_again(tmp_path, counted):
    root = tmp_path / "runs"
    first = run_job(_cfg(root, "eval.guidance=5.0"))
    [stored] = (root / "jobs" / "_inversions").glob("*/learned.pt")
    stored.write_bytes(b"half a file")                   # what no atomic write leaves, but a disk might
    second = run_job(_cfg(root, "eval.guidance=2.0"))
    assert counted["invert"] == 2 and "invert_reused_from" not in second["timings"]
    third = run_job(_cfg(root, "eval.guidance=3.0"))     # the artifact was written again, whole
    assert counted["invert"] == 2 and third["timings"]["invert_reused_from"] == second["job_id"]
    assert first["training"] == second["training"] == third["training"]


def test_the_packed_launcher_inverts_a_concept_once_across_eval_settings(runs):
    sweep = ["-m", "method=single_word", "concept=red_star,blue_heart", "eval.guidance=5.0,2.0", *FAST,
             "cpu_threads=1", "sweep=guidance", "hydra/launcher=packed", "hydra.launcher.pack=4"]
    res = run_cli(sweep, runs)
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert log.count("packed inversion of 2 jobs") == 1           # red_star and blue_heart, once each
    found = rows(runs, "guidance")
    assert len(found) == 4 and {r["status"] for r in found} == {"ok"}
    by_concept: dict[str, list[dict]] = {}
    for r in found:
        by_concept.setdefault(r["concept"]["name"], []).append(r)
    for concept, pair in by_concept.items():
        made = [r for r in pair if "invert_reused_from" not in r["timings"]]
        reused = [r for r in pair if "invert_reused_from" in r["timings"]]
        assert len(made) == len(reused) == 1, concept
        assert "packed_with" in made[0]["timings"]                  # its share of the packed inversion
        assert reused[0]["timings"]["invert_reused_from"] == made[0]["job_id"]
        assert reused[0]["config"]["eval"]["guidance"] != made[0]["config"]["eval"]["guidance"]
    assert len(list((runs / "jobs" / "_inversions").glob("*/learned.pt"))) == 2


def test_schedule_puts_a_job_that_reuses_an_inversion_in_the_unit_that_makes_it(tmp_path):
    cfgs = [_cfg(tmp_path, "concept=red_star", "eval.guidance=5.0"),
            _cfg(tmp_path, "concept=blue_heart", "eval.guidance=5.0"),
            _cfg(tmp_path, "concept=red_star", "eval.guidance=2.0")]
    assert packing.schedule(cfgs, 2) == [[0, 1, 2]]      # 2 inversions in the pack; job 2 rides
    assert packing.schedule(cfgs, 1) == [[0, 2], [1]]    # after the job that makes its inversion
    setups = [_cfg(tmp_path, f"method={m}") for m in ("single_word", "bipartite_inversion", "regularized",
                                                       "pivotal_tuning")]
    assert packing.schedule(setups, 1) == [[0, 1, 3], [2]]   # the setups of the single word's word ride with it


def test_two_processes_needing_one_inversion_compute_it_once(runs):
    # long enough to be caught inverting
    base = [a for a in FAST if a != "model.inversion.steps=3"] + ["model.inversion.steps=300", "cpu_threads=1"]
    env = {**os.environ, "TINV_RUNS": str(runs)}

    def start(guidance: str):
        return subprocess.Popen([sys.executable, str(REPO / "run.py"), *base, f"eval.guidance={guidance}"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = start("5.0")
    deadline = time.time() + 300
    while not list((runs / "jobs" / "_inversions").glob(".*.lock")) and time.time() < deadline:
        assert first.poll() is None, first.communicate()[0][-3000:]
        time.sleep(0.1)
    second = start("2.0")              # another job, the same inversion: it must wait for it
    out1, out2 = (p.communicate(timeout=900)[0] for p in (first, second))
    assert first.returncode == 0, out1[-3000:]
    assert second.returncode == 0, out2[-3000:]
    assert "waiting for it" in out2 and f"pid {first.pid}" in out2 and "inversion reused from job" in out2
    a, b = sorted(rows(runs), key=lambda r: "invert_reused_from" in r["timings"])
    assert a["config"]["eval"]["guidance"] == 5.0 and b["timings"]["invert_reused_from"] == a["job_id"]
    assert not list((runs / "jobs" / "_inversions").glob(".*.lock"))


def _hold(folder: str, seconds: float, ready) -> None:
    with joblock.hold(Path(folder), "elsewhere"):
        ready.set()
        time.sleep(seconds)


def test_a_packed_inversion_leaves_out_a_job_another_process_is_computing(tmp_path):
    cfgs = [_cfg(tmp_path, "concept=red_star"), _cfg(tmp_path, "concept=blue_heart")]
    folders = [job_location(c)[1] for c in cfgs]
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    owner = ctx.Process(target=_hold, args=(str(learned.folder(make_plan(cfgs[0], {}))), 120, ready))
    owner.start()
    try:
        assert ready.wait(120)
        with packing.packed_inversion(cfgs) as shares:     # red_star's inversion is being computed elsewhere
            assert shares.take(folders[0]) is None and shares.take(folders[1]) is None   # nothing packed
    finally:
        owner.kill()
        owner.join(30)
    with packing.packed_inversion(cfgs) as shares:         # its owner is gone: the two are packed
        assert shares.take(folders[0]) and shares.take(folders[1])
