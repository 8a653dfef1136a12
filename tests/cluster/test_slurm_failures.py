"""Sweeps whose tasks die on the real SLURM of scripts/slurm/: the sweep waits for every
task, ends with one summary (ok / failed with the reason / cancelled) and the command that
reruns just the others; with `hydra.launcher.retries=1` a killed task is resubmitted by
itself and resumes from its checkpoint.

A task is killed the way the out-of-memory killer or a crashed node ends it: SIGKILL to
every process of the task, mid-inversion (after its first checkpoint).
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.conftest import (REPO, committed_conf, first_step_after_last_start, job_env, rows, start_run_py,
                                    submitit_tasks, task_log, wait_for)
from tests.cluster.test_slurm_sweeps import STEPS, sweep_args
from tinv.engine.inversion import CHECKPOINT_NAME
from tinv.toyworld import MODEL_DIR

pytestmark = pytest.mark.slurm

CONCEPT, METHODS = "red_star", ("single_word", "two_word")   # job #0 is the one killed


@pytest.fixture(scope="module")
def model_dir(slurm, tmp_path_factory) -> Path:
    # a private copy: the shipped toy weights may be retrained in place while this runs
    return Path(shutil.copytree(MODEL_DIR, tmp_path_factory.mktemp("failures") / "toy_model"))


def task_pids(task_id: str) -> list[int]:
    """Processes of one array task (`<array>_<index>`): srun and the job's Python."""
    array, _, index = task_id.partition("_")
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = dict(e.split(b"=", 1) for e in (proc / "environ").read_bytes().split(b"\0") if b"=" in e)
        except OSError:
            continue
        if env.get(b"SLURM_ARRAY_JOB_ID") == array.encode() and env.get(b"SLURM_ARRAY_TASK_ID") == index.encode():
            pids.append(int(proc.name))
    return pids


def start_and_kill_job0(root: Path, sweep: str, hydra_dir: Path, model_dir: Path, *extra: str):
    """Start the 2-job sweep, SIGKILL job #0's task after its first checkpoint, wait for the end."""
    t0 = time.monotonic()
    proc = start_run_py(*sweep_args(root, sweep, hydra_dir, (CONCEPT,), METHODS, model_dir=model_dir), *extra)
    try:
        wait_for(lambda: next(root.glob(f"{sweep}/{CONCEPT}-{METHODS[0]}-*/checkpoint/{CHECKPOINT_NAME}"), None),
                 300, "job #0's first inversion checkpoint")
        task = wait_for(lambda: (hydra_dir / ".submitit").is_dir() and
                        [t for t in submitit_tasks(hydra_dir) if t.name.endswith("_0")], 30, "task 0's folder")[0]
        pids = wait_for(lambda: task_pids(task.name), 30, f"the processes of task {task.name}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, task, time.monotonic() - t0


def summary_of(out: str) -> list[str]:
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("sweep summary:"))
    return lines[start:]


