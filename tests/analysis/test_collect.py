"""collect.py on real Hydra multirun folders: rows in, failed and missing jobs reported."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import collect
from tests.analysis.conftest import make_row, write_row

APP = Path(__file__).with_name("hydra_app.py")


@pytest.fixture(scope="module")
def hydra_sweep(tmp_path_factory) -> Path:
    """4 methods x 2 concepts through real Hydra; then one job folder is deleted, as if
    its array task never started."""
    sweep = tmp_path_factory.mktemp("hydra") / "sweep"
    multirun = sweep / "_hydra" / "multirun"
    proc = subprocess.run(
        [sys.executable, str(APP), "-m", "+method=single_word,oom,crash,stall",
         "+concept=red_star,blue_cube", f"+rows={sweep}", f"hydra.sweep.dir={multirun}"],
        capture_output=True, text=True, timeout=120)
    assert "concept folder red_star has no images" in proc.stderr  # the crash jobs did crash
    never = next(d for d in multirun.iterdir()
                 if (d / ".hydra/overrides.yaml").is_file() and "+method=stall" in (d / ".hydra/overrides.yaml").read_text()
                 and "blue_cube" in (d / ".hydra/overrides.yaml").read_text())
    shutil.rmtree(never)
    return sweep


def test_reports_failed_and_missing_and_still_writes_the_table(hydra_sweep, tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert collect.main([str(hydra_sweep), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    df = pd.read_csv(out)
    # The table holds every row, the failed ones included (status says which).
    assert sorted(zip(df["method"], df["status"])) == [("oom", "failed")] * 2 + [("single_word", "ok")] * 2
    jobs = json.loads(out.with_name("results.jobs.json").read_text())
    oom = [i for i in jobs["failed"] if i["reason"] == "status=failed"]
    assert len(oom) == 2 and all("out of memory" in i["detail"] for i in oom)
    crash = [i for i in jobs["failed"] if i["reason"] == "error in log"]
    assert len(crash) == 2 and all("no images" in i["detail"] and "+method=crash" in i["detail"] for i in crash)
    reasons = sorted(i["reason"] for i in jobs["missing"])
    assert reasons == ["incomplete", "never started"]
    never = next(i for i in jobs["missing"] if i["reason"] == "never started")
    assert "+method=stall" in never["detail"] and "+concept=blue_cube" in never["detail"]
    # stderr says the same, with the counts first
    assert err.splitlines()[0] == "4 rows (2 ok), 4 failed, 2 missing"
    assert "never started" in err and "error in log" in err


def test_the_sidecar_says_what_made_the_rows(hydra_sweep, tmp_path):
    """<out>.jobs.json names the sweep's command line (from Hydra's multirun.yaml), the commits
    the rows were computed at and the collect command: a committed example says how to remake it."""
    out = tmp_path / "results.csv"
    collect.main([str(hydra_sweep), "-o", str(out)])
    jobs = json.loads(out.with_name("results.jobs.json").read_text())
    (cmd,) = jobs["commands"]
    words = cmd["command"].split()
    assert words[:3] == ["python", "hydra_app.py", "-m"]
    assert {"+method=single_word,oom,crash,stall", "+concept=red_star,blue_cube", f"+rows={hydra_sweep}",
            f"hydra.sweep.dir={hydra_sweep / '_hydra' / 'multirun'}"} == set(words[3:])
    assert Path(cmd["folder"]) == hydra_sweep / "_hydra" / "multirun"
    assert jobs["collect"] == f"python analysis/collect.py {hydra_sweep} -o {out}"
    df = pd.read_csv(out)
    assert sum(c["rows"] for c in jobs["commits"]) == df["provenance.sha"].notna().sum() > 0


def test_commits_count_rows_per_checkout():
    df = pd.DataFrame({"provenance.sha": ["a", "a", "b", None], "provenance.dirty": [False, False, True, None]})
    assert collect.commits(df) == [{"sha": "a", "dirty": False, "rows": 2}, {"sha": "b", "dirty": True, "rows": 1},
                                   {"sha": None, "dirty": None, "rows": 1}]


def test_strict_exit_code(hydra_sweep, tmp_path):
    assert collect.main([str(hydra_sweep), "-o", str(tmp_path / "r.csv"), "--strict"]) == 1


def test_a_clean_sweep_has_no_issues(tmp_path):
    for c in ("red_star", "blue_cube"):
        write_row(tmp_path / "sw" / c, make_row("single_word", c))
    df, issues = collect.collect([tmp_path / "sw"])
    assert issues == [] and len(df) == 2


def test_a_job_two_sweeps_share_is_one_row(tmp_path, capsys):
    """NeTI's untruncated job is linked into both the successors and the truncation sweep:
    collected together, it is one row (the first folder's), not a concept counted twice."""
    shared, own = make_row("neti", "red_star"), make_row("single_word", "red_star")
    for sweep, rows in (("successors", (shared, own)), ("neti_truncation", (shared,))):
        for row in rows:
            write_row(tmp_path / sweep / f"red_star-{row['choices']['method']}", {**row, "sweep": sweep})
    df, issues = collect.collect([tmp_path / "successors", tmp_path / "neti_truncation"])
    assert issues == [] and sorted(df["method"]) == ["neti", "single_word"]
    assert df.set_index("method").loc["neti", "sweep"] == "successors"
    assert "1 jobs appear in more than one folder" in capsys.readouterr().err


def test_columns_follow_the_config_keys(tmp_path):
    row = make_row("two_word", "red_star", seed=7, num_images=3)
    row["config"]["method"]["inversion"]["lr"] = 0.02
    write_row(tmp_path / "sw" / "a", row)
    df, _ = collect.collect([tmp_path / "sw"])
    r = df.iloc[0]
    assert (r["method"], r["concept"], r["model"], r["seed"], r["method.inversion.lr"]) == \
        ("two_word", "red_star", "toyworld", 7, 0.02)
    # the row's own sections come along; the config wins a name both have
    assert (r["concept.n_images"], r["training.lr_effective"], r["concept.path"]) == \
        (3, 0.04, "toyworld/concepts/red_star")
    assert "traceback" not in df.columns and "folder" not in df.columns
    assert r["ci.reconstruction_clip.lo"] < r["reconstruction_clip"] < r["ci.reconstruction_clip.hi"]
    assert json.loads(r["scores.reconstruction_clip"]) == row["scores"]["reconstruction_clip"]
    assert "hydra/launcher" not in df.columns  # Hydra's own choices stay out


def test_a_broken_row_counts_as_failed(tmp_path):
    (tmp_path / "sw" / "x").mkdir(parents=True)
    (tmp_path / "sw" / "x" / "result.json").write_text("{ not json")
    df, issues = collect.collect([tmp_path / "sw"])
    assert [(i.kind, i.reason) for i in issues] == [("failed", "unreadable row")]


def test_a_missing_sweep_folder_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        collect.main([str(tmp_path / "nope"), "-o", str(tmp_path / "r.csv")])
    assert "nope" in capsys.readouterr().err


def test_a_generic_concept_choice_keeps_concepts_apart(tmp_path):
    for name in ("my_cat", "my_mug"):
        row = make_row("single_word", name)
        row["choices"]["concept"] = "folder"
        write_row(tmp_path / "sw" / name, row)
    df, _ = collect.collect([tmp_path / "sw"])
    assert sorted(df["concept"]) == ["my_cat", "my_mug"] and set(df["choice.concept"]) == {"folder"}


def test_expected_jobs_follow_hydra_with_wildcards(tmp_path):
    import yaml
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"params": {"method": "single_word,two_word", "concept": "all"}},
        "overrides": {"task": ["seed=range(0,2)", "+experiment=fig10", "model=glob(tiny*)"]}}}))
    jobs = collect.expected_jobs(tmp_path)
    assert len(jobs) == 4
    assert all({"concept=all", "model=all", "+experiment=fig10"} <= set(j) for j in jobs)
    # a wildcard matches any concept, a plain value must match the row
    rec = collect.row_to_record(make_row("two_word", "red_star", seed=1), tmp_path)
    assert collect._matches(["method=two_word", "concept=all", "seed=1"], rec)
    assert not collect._matches(["method=two_word", "concept=all", "seed=0"], rec)


