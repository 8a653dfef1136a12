"""Real `python run.py` sweeps: where they land, what they print at the end, and collect
on each kind of folder they leave (runs root, sweep folder, Hydra multirun folder).
image-only jobs sample nothing, so each run costs only the start-up and the scoring."""
from __future__ import annotations

import re

import pytest

from analysis import collect
from tests.harness.conftest import MODEL, run_cli

SWEEP = ["-m", "method=image_only", "concept=red_star,blue_heart", *MODEL, "eval=fast",
         "logger=none", "progress=false", "cpu_threads=1"]
SINGLE = ["method=image_only", *MODEL, "eval=fast", "logger=none", "progress=false", "cpu_threads=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("sweeps") / "runs"
    first = run_cli(SWEEP, runs)
    again = run_cli(SWEEP, runs)                 # nothing to do: both rows exist
    singles = [run_cli(SINGLE, runs) for _ in range(2)]
    for p in (first, again, *singles):
        assert p.returncode == 0, p.stderr[-3000:]
    return runs, first.stderr, again.stderr


def test_a_sweep_gets_its_own_folder_and_says_what_to_run_next(runs):
    root, first, again = runs
    folder = re.search(r"^rows in (.+)$", first, re.M).group(1)
    # named after its overrides, readable and shell-safe; housekeeping overrides stay out
    name = folder.rsplit("/", 1)[1]
    assert name.startswith("method-image_only__concept-red_star+blue_heart__model-")
    assert "logger" not in name and "," not in name and "=" not in name
    # + the job store; "_"-folders are the root's caches (prompt-only samples, held-out images)
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith("_")) == sorted(["default", name, "jobs"])
    assert f"sweep {folder.rsplit('/', 1)[1]}: 2 jobs: 2 ok, 0 failed, 0 done already" in first
    assert "2 jobs: 0 ok, 0 failed, 2 done already" in again
    assert f"python analysis/collect.py {folder} -o {folder}/results.csv" in first
    assert "python analysis/report.py" in first and "python analysis/plot_tradeoff.py" in first
    # the single runs keep the default sweep: the sweep did not write there; the single run
    # is the sweep's red_star job, so the default sweep's view links to that one folder
    [single] = (root / "default").glob("*/result.json")
    assert single.parent.is_symlink() and single.resolve().parent.parent == root / "jobs"
    assert single.resolve() == next((root / folder.rsplit("/", 1)[1]).glob("red_star-*/result.json")).resolve()
    assert len(list((root / "jobs").glob("*/result.json"))) == 2


def test_collect_reports_nothing_missing_on_every_kind_of_folder(runs, tmp_path):
    root, first, _ = runs
    [sweep] = [d for d in root.iterdir() if d.name not in ("default", "jobs") and not d.name.startswith("_")]
    multiruns = sorted((sweep / "_hydra").glob("multirun-*"))
    assert multiruns, "Hydra's multirun folders are inside the sweep folder"
    # the root: one line per job (2: the single run is the sweep's red_star job)
    for folder, n_rows in [(root, 2), (sweep, 2), (root / "default", 1), *[(m, 2) for m in multiruns]]:
        df, issues = collect.collect([folder])
        assert issues == [], (folder, issues)
        assert len(df) == n_rows and set(df["status"]) == {"ok"}, folder
        assert not any(str(root) in str(j) for j in df["job_dir"])   # relative to the runs root
        if folder != root:   # a sweep's view reads as the sweep's own rows, as before the store
            assert set(df["sweep"]) == {folder.name if folder.parent == root else sweep.name}
            assert all(j.startswith(df["sweep"][0] + "/") for j in df["job_dir"])
            assert df.attrs["runs_root"] == str(root)