def test_killed_task_ends_in_one_summary_and_its_rerun_command_resumes_it(model_dir, tmp_path):
    root = tmp_path / "results"
    rc, out, killed, wall = start_and_kill_job0(root, "killed", tmp_path / "hydra", model_dir)
    assert rc == 1, out[-4000:]
    assert "Traceback" not in out and "UncompletedJobError" not in out, out[-4000:]
    summary = summary_of(out)
    print("\n" + "\n".join(summary))
    assert summary[0] == "sweep summary: 2 jobs: 1 ok, 1 failed, 0 cancelled", "\n".join(summary)
    failed = next(line for line in summary if line.lstrip().startswith("failed"))
    assert f"method={METHODS[0]}" in failed and f"task {killed.name}" in failed and "killed" in failed
    ok_line = next(line for line in summary if line.lstrip().startswith("ok"))
    assert f"method={METHODS[1]}" in ok_line
    # the other job finished and wrote its row; the killed one has none that says ok
    found = {r["choices"]["method"]: r for r in rows(root, "killed").values()}
    assert found[METHODS[1]]["status"] == "ok" and found[METHODS[1]]["folder"] in ok_line
    assert found.get(METHODS[0], {}).get("status") != "ok"

    # The printed command reruns just the killed job; it resumes from its checkpoint.
    i = summary.index(next(line for line in summary if line.startswith("rerun just")))
    (command,) = [line.strip() for line in summary[i + 1:]]
    args = shlex.split(command)
    assert args[:3] == ["python", "run.py", "-m"] and f"method={METHODS[0]}" in args
    assert not any(a.startswith("hydra.sweep.dir=") for a in args)
    t0 = time.monotonic()
    again = start_run_py(*args[3:], f"hydra.sweep.dir={tmp_path / 'hydra-rerun'}")
    out2, _ = again.communicate(timeout=600)
    rerun_wall = time.monotonic() - t0
    assert again.returncode == 0, out2[-4000:]
    assert summary_of(out2)[0] == "sweep summary: 1 jobs: 1 ok, 0 failed, 0 cancelled"
    (task,) = submitit_tasks(tmp_path / "hydra-rerun")
    assert first_step_after_last_start(task_log(task), STEPS) > 0       # resumed, not restarted
    found = {r["choices"]["method"]: r for r in rows(root, "killed").values()}
    assert {m: r["status"] for m, r in found.items()} == {m: "ok" for m in METHODS}
    print(f"\nkilled sweep: {wall:.0f} s to the summary; rerun of the killed job: {rerun_wall:.0f} s")


def test_retries_resubmit_the_killed_task_and_every_row_ends_ok(model_dir, tmp_path):
    root = tmp_path / "results"
    rc, out, killed, wall = start_and_kill_job0(root, "retried", tmp_path / "hydra", model_dir,
                                                "hydra.launcher.retries=1")
    assert rc == 0, out[-4000:]
    summary = summary_of(out)
    assert summary[0] == "sweep summary: 2 jobs: 2 ok, 0 failed, 0 cancelled (1 retried, retries=1)", \
        "\n".join(summary)
    assert not any(line.startswith("rerun just") for line in summary)
    found = {r["choices"]["method"]: r for r in rows(root, "retried").values()}
    assert {m: r["status"] for m, r in found.items()} == {m: "ok" for m in METHODS}
    # the retry is a new SLURM job that resumed job #0 from its checkpoint
    retry_id = found[METHODS[0]]["provenance"]["slurm_job_id"]
    assert retry_id.split("_")[0] != killed.name.split("_")[0]
    (retry_task,) = [t for t in submitit_tasks(tmp_path / "hydra") if t.name == retry_id]
    assert first_step_after_last_start(task_log(retry_task), STEPS) > 0
    print(f"\nretried sweep: {wall:.0f} s")


def test_refusals_are_one_error_line_and_leave_no_sweep_folder(slurm, tmp_path):
    """Bad launcher settings and a dirty checkout: exit 2, one `error:` line, no folder."""
    args = sweep_args(tmp_path / "results", "refused", tmp_path / "hydra", (CONCEPT,), METHODS[:1])
    for bad, named in (("hydra.launcher.pack=0", "hydra.launcher.pack=0"),
                       ("hydra.launcher.retries=-1", "hydra.launcher.retries=-1"),
                       ("hydra.launcher.pack_mode=threads", "hydra.launcher.pack_mode='threads'"),
                       ("hydra.launcher.timeout_min=soon", "hydra.launcher.timeout_min='soon'")):
        proc = _run(*args, bad)
        assert proc.returncode == 2, proc.stderr[-3000:]
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: bad launcher settings") and named in lines[0], lines
        assert not (tmp_path / "hydra").exists() and not (tmp_path / "results").exists()

    conf = committed_conf(tmp_path)
    (conf / "method" / "new.yaml").write_text("name: new\n")
    proc = _run("--config-path", str(conf), *[a for a in args if a != "hydra.launcher.allow_dirty=true"])
    assert proc.returncode == 2
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: refusing to submit a SLURM sweep"), lines
    assert "method/new.yaml" in lines[0] and "hydra.launcher.allow_dirty=true" in lines[0]
    assert not (tmp_path / "hydra").exists()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", "-m", *args], cwd=REPO, env=job_env(),
                          capture_output=True, text=True, timeout=300)
