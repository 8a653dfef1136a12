"""Sweeps through `hydra/launcher=slurm` on the real single-node SLURM of scripts/slurm/.

One 4-job sweep (2 concepts x 2 methods, toy model, fast eval) is shared: its rows are
checked, it is resubmitted (nothing may run again), packed, and it is the uninterrupted
reference for a job that is preempted mid-inversion and requeued.
"""
from __future__ import annotations

import itertools
import json
import math
import pickle
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.cluster.conftest import (committed_conf, first_step_after_last_start, job_env, rows, run_py,
                                    sacct_times, start_run_py, submitit_tasks, task_log, wait_for)
from tinv.engine import checkpoint
from tinv.engine.embeddings_io import read_embeddings
from tinv.engine.inversion import CHECKPOINT_NAME
from tinv.toyworld import MODEL_DIR

pytestmark = pytest.mark.slurm

CONCEPTS = ("red_star", "blue_heart")
METHODS = ("single_word", "two_word")
# Short inversions (batch 1) keep the suite to minutes on 2 cores; the preemption test
# signals right after the first checkpoint, so STEPS - CKPT_EVERY steps are its margin.
STEPS, CKPT_EVERY = 20, 2
# cpu_threads=1: "auto" follows the load average, and the preemption test compares scores
# with the grid's at 1e-5; a different thread count can move them (likely why one full run
# failed there once).
JOB = ("model=toyworld", "eval=fast", "logger=none", "progress=true", "cpu_threads=1",
       f"model.inversion.steps={STEPS}", "model.inversion.batch_size=1",
       f"++model.inversion.checkpoint_every={CKPT_EVERY}")
SLURM = (
    "hydra/launcher=slurm",
    # the preset asks for a real GPU node's CPUs and memory; the test node is 2 cores
    "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=20",
    "hydra.launcher.stderr_to_stdout=true",
    # CI runs in a clean clone, a developer's checkout is dirty; the guard has its own test
    "hydra.launcher.allow_dirty=true",
)


def sweep_args(root: Path, sweep: str, hydra_dir: Path, concepts=CONCEPTS, methods=METHODS,
               launcher=SLURM, model_dir: Path | None = None):
    # A fresh hydra.sweep.dir per submission: its .submitit folder is keyed by SLURM job
    # id, and ids start again at 1 whenever the test cluster's state is wiped.
    model = (f"model.path={model_dir}",) if model_dir else ()
    return (*JOB, *model, *launcher, f"concept={','.join(concepts)}", f"method={','.join(methods)}",
            f"results_root={root}", f"sweep={sweep}", f"hydra.sweep.dir={hydra_dir}")


@pytest.fixture(scope="module")
def grid(slurm, tmp_path_factory):
    """The 4-job sweep, run once to the end."""
    tmp = tmp_path_factory.mktemp("grid")
    # A private copy of the toy weights: the preemption test compares against this sweep,
    # and in a working checkout the shipped weights may be retrained in between.
    model_dir = Path(shutil.copytree(MODEL_DIR, tmp / "toy_model"))
    run_py(*sweep_args(tmp / "results", "grid", tmp / "hydra-1", model_dir=model_dir))
    return SimpleNamespace(root=tmp / "results", tmp=tmp, hydra_dir=tmp / "hydra-1", model_dir=model_dir)


def by_pair(sweep_rows: dict) -> dict:
    return {(r["choices"]["concept"], r["choices"]["method"]): r for r in sweep_rows.values()}


def test_sweep_of_four_jobs_writes_every_row(grid):
    found = by_pair(rows(grid.root, "grid"))
    assert set(found) == set(itertools.product(CONCEPTS, METHODS))
    array_ids, tasks = set(), set()
    for (concept, method), row in found.items():
        assert row["status"] == "ok", row.get("error")
        assert row["config"]["model"]["inversion"]["steps"] == STEPS
        for name in ("reconstruction_clip", "editability_clip_meanemb"):
            assert math.isfinite(row["metrics"][name]) and -1 <= row["metrics"][name] <= 1
        prov = row["provenance"]
        array_id, _, task = prov["slurm_job_id"].partition("_")
        array_ids.add(array_id)
        tasks.add(task)
        assert prov["slurm_attempt"] == 1
    # one job array, one task per job
    assert len(array_ids) == 1 and tasks == {"0", "1", "2", "3"}