def test_a_hydra_multirun_folder_gives_the_rows_of_its_own_jobs(hydra_sweep, tmp_path, capsys):
    """What collect's --help offers: the `_hydra/multirun-*` folder itself. Its rows live in
    the sweep folder above; another sweep's rows there stay out."""
    write_row(hydra_sweep / "other-job", make_row("two_word", "green_ring"))   # not this multirun's
    try:
        out = tmp_path / "r.csv"
        assert collect.main([str(hydra_sweep / "_hydra" / "multirun"), "-o", str(out)]) == 0
        err = capsys.readouterr().err
        df = pd.read_csv(out)
        assert sorted(zip(df["method"], df["concept"])) == [
            ("oom", "blue_cube"), ("oom", "red_star"), ("single_word", "blue_cube"), ("single_word", "red_star")]
        assert err.splitlines()[0] == "4 rows (2 ok), 4 failed, 2 missing"   # the same issues as the sweep folder
    finally:
        shutil.rmtree(hydra_sweep / "other-job")


def test_job_dir_is_relative_to_the_runs_root(tmp_path):
    runs = tmp_path / "runs"
    row = make_row("single_word", "red_star")
    row["sweep"] = "mysweep"
    write_row(runs / "mysweep" / "red_star-single_word-abc", row)
    for scanned in (runs, runs / "mysweep"):
        df, _ = collect.collect([scanned])
        assert df["job_dir"].tolist() == ["mysweep/red_star-single_word-abc"]
        assert df.attrs["runs_root"] == str(runs.resolve())
    out = tmp_path / "tables" / "r.csv"
    collect.write_outputs(df, [], out)
    assert json.loads(out.with_name("r.jobs.json").read_text())["runs_root"] == "../runs"
    assert str(tmp_path) not in out.read_text()    # no absolute folder of this machine in the table


