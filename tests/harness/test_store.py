"""The job store: a job's folder depends on what it computes, not on the sweep that asked
for it, so two sweeps that share a job compute it once; each sweep's folder is a view
(links into the store) that collect reads as the sweep's own rows; an old runs folder
(job folders inside the sweep folder) is still read, and its finished jobs are not redone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from analysis import collect

from .conftest import FAST, rows, run_cli

# fig10-like and lr_sweep-like: they share single_word on red_star
FIRST = ["-m", "method=single_word,image_only", "concept=red_star", *FAST, "cpu_threads=1", "sweep=first"]
SECOND = ["-m", "method=single_word", "concept=red_star,blue_heart", *FAST, "cpu_threads=1", "sweep=second"]


def _pair(row: dict) -> tuple[str, str]:
    return row["choices"]["method"], row["concept"]["name"]


def test_two_sweeps_sharing_a_job_compute_it_once_and_each_sees_it(runs):
    first = run_cli(FIRST, runs)
    assert first.returncode == 0, first.stderr[-3000:]
    shared = {_pair(r): r for r in rows(runs, "first")}[("single_word", "red_star")]
    stamp = (runs / "jobs" / shared["folder"].rsplit("/", 1)[1] / "result.json").stat().st_mtime_ns

    second = run_cli(SECOND, runs)
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert "2 jobs: 1 ok, 0 failed, 1 done already" in log
    assert log.count("is done already") == 1 and shared["job_id"] in log

    # the computations, counted: 3 distinct jobs in the store, each run exactly once
    store = sorted((runs / "jobs").glob("*/result.json"))
    assert len(store) == 3
    for path in store:
        row = json.loads(path.read_text())
        assert row["status"] == "ok" and len(row["attempts"]) == 1, path
    assert (runs / "jobs" / shared["folder"].rsplit("/", 1)[1] / "result.json").stat().st_mtime_ns == stamp

    # each sweep's folder is a view: links into the store, read as that sweep's rows
    a, b = {_pair(r): r for r in rows(runs, "first")}, {_pair(r): r for r in rows(runs, "second")}
    assert set(a) == {("single_word", "red_star"), ("image_only", "red_star")}
    assert set(b) == {("single_word", "red_star"), ("single_word", "blue_heart")}
    assert a[("single_word", "red_star")] == b[("single_word", "red_star")]      # one row, one folder
    for sweep in ("first", "second"):
        links = [p for p in (runs / sweep).iterdir() if p.name != "_hydra"]
        assert links and all(p.is_symlink() and not p.readlink().is_absolute() for p in links)
        df, issues = collect.collect([runs / sweep])
        assert issues == [] and len(df) == 2 and set(df["sweep"]) == {sweep}
        assert all(j.startswith(f"{sweep}/") for j in df["job_dir"])
    df, issues = collect.collect([runs])                # the runs root: one line per job
    assert issues == [] and len(df) == 3 and df["job_id"].is_unique


def test_an_old_runs_folder_is_read_and_its_jobs_stay_there(runs, tmp_path):
    sweep = ["-m", "method=image_only", "concept=red_star,blue_heart", *FAST, "cpu_threads=1", "sweep=old"]
    made = run_cli(sweep, runs)
    assert made.returncode == 0, made.stderr[-3000:]
    # the layout before the store: the job folders themselves inside the sweep folder,
    # one finished, one whose row says it failed
    old = tmp_path / "old-runs"
    by_concept = {r["concept"]["name"]: r for r in rows(runs, "old")}
    for r in by_concept.values():
        shutil.copytree(r["folder"], old / "old" / Path(r["folder"]).name)
    failed = old / "old" / Path(by_concept["blue_heart"]["folder"]).name / "result.json"
    failed.write_text(json.dumps({**json.loads(failed.read_text()), "status": "failed"}))

    again = run_cli(sweep, old)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "2 jobs: 1 ok, 0 failed, 1 done already" in log
    assert str(old / "old" / Path(by_concept["red_star"]["folder"]).name) in log   # done, where it was
    assert not (old / "jobs").exists()                 # nothing moved to (or computed in) a store
    redone = json.loads(failed.read_text())
    assert redone["status"] == "ok" and len(redone["attempts"]) == 2   # run again in its old folder
    df, issues = collect.collect([old / "old"])
    assert issues == [] and sorted(df["job_id"]) == sorted(r["job_id"] for r in by_concept.values())
    assert set(df["sweep"]) == {"old"} and set(df["status"]) == {"ok"}


def test_a_view_link_is_relative_idempotent_and_never_fails_the_job(tmp_path, monkeypatch, caplog):
    import os

    from tinv.harness import store
    job = tmp_path / "jobs" / "red_star-single_word-0123456789ab"
    job.mkdir(parents=True)
    view = store.link(tmp_path, "fig10", job)
    assert view == tmp_path / "fig10" / job.name and os.readlink(view) == f"../jobs/{job.name}"
    assert store.link(tmp_path, "fig10", job) == view and view.resolve() == job.resolve()   # again: the same
    view.unlink()
    view.symlink_to(job)                                  # an absolute link (a moved root, another spelling)
    store.link(tmp_path, "fig10", job)
    assert os.readlink(view) == f"../jobs/{job.name}"     # made relative, in one rename
    assert store.link(tmp_path, "jobs", job) is None      # sweep=jobs: the store is its own view

    def refuse(*a, **k):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "symlink", refuse)            # a filesystem without links
    assert store.link(tmp_path, "lr_sweep", job) is None
    assert "the job is in the store" in caplog.text