def test_preset_reaches_sbatch_and_submitit(grid):
    """The preset's GPU request, preemption signal, requeue flag and timeout budget."""
    script = next((grid.hydra_dir / ".submitit").glob("*/*_submission.sh")).read_text()
    for flag in ("--gpus-per-node=1", "--signal=USR2@120", "--requeue", "--array=0-3%4"):
        assert f"#SBATCH {flag}\n" in script
    task = submitit_tasks(grid.hydra_dir)[0]
    with open(next(task.glob("*_submitted.pkl")), "rb") as f:
        delayed = pickle.load(f)
    assert delayed._timeout_countdown == 3   # max_num_timeout of conf/hydra/launcher/slurm.yaml


def test_resubmitting_the_finished_sweep_runs_nothing(grid):
    """Every resubmitted job finds its row and returns: rows untouched, no inversion, and
    each job much shorter than its first run. Prints the SLURM path's per-job overhead:
    the same no-op sweep through SLURM and in-process (Hydra's basic launcher)."""
    before = {p: (p.stat().st_mtime_ns, p.read_text()) for p in grid.root.glob("grid/*/result.json")}
    t0 = time.monotonic()
    run_py(*sweep_args(grid.root, "grid", grid.tmp / "hydra-2", model_dir=grid.model_dir))
    slurm_wall = time.monotonic() - t0
    after = {p: (p.stat().st_mtime_ns, p.read_text()) for p in grid.root.glob("grid/*/result.json")}
    assert after == before and len(after) == 4

    tasks = submitit_tasks(grid.tmp / "hydra-2")
    assert len(tasks) == 4
    for task in tasks:
        log = task_log(task)
        assert "is done already" in log and "invert" not in log, log[-2000:]
    first = wait_for(lambda: _complete(sacct_times([t.name for t in submitit_tasks(grid.hydra_dir)])),
                     30, "sacct to list the first sweep")
    again = wait_for(lambda: _complete(sacct_times([t.name for t in tasks])), 30, "sacct to list the resubmission")
    assert max(t["run_s"] for t in again.values()) < min(t["run_s"] for t in first.values())

    t0 = time.monotonic()
    run_py(*sweep_args(grid.root, "grid", grid.tmp / "hydra-3", launcher=("hydra/launcher=basic",),
                       model_dir=grid.model_dir))
    local_wall = time.monotonic() - t0
    assert after == {p: (p.stat().st_mtime_ns, p.read_text()) for p in grid.root.glob("grid/*/result.json")}
    overhead = {"jobs": 4, "slurm_sweep_wall_s": round(slurm_wall, 1), "basic_sweep_wall_s": round(local_wall, 1),
                "slurm_overhead_per_job_s": round((slurm_wall - local_wall) / 4, 1),
                "noop_task_run_s": sorted(t["run_s"] for t in again.values()),
                "queue_wait_s": sorted(t["wait_s"] for t in again.values())}
    print("\nSLURM per-job overhead:", json.dumps(overhead))


def test_a_finished_sweep_with_wandb_logs_its_own_run_from_the_submitting_process(grid):
    """The sweep's own W&B run (analysis/sweep_run.py) after the SLURM launcher's summary:
    the finished grid resubmitted under another sweep name with the W&B offline logger."""
    from tests.analysis.wandb_records import read_run
    args = [a for a in sweep_args(grid.root, "grid_wandb", grid.tmp / "hydra-wandb", model_dir=grid.model_dir)
            if a != "logger=none"]
    proc = run_py(*args, "logger=wandb_offline")
    [path] = sorted((grid.root / "grid_wandb" / "_wandb" / "wandb").glob("offline-run-*"))
    assert f"wandb sync {path}" in proc.stderr
    run = read_run(path)
    assert (run.group, run.job_type) == ("grid_wandb", "sweep")
    cols, data = run.table("rows")
    lines = [dict(zip(cols, d)) for d in data]
    assert {(r["concept"], r["method"]) for r in lines} == set(itertools.product(CONCEPTS, METHODS))
    assert {r["status"] for r in lines} == {"ok"}


def _complete(times: dict) -> dict | None:
    return times if len(times) == 4 else None


def test_packing_runs_several_jobs_in_one_slurm_task(grid):
    """pack=2: the two jobs of red_star share one task (both found finished there)."""
    hydra_dir = grid.tmp / "hydra-pack"
    run_py(*sweep_args(grid.root, "grid", hydra_dir, concepts=CONCEPTS[:1], model_dir=grid.model_dir),
           "hydra.launcher.pack=2")
    tasks = submitit_tasks(hydra_dir)
    assert len(tasks) == 1
    assert task_log(tasks[0]).count("is done already") == 2


