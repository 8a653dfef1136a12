"""One computation per job: the lock, its stale cases, and two processes on one job."""
from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tinv.harness import joblock

from .conftest import FAST, REPO, rows
from .test_run import check_row


def _hold_for(folder: str, seconds: float, ready) -> None:
    with joblock.hold(Path(folder), "job"):
        ready.set()
        time.sleep(seconds)


def test_a_second_holder_waits_until_the_first_lets_go(tmp_path):
    folder = tmp_path / "sweep" / "job-abc"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    owner = ctx.Process(target=_hold_for, args=(str(folder), 3.0, ready))
    owner.start()
    try:
        assert ready.wait(120)
        info = json.loads(joblock.lock_path(folder).read_text())
        assert info["host"] == socket.gethostname() and info["pid"] == owner.pid and info["start"]
        t = time.perf_counter()
        with joblock.hold(folder, "job") as waited:
            assert waited and time.perf_counter() - t > 0.5
            assert json.loads(joblock.lock_path(folder).read_text())["pid"] == os.getpid()
    finally:
        owner.join(60)
    assert not joblock.lock_path(folder).exists()      # released


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(folder: Path, **owner) -> Path:
    path = joblock.lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": "then", **owner}))
    return path


def test_a_dead_owner_on_this_host_does_not_hold_the_lock(tmp_path):
    folder = tmp_path / "sweep" / "job-abc"
    _plant(folder, pid=_dead_pid())
    t = time.perf_counter()
    with joblock.hold(folder, "job") as waited:
        assert time.perf_counter() - t < 5
        assert waited is False   # the dead owner's lock was broken, not waited on
    assert not joblock.lock_path(folder).exists()


def test_an_owner_elsewhere_with_a_stale_heartbeat_does_not_hold_the_lock(tmp_path):
    folder = tmp_path / "sweep" / "job-abc"
    path = _plant(folder, host="another-node", pid=1)
    assert joblock.stale_reason(path, json.loads(path.read_text())) is None    # fresh: it runs
    old = time.time() - joblock.STALE_S - 60
    os.utime(path, (old, old))
    assert "heartbeat" in joblock.stale_reason(path, json.loads(path.read_text()))
    with joblock.hold(folder, "job"):
        pass


def test_an_earlier_attempt_of_the_same_slurm_job_does_not_hold_the_lock(tmp_path, monkeypatch):
    folder = tmp_path / "sweep" / "job-abc"
    path = _plant(folder, host="another-node", pid=1, slurm_job_id="77_3", slurm_attempt=1)
    monkeypatch.setenv("SLURM_JOB_ID", "80")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")                 # this is attempt 2
    assert "earlier attempt" in joblock.stale_reason(path, json.loads(path.read_text()))


def test_two_processes_on_one_job_compute_once_and_both_return_the_row(runs):
    args = [a for a in FAST if a != "model.inversion.steps=3"] + ["model.inversion.steps=400"]   # long enough to be caught running
    env = {**os.environ, "TINV_RUNS": str(runs)}

    def start():
        return subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = start()
    deadline = time.time() + 300
    while not list((runs / "jobs").glob(".*.lock")) and time.time() < deadline:
        assert first.poll() is None, first.communicate()[0][-3000:]
        time.sleep(0.1)
    second = start()                      # the first holds the lock: the second must wait
    out1, out2 = (p.communicate(timeout=900)[0] for p in (first, second))
    assert first.returncode == 0, out1[-3000:]
    assert second.returncode == 0, out2[-3000:]
    assert "waiting for it" in out2 and f"pid {first.pid}" in out2 and "was computed by" in out2
    assert "waiting for it" not in out1
    [row] = rows(runs)
    check_row(row, Path(row["folder"]))
    assert len(row["attempts"]) == 1 and row["attempts"][0]["pid"] == first.pid   # computed once
    assert row["job_id"] in out1 and row["job_id"] in out2
    assert "reconstruction_clip" in out2 and row["folder"] in out2          # both report the row
    assert not list((runs / "jobs").glob(".*.lock"))