def test_a_table_named_csv_gz_is_written_gzipped_with_the_same_sidecar_name(tmp_path):
    # the large committed example (analysis/examples/sweeps.csv.gz) is made by collect itself
    runs = tmp_path / "runs"
    for method in ("single_word", "two_word"):
        write_row(runs / "s" / f"red_star-{method}-abc", make_row(method, "red_star"))
    df, _ = collect.collect([runs])
    out = tmp_path / "sweeps.csv.gz"
    collect.write_outputs(df, [], out, [runs])
    assert out.read_bytes()[:2] == b"\x1f\x8b"                         # gzip's magic
    back = pd.read_csv(out)
    assert back["method"].tolist() == df["method"].tolist() and back.shape == df.shape
    assert json.loads((tmp_path / "sweeps.jobs.json").read_text())["ok"] == len(df)
    assert not (tmp_path / "sweeps.csv.jobs.json").exists()


def test_reruns_on_a_runs_root_leave_nothing_missing(tmp_path):
    """A finished job run again (Hydra's `_hydra/<time>` with no row of its own) and a run
    with no overrides at all are matched to their rows, by tinv_job.json or by choices."""
    import yaml
    runs = tmp_path / "runs"
    row = make_row("single_word", "red_star")
    row["sweep"] = "default"
    job = write_row(runs / "default" / "red_star-single_word-abc", row)
    for i, pointer in enumerate((True, False)):  # run.py's pointer; an older run without one
        hyd = runs / "default" / "_hydra" / f"2026-01-0{i + 1}_00-00-00"
        (hyd / ".hydra").mkdir(parents=True)
        (hyd / ".hydra" / "overrides.yaml").write_text("[]\n")
        (hyd / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {
            "method": "single_word", "concept": "red_star", "model": "toyworld", "eval": "paper",
            "logger": "none", "hydra/launcher": "basic"}}}}))
        (hyd / "run.log").write_text("[2026-01-01][tinv.harness.job][INFO] - job abc is done already\n")
        if pointer:
            (hyd / "tinv_job.json").write_text(json.dumps({"job_dir": str(job), "done_already": True}))
    df, issues = collect.collect([runs])
    assert len(df) == 1 and issues == []


def test_convergence_step_is_filled_at_collect_time_from_the_single_words_row():
    """A P+ row written before its single word finished (steps_to_reference_loss null, its
    curve kept) gets the step from the single word's row of the same model, concept, seed and
    training images in the table; a row whose curve never gets there stays null."""
    import json as _json

    import pandas as _pd

    from analysis.collect import fill_convergence
    curve = [[0, 0.09], [10, 0.07], [20, 0.05], [30, 0.04]]
    base = {"status": "ok", "model": "toyworld4", "seed": 23, "train_images": None}
    df = _pd.DataFrame([
        {**base, "method": "single_word", "concept": "red_star", "training.eval_loss_after": 0.055,
         "training.steps_to_reference_loss": 300, "training.fixed_batch_curve": _json.dumps(curve)},
        {**base, "method": "xti", "concept": "red_star", "training.eval_loss_after": 0.04,
         "training.steps_to_reference_loss": None, "training.fixed_batch_curve": _json.dumps(curve)},
        {**base, "method": "xti", "concept": "blue_heart", "training.eval_loss_after": 0.04,   # no reference
         "training.steps_to_reference_loss": None, "training.fixed_batch_curve": _json.dumps(curve)},
        {**base, "method": "neti", "concept": "red_star", "training.eval_loss_after": 0.08,
         "training.steps_to_reference_loss": None, "training.fixed_batch_curve": _json.dumps(curve[:2])},
        {**base, "seed": 24, "method": "xti", "concept": "red_star", "training.eval_loss_after": 0.04,
         "training.steps_to_reference_loss": None, "training.fixed_batch_curve": _json.dumps(curve)},
    ])
    out = fill_convergence(df)
    steps = out["training.steps_to_reference_loss"].tolist()
    assert steps[0] == 300 and steps[1] == 20                      # first logged step at or below 0.055
    assert all(_pd.isna(v) for v in steps[2:])                      # no reference; never reached; other seed
    assert out["training.steps_to_reference_loss_from"].tolist()[:2] == ["job", "collect"]