def test_batch_packing_inverts_a_tasks_jobs_together_and_matches_unpacked(grid, tmp_path):
    """pack_mode=batch: red_star's two learning jobs run in one task, their inversions
    together, and learn bit for bit what the grid's jobs learned alone (the same job ids);
    the same jobs run on this machine outside SLURM give the same rows too (issue 32)."""
    root, hydra_dir = tmp_path / "results", tmp_path / "hydra"
    run_py(*sweep_args(root, "batch", hydra_dir, concepts=CONCEPTS[:1], model_dir=grid.model_dir),
           "hydra.launcher.pack=2", "hydra.launcher.pack_mode=batch")
    tasks = submitit_tasks(hydra_dir)
    assert len(tasks) == 1
    packed, alone = by_pair(rows(root, "batch")), by_pair(rows(grid.root, "grid"))
    assert set(packed) == {(CONCEPTS[0], m) for m in METHODS}
    # one shared inversion: each row names the other job and the same group time
    first, second = packed.values()
    assert first["timings"]["packed_with"] == [second["job_id"]]
    assert second["timings"]["packed_with"] == [first["job_id"]]
    assert first["timings"]["packed_invert_s"] == second["timings"]["packed_invert_s"]
    for key, row in packed.items():
        ref = alone[key]
        assert row["status"] == "ok" and row["job_id"] == ref["job_id"]
        assert len(row["timings"]["packed_with"]) == 1 and row["timings"]["packed_invert_s"] > 0
        embeds = read_embeddings(Path(row["folder"]) / row["artifacts"]["embeddings"]["diffusers"])
        ref_embeds = read_embeddings(Path(ref["folder"]) / ref["artifacts"]["embeddings"]["diffusers"])
        assert embeds.keys() == ref_embeds.keys()
        for k in embeds:
            assert torch.equal(embeds[k], ref_embeds[k]), (key, k)
        for name, value in ref["metrics"].items():
            assert abs(row["metrics"][name] - value) <= 1e-5, (key, name)
    # outside SLURM, in this process's Hydra basic launcher: the grid's rows again
    local = tmp_path / "local"
    run_py(*sweep_args(local, "local", tmp_path / "hydra-local", concepts=CONCEPTS[:1], launcher=(),
                       model_dir=grid.model_dir))
    for key, row in by_pair(rows(local, "local")).items():
        ref = alone[key]
        assert row["job_id"] == ref["job_id"] and row["provenance"]["slurm_job_id"] is None
        for name, value in ref["metrics"].items():
            assert abs(row["metrics"][name] - value) <= 1e-5, (key, name)


def test_resubmission_reruns_only_missing_and_failed_jobs(grid):
    """One row deleted, one marked failed: resubmitting runs exactly those two again."""
    found = {k: Path(r["folder"]) / "result.json" for k, r in by_pair(rows(grid.root, "grid")).items()}
    missing, failed = found[(CONCEPTS[1], METHODS[0])], found[(CONCEPTS[1], METHODS[1])]
    old_ids = {k: json.loads(p.read_text())["provenance"]["slurm_job_id"] for k, p in found.items()}
    missing.unlink()
    row = json.loads(failed.read_text())
    failed.write_text(json.dumps({**row, "status": "failed", "error": "RuntimeError: CUDA out of memory"}))
    untouched = {p: (p.stat().st_mtime_ns, p.read_text()) for p in found.values() if p not in (missing, failed)}

    run_py(*sweep_args(grid.root, "grid", grid.tmp / "hydra-rerun", model_dir=grid.model_dir))
    assert untouched == {p: (p.stat().st_mtime_ns, p.read_text()) for p in untouched}
    for key in ((CONCEPTS[1], METHODS[0]), (CONCEPTS[1], METHODS[1])):
        again = json.loads(found[key].read_text())
        assert again["status"] == "ok" and again["error"] is None
        assert again["provenance"]["slurm_job_id"] != old_ids[key]   # a new SLURM job wrote it
    logs = [task_log(t) for t in submitit_tasks(grid.tmp / "hydra-rerun")]
    assert sum("is done already" in log for log in logs) == 2


