"""A sweep's own W&B run (analysis/sweep_run.py), read back from its offline `.wandb` file.

One real two-concept, two-method sweep with the default logger (W&B offline) is shared:
its sweep run must hold the rows table, the claims and the trade-off figure beside the
job runs (each tagged with its setup); a rerun that computes nothing logs a fresh sweep
run that replaces the offline one; the same jobs with `logger=none` or through the
submitit launcher. The failed- and missing-job lines are checked on a synthetic sweep
folder (tests/analysis/conftest.py's rows), in this process.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from analysis import report, sweep_run
from tests.analysis.conftest import make_row, write_row
from tests.analysis.wandb_records import read_run
from tests.harness.conftest import FAST, run_cli

CONCEPTS, METHODS = ("red_star", "blue_heart"), ("single_word", "two_word")
SWEEP = ["-m", f"method={','.join(METHODS)}", f"concept={','.join(CONCEPTS)}", "sweep=pair",
         *[a for a in FAST if a != "logger=none"], "cpu_threads=1"]      # the default logger: W&B offline
WANDB_ENV = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")


def offline_runs(folder: Path) -> list[Path]:
    return sorted(folder.glob("_wandb/wandb/offline-run-*"))


def job_runs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*/wandb/offline-run-*") if not p.parts[-3].startswith("_"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep_run")
    home = tmp / "home"
    home.mkdir()
    runs = tmp / "runs"
    first = run_cli(SWEEP, runs, tmp_home=home)
    assert first.returncode == 0, first.stderr[-3000:]
    return runs, home, first.stderr


def test_a_sweep_logs_one_run_of_its_own_with_rows_claims_and_trade_off(sweep):
    runs, home, stderr = sweep
    folder = runs / "pair"
    [path] = offline_runs(folder)
    run = read_run(path)
    assert (run.name, run.group, run.job_type, run.exit_code) == ("sweep:pair", "pair", "sweep", 0)
    # the rows: one line per job, its setup as columns, its metrics
    cols, data = run.table("rows")
    lines = [dict(zip(cols, d)) for d in data]
    assert {(r["concept"], r["method"]) for r in lines} == {(c, m) for c in CONCEPTS for m in METHODS}
    assert {r["status"] for r in lines} == {"ok"} and {r["model"] for r in lines} == {"toyworld"}
    made = {(r["concept"]["name"], r["choices"]["method"]): r["metrics"]
            for r in map(json.loads, map(Path.read_text, folder.glob("*/result.json")))}
    for r in lines:           # the jobs' own numbers
        assert r["reconstruction_clip"] == pytest.approx(made[r["concept"], r["method"]]["reconstruction_clip"])
        assert r["editability_oracle"] == pytest.approx(made[r["concept"], r["method"]]["editability_oracle"])
    assert "method.inversion.lr" in cols and not any(c.startswith("scores.") for c in cols)
    # the claims: a Table and the text of claims.md, the same claims
    ccols, claims = run.table("claims/table")
    assert {"id", "claim", "parts", "verdict"} <= set(ccols) and len(claims) > 10
    ids = [dict(zip(ccols, c))["id"] for c in claims]
    text = run.media("claims/text").read_text()
    assert "The paper&#x27;s claims" in text or "The paper's claims" in text
    assert all(f"| {i} |" in text for i in ids)
    md = (folder / "claims.md").read_text()
    # one section, written once: claim 2a's row in the claims table, its verdicts in the sensitivity table
    assert md.count("Totals:") == 1 and md.count("| 2a |") == 2
    # the figures: Figure 10(a)'s trade-off and the forest plot of paired effects, as images
    figures = {k.rpartition("/")[0] for k, v in run.history.items() if k.endswith("/_type") and v == "image-file"}
    tradeoff = next(k for k in figures if "figure_10_a_trade_off_clip" in k)
    forest = next(k for k in figures if "forest" in k)
    for key in (tradeoff, forest):
        with Image.open(run.media(key)) as img:
            lo, hi = img.convert("L").getextrema()
            assert min(img.size) > 100 and hi - lo > 100       # drawn, not blank
    # the time breakdown and where the report is
    tcols, tdata = run.table("time/this_sweep")
    assert sorted(r[0] for r in tdata) == sorted(METHODS) and "invert" in tcols
    assert run.summary["report"] == str((folder / "report.html").resolve()) and (folder / "report.html").is_file()
    assert run.summary["jobs/ok"] == 4
    assert not any(home.rglob("*wandb*")), "W&B wrote into the home folder"


def test_the_job_runs_sit_beside_it_named_and_tagged_by_their_setup(sweep):
    runs, _, _ = sweep
    jobs = job_runs(runs / "pair")
    assert len(jobs) == 4
    seen = set()
    for path in jobs:
        run = read_run(path)
        setup = {k: run.config[k] for k in ("method", "concept", "model", "eval")}
        assert run.group == "pair" and run.job_type == setup["method"]
        assert run.name == f"{setup['concept']}-{setup['method']}"
        assert sorted(run.tags) == sorted(f"{k}:{v}" for k, v in setup.items())
        assert run.config["cfg"]["method"]["name"] == setup["method"]     # the resolved config, kept whole
        seen.add((setup["concept"], setup["method"], setup["model"], setup["eval"]))
    assert seen == {(c, m, "toyworld", "fast") for c in CONCEPTS for m in METHODS}


def test_the_closing_lines_and_the_report_say_where_the_run_is_and_how_to_sync_it(sweep, capsys):
    runs, _, stderr = sweep
    folder = runs / "pair"
    [path] = offline_runs(folder)
    assert f"upload it: wandb sync {path}" in stderr
    # one command uploads the sweep's run and its jobs' runs: its pattern finds all five
    pattern = re.search(r"its jobs' runs: wandb sync (\S+)$", stderr, re.M).group(1)
    found = sorted(Path("/").glob(pattern.lstrip("/")))
    assert found == sorted([path, *job_runs(folder)])
    assert f"report  {folder / 'report.html'}" in stderr
    assert "next:" not in stderr                     # the sweep did what the next steps were
    page = (folder / "report.html").read_text()
    assert f"wandb sync {path}" in page
    # report.py run by hand on the sweep's table finds the run too
    out = folder / "again.html"
    assert report.main([str(folder / "results.csv"), "-o", str(out), "--no-galleries", "--n-boot", "100"]) == 0
    assert f"wandb sync {path}" in capsys.readouterr().err and f"wandb sync {path}" in out.read_text()


def test_a_rerun_that_computes_nothing_logs_a_fresh_sweep_run_in_place_of_the_old(sweep):
    runs, home, _ = sweep
    folder = runs / "pair"
    [before] = offline_runs(folder)
    again = run_cli(SWEEP, runs, tmp_home=home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 jobs: 0 ok, 0 failed, 4 done already" in again.stderr
    [after] = offline_runs(folder)
    assert after != before and not before.exists()
    run = read_run(after)
    assert run.name == "sweep:pair" and len(run.table("rows")[1]) == 4
    assert json.loads((folder / "_wandb" / "run.json").read_text())["dir"] == os.path.relpath(after, folder)
    assert f"wandb sync {after}" in again.stderr


def test_a_sweep_with_logger_none_writes_no_sweep_run(sweep):
    runs, home, _ = sweep
    quiet = run_cli([*[a for a in SWEEP if a != "sweep=pair"], "sweep=quiet", "logger=none"], runs, tmp_home=home)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "4 done already" in quiet.stderr and "next:" in quiet.stderr and "W&B" not in quiet.stderr
    assert not (runs / "quiet" / "_wandb").exists() and not (runs / "quiet" / "results.csv").exists()


def test_the_submitit_launcher_logs_the_sweep_run_too(sweep):
    runs, home, _ = sweep
    # one submitit task (a batch pack) for the four finished jobs: the launcher's path, in seconds
    local = run_cli([*[a for a in SWEEP if a != "sweep=pair"], "sweep=submitted", "hydra/launcher=local",
                     "hydra.launcher.pack=4", "hydra.launcher.pack_mode=batch", "hydra.launcher.timeout_min=10"],
                    runs, tmp_home=home)
    assert local.returncode == 0, local.stderr[-3000:]
    [path] = offline_runs(runs / "submitted")
    run = read_run(path)
    assert run.group == "submitted" and len(run.table("rows")[1]) == 4


def test_a_sweep_with_a_failed_job_still_logs_its_run_and_marks_the_job(sweep):
    runs, home, _ = sweep
    # image-only learns and samples nothing; the second job's evaluator does not exist: it
    # fails when scoring, Hydra re-raises its error at the end of the sweep
    broken = run_cli(["-m", "method=image_only", "concept=red_star", "sweep=broken",
                      "model.evaluator=toyworld,clip", "eval.clip.model=no-such-clip-model",
                      *[a for a in FAST if a != "logger=none"], "cpu_threads=1"], runs, tmp_home=home)
    assert broken.returncode != 0
    [path] = offline_runs(runs / "broken")
    assert f"wandb sync {path}" in broken.stderr
    run = read_run(path)
    cols, data = run.table("rows")
    status = {dict(zip(cols, d))["model.evaluator"]: dict(zip(cols, d)) for d in data}
    assert status["toyworld"]["status"] == "ok"
    assert status["clip"]["status"] == "failed" and "no-such-clip-model" in status["clip"]["error"]
    assert run.summary["jobs/failed"] == 1


# ----------------------------------------------------------------------------- in this process
@pytest.fixture
def wandb_env(monkeypatch):
    """The sweep run points W&B's folders into the sweep folder: put them back afterwards."""
    for key in WANDB_ENV:
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)