def test_preempted_job_resumes_from_its_checkpoint_and_matches(grid, tmp_path):
    """USR2 (what submitit gets before a time limit, and what `job._interrupt()` sends)
    mid-inversion: submitit requeues the job, the second attempt resumes from the
    checkpoint, and the row equals the uninterrupted one of the grid sweep."""
    root, hydra_dir = tmp_path / "results", tmp_path / "hydra"
    proc = start_run_py(*sweep_args(root, "preempt", hydra_dir, CONCEPTS[:1], METHODS[:1],
                                    model_dir=grid.model_dir))
    try:
        ckpt = wait_for(lambda: next(root.glob(f"preempt/*/checkpoint/{CHECKPOINT_NAME}"), None), 300,
                        "the first inversion checkpoint")
        task = wait_for(lambda: (hydra_dir / ".submitit").is_dir() and submitit_tasks(hydra_dir),
                        30, "the submitit folder")[0]
        step_at_signal = wait_for(lambda: _checkpoint_step(ckpt), 10, "a readable checkpoint")
        subprocess.run(["scancel", "--signal=USR2", task.name], check=True, env=job_env(), timeout=30)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-4000:]
    assert step_at_signal < STEPS, "the inversion ended before the signal: raise STEPS"

    (row,) = rows(root, "preempt").values()
    assert row["status"] == "ok" and row["provenance"]["slurm_attempt"] == 2
    resumed_at = first_step_after_last_start(task_log(task), STEPS)
    assert 0 < step_at_signal <= resumed_at < STEPS

    # The same job as the grid's uninterrupted one: same folder name, same learned
    # vector and loss curve, hence the same scores.
    reference = by_pair(rows(grid.root, "grid"))[(CONCEPTS[0], METHODS[0])]
    assert row["job_id"] == reference["job_id"]
    folder, ref_folder = Path(row["folder"]), Path(reference["folder"])
    losses = json.loads((folder / "losses.json").read_text())["losses"]
    ref_losses = json.loads((ref_folder / "losses.json").read_text())["losses"]
    assert len(losses) == STEPS and losses == pytest.approx(ref_losses, rel=1e-5, abs=1e-7)
    embeds = read_embeddings(folder / row["artifacts"]["embeddings"]["diffusers"])
    ref_embeds = read_embeddings(ref_folder / reference["artifacts"]["embeddings"]["diffusers"])
    assert embeds.keys() == ref_embeds.keys()
    for k in embeds:
        torch.testing.assert_close(embeds[k], ref_embeds[k], rtol=1e-5, atol=1e-6)
    assert row["metrics"] == pytest.approx(reference["metrics"], rel=1e-5, abs=1e-6)


def _checkpoint_step(path: Path) -> int | None:
    try:
        return int(checkpoint.load(path)["sets"][0]["step"])
    except (ValueError, KeyError, OSError):
        return None


def test_dirty_tree_is_refused_before_anything_is_submitted(tmp_path):
    """A sweep whose config lives in a checkout with an uncommitted edit is refused, with
    the file and the override named; no SLURM job exists afterwards."""
    conf = committed_conf(tmp_path)
    (conf / "method" / "single_word.yaml").write_text(
        (conf / "method" / "single_word.yaml").read_text() + "inversion:\n  lr: 5.0e-2\n")
    args = [a for a in sweep_args(tmp_path / "results", "dirty", tmp_path / "hydra", CONCEPTS[:1], METHODS[:1])
            if a != "hydra.launcher.allow_dirty=true"]
    proc = run_py("--config-path", str(conf), *args, check=False, timeout=300)
    assert proc.returncode != 0
    assert "refusing to submit a SLURM sweep" in proc.stderr
    assert "method/single_word.yaml" in proc.stderr and "hydra.launcher.allow_dirty=true" in proc.stderr
    assert not (tmp_path / "hydra" / ".submitit").exists()


def test_the_successors_run_as_slurm_tasks_each_inverting_alone(grid, tmp_path):
    """pack_mode=batch over single_word and the successors of one concept: the single word's
    task packs nothing with them, every successor's job inverts alone, all rows ok, each with
    its learner's files."""
    from tests.harness.test_methods import SUCCESSORS
    root, hydra_dir = tmp_path / "results", tmp_path / "hydra"
    run_py(*sweep_args(root, "succ", hydra_dir, concepts=CONCEPTS[:1], methods=("single_word",) + SUCCESSORS,
                       model_dir=grid.model_dir), "hydra.launcher.pack=8", "hydra.launcher.pack_mode=batch")
    found = by_pair(rows(root, "succ"))
    assert set(found) == {(CONCEPTS[0], m) for m in ("single_word",) + SUCCESSORS}
    for (_, method), row in found.items():
        assert row["status"] == "ok", (method, row.get("error"))
        assert "packed_with" not in row["timings"], method     # nothing to pack with: all alone
        assert row["provenance"]["slurm_job_id"]
        if method != "single_word":
            assert all((Path(row["folder"]) / rel).is_file() for rel in row["artifacts"]["learner"].values())