def test_failed_and_missing_jobs_are_lines_of_the_rows_table(tmp_path, wandb_env):
    folder = tmp_path / "runs" / "mixed"
    # four concepts and three learned setups: on fewer concepts a claim's part is "not
    # decidable here" (the rulebook's n), and the learned setups' spread sets d
    for concept in ("red_star", "blue_cube", "pink_square", "white_circle"):
        for method in ("single_word", "two_word", "three_word", "image_only", "prompt_only"):
            write_row(folder / f"{concept}-{method}", make_row(method, concept))
    write_row(folder / "green_ring-two_word", make_row("two_word", "green_ring", status="failed"))
    crashed = folder / "_hydra" / "multirun-x" / "7"          # a Hydra job that died before its row
    (crashed / ".hydra").mkdir(parents=True)
    (crashed / ".hydra" / "overrides.yaml").write_text("- method=three_word\n- concept=cat_toy\n")
    (crashed / "run.log").write_text("Traceback (most recent call last):\nMemoryError: out of memory\n")
    lines = sweep_run.log_sweep(folder, {"name": "wandb", "mode": "offline", "project": "tinv"},
                                n_boot=200, galleries=False)
    [path] = offline_runs(folder)
    assert any(f"wandb sync {path}" in line for line in lines)
    run = read_run(path)
    cols, data = run.table("rows")
    by_status = {}
    for d in data:
        r = dict(zip(cols, d))
        by_status.setdefault(r["status"], []).append(r)
    assert len(by_status["ok"]) == 20
    failed = {r.get("concept") or r["job_dir"]: r for r in by_status["failed"]}
    assert failed["green_ring"]["error"] == "RuntimeError: CUDA out of memory"
    [died] = [r for k, r in failed.items() if k != "green_ring"]
    assert "MemoryError" in died["error"] and died["job_dir"] == str(crashed)
    assert run.summary["jobs/failed"] == 2
    # with image-only and prompt-only the claims are decided, not all left open
    ccols, claims = run.table("claims/table")
    verdicts = {dict(zip(ccols, c))["id"]: dict(zip(ccols, c))["verdict"] for c in claims}
    assert verdicts["1"] != "not decidable here"
    assert sum(v for k, v in run.summary.items() if k.startswith("verdicts/")) == len(claims)


def test_no_wandb_logger_logs_nothing(tmp_path):
    folder = tmp_path / "runs" / "s"
    write_row(folder / "red_star-single_word", make_row("single_word", "red_star"))
    for logger in ({"name": "none", "mode": "disabled"}, {"name": "wandb", "mode": "disabled"}):
        assert sweep_run.log_sweep(folder, logger) == []
    assert sorted(p.name for p in folder.iterdir()) == ["red_star-single_word"]


def test_the_command_logs_a_sweep_folder_and_refuses_a_missing_one(tmp_path, wandb_env, capsys):
    assert sweep_run.main([str(tmp_path / "nowhere")]) == 2
    assert re.search(r"^error: sweep folder .*nowhere does not exist$", capsys.readouterr().err, re.M)
