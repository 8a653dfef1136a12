"""run.py end to end on the default (toy) model with the fast eval: rows, sweeps, reruns, bad input."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from .conftest import FAST, REPO, TOY, rows, run_cli, start_cli, sweep_name
from .test_config import METHODS

ROW_KEYS = {"schema", "job_id", "status", "error", "sweep", "choices", "config", "metrics",
            "metrics_ci", "per_prompt", "scores", "timings", "provenance", "artifacts"}
CLIP_METRICS = {"reconstruction_clip", "editability_clip_meanemb", "editability_clip_persample"}
BUILT_IN = sorted(p.stem for p in (REPO / "conf" / "concept").glob("*.yaml")
                  if p.stem not in ("folder",) and not p.stem.startswith("dreambench"))


def check_row(row: dict, folder: Path) -> None:
    """What every ok row must hold (DESIGN.md, docs/harness.md)."""
    assert row["status"] == "ok" and row["error"] is None, row.get("error")
    assert ROW_KEYS <= set(row)
    assert CLIP_METRICS <= set(row["metrics"])
    if TOY:
        assert "reconstruction_oracle" in row["metrics"] and "editability_oracle" in row["metrics"]
    for name, value in row["metrics"].items():
        if name in ("embedding_norm", "embedding_dist_init"):   # of the learned word: no samples
            assert row["metrics_ci"][name] is None and value >= 0 and value == row["training"][name]
            continue
        lo, hi = row["metrics_ci"][name]
        low, high = (0.0, 2.5) if name.endswith("_clipscore") else (-1.0, 1.0)   # 2.5 x max(cos, 0)
        assert low <= value <= high and lo <= value + 1e-9 and value <= hi + 1e-9, (name, value, lo, hi)
        assert len(row["scores"][name]) > 0 and all(math.isfinite(s) for s in row["scores"][name])
    edit = [p for p in row["per_prompt"] if p["role"] == "editability"]
    assert len(edit) == 2 and all(p["text"] and "{}" not in p["text"] for p in edit)  # fast: 2 prompts
    stages = {"invert_s", "sample_s", "evaluate_s", "total_s"}
    reuse = {"invert_reused_from", "invert_load_s", "invert_word_from"}   # another job's word (learned.py)
    assert stages <= set(row["timings"]) <= stages | reuse, sorted(row["timings"])
    assert row["timings"]["total_s"] >= row["timings"]["sample_s"] > 0
    prov = row["provenance"]
    assert prov["sha"] and prov["versions"]["torch"] and prov["device"] and prov["host"]
    assert prov["start"] <= prov["end"]
    for rel in row["artifacts"]["samples"].values():
        assert Image.open(folder / rel).size[0] > 0
    assert row["choices"]["method"] == row["config"]["method"]["name"]


def test_default_job_writes_a_row_with_wandb_inside_its_folder_and_reruns_do_nothing(runs, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    args = [a for a in FAST if a != "logger=none"]           # default logger: W&B offline
    first = run_cli(args, runs, tmp_home=home)
    assert first.returncode == 0, first.stderr[-3000:]
    [row] = rows(runs)
    folder = Path(row["folder"])
    check_row(row, folder)
    assert row["choices"]["logger"] == "wandb_offline"
    assert row["training"]["steps"] == 3 and len(json.loads((folder / "losses.json").read_text())["losses"]) == 3
    assert all((folder / p).is_file() for p in row["artifacts"]["embeddings"].values())
    assert list((folder / "wandb").glob("offline-run-*/run-*.wandb")), "offline W&B run not in the job folder"
    assert not any(home.rglob("*wandb*")), "W&B wrote into the home folder"

    again = run_cli(args, runs, tmp_home=home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "done already" in again.stdout + again.stderr
    [row2] = rows(runs)
    assert row2["provenance"] == row["provenance"]            # the same row: no work was done


def test_every_method_runs_end_to_end(runs):
    res = run_cli(["-m", f"method={','.join(METHODS)}", *FAST], runs)
    assert res.returncode == 0, res.stderr[-3000:]
    found = {r["choices"]["method"]: r for r in rows(runs, sweep_name(res))}
    assert set(found) == set(METHODS)
    for r in found.values():
        check_row(r, Path(r["folder"]))
    # references and baselines do what they say
    assert found["image_only"]["timings"]["invert_s"] < 0.01 and "embeddings" not in found["image_only"]["artifacts"]
    captions = [p for p in found["human_captions_short"]["per_prompt"] if p["role"] == "editability"]
    # drawn in turn (seed i under caption i mod 5): as many captions as seeds, up to all 5, and
    # each caption prompt has the samples the learned word's prompt has
    assert all(len(p["generated"]) == min(5, p["n"]) and "<S*>" not in p["generated"][0] for p in captions)
    word = [p for p in found["single_word"]["per_prompt"] if p["role"] == "editability"]
    assert [p["n"] for p in captions] == [p["n"] for p in word]
    assert list((runs / "_cache" / "prompt_only").glob("*.pt")), "prompt-only samples were not cached"
    assert "pivotal" in found["pivotal_tuning"]["training"]
    # one word for the three setups that start from the single word: the first in the sweep
    # (bipartite_inversion, the methods run in name order) learns it, the others reuse it
    maker = found["bipartite_inversion"]
    assert not {"invert_reused_from", "invert_word_from"} & set(maker["timings"])
    assert found["single_word"]["timings"]["invert_reused_from"] == maker["job_id"]
    assert found["pivotal_tuning"]["timings"]["invert_word_from"] == maker["job_id"]
    assert sum("invert_reused_from" in r["timings"] for r in found.values()) == 1   # no other setup's word is theirs
    # the same noise seeds for every setup
    assert len({json.dumps(r["eval_protocol"]["seeds"]) for r in found.values()}) == 1


def test_literal_concept_all_sweep_writes_one_row_per_pair_and_a_rerun_does_no_work(runs):
    cmd = ["-m", "method=progressive,regularized", "concept=all", *FAST]
    first = run_cli(cmd, runs)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = sweep_name(first)      # its own folder, named after the overrides, not runs/default
    assert sweep.startswith("method-progressive+regularized__concept-all__") and not (runs / "default").exists()
    got = rows(runs, sweep)
    pairs = {(r["choices"]["method"], r["choices"]["concept"]) for r in got}
    assert pairs == {(m, c) for m in ("progressive", "regularized") for c in BUILT_IN}
    assert len(got) == len(pairs)
    assert all(r["status"] == "ok" for r in got)

    second = run_cli(cmd, runs)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (second.stdout + second.stderr).count("done already") == len(pairs) + 1   # + the summary's count
    assert f"{len(pairs)} jobs: 0 ok, 0 failed, {len(pairs)} done already" in second.stderr
    assert [r["provenance"] for r in rows(runs, sweep)] == [r["provenance"] for r in got]


def test_a_job_that_fails_midway_writes_a_failed_row_and_runs_again(runs):
    bad = [*FAST, "model.evaluator=clip", "eval.clip.model=no-such-clip-model"]  # fails when scoring
    res = run_cli(bad, runs)
    assert res.returncode != 0
    [row] = rows(runs)
    assert row["status"] == "failed" and "no-such-clip-model" in row["error"]
    assert row["timings"]["sample_s"] > 0                    # it got as far as sampling
    again = run_cli(bad, runs)
    assert "done already" not in again.stdout + again.stderr and again.returncode != 0


@pytest.mark.parametrize("override, listed", [("method=no_such_method", "single_word"),
                                              ("concept=no_such_concept", "red_star")])
def test_unknown_choice_lists_the_valid_options(runs, override, listed):
    res = run_cli([override, *FAST], runs)
    assert res.returncode != 0
    assert override.split("=")[1] in res.stderr and listed in res.stderr
    assert not list(runs.rglob("result.json"))


def _corrupt(folder: Path) -> None:
    folder.mkdir()
    Image.new("RGB", (8, 8), "red").save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt"])
def test_bad_concept_folder_gives_one_clear_error_and_no_row(runs, tmp_path, case):
    folder = tmp_path / f"{case}_concept"
    if case == "empty":
        folder.mkdir()
    elif case == "corrupt":
        _corrupt(folder)
    res = run_cli(["concept=folder", f"concept.path={folder}", "concept.initializer=cat", *FAST], runs)
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(folder) in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert not list(runs.rglob("result.json"))


def test_concept_all_without_multirun_says_to_add_m(runs):
    res = run_cli(["concept=all", *FAST], runs)
    assert res.returncode == 2 and "-m" in res.stderr


def test_an_interrupted_job_resumes_from_its_checkpoint(runs):
    import os
    import signal
    import subprocess
    import time
    args = [a for a in FAST if a not in ("progress=false", "model.inversion.steps=3")]
    args += ["model.inversion.steps=200", "model.inversion.checkpoint_every=5"]   # seconds of work to interrupt
    proc = start_cli(args, runs, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not list(runs.glob("default/*/checkpoint/*.pt")) and time.time() < deadline:
            assert proc.poll() is None, "the job ended before writing a checkpoint"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)            # as a preempted node would
    finally:
        proc.wait()
    assert list(runs.glob("default/*/checkpoint/*.pt")), "no checkpoint within 300 s"
    assert not list(runs.rglob("result.json"))     # killed: no row, not even a failed one

    res = run_cli(args, runs)
    assert res.returncode == 0, res.stderr[-3000:]
    steps = [int(n) for n in re.findall(r"invert <S\*>: step (\d+)/200", res.stdout + res.stderr)]  # a pipe: plain lines
    assert steps and steps[0] >= 20 and steps[-1] == 200, steps   # no line for the steps behind the checkpoint
    [row] = rows(runs)
    assert row["status"] == "ok" and row["training"]["steps"] == 200


def test_a_preset_sweep_fans_out_concept_all(runs):
    # fig10's sweeper params say `concept: all`; image-only keeps each job to seconds
    res = run_cli(["-m", "+experiment=fig10", "method=image_only", *FAST], runs)
    assert res.returncode == 0, res.stderr[-3000:]
    got = rows(runs, "fig10")
    assert sorted(r["choices"]["concept"] for r in got) == BUILT_IN
    assert {r["choices"]["experiment"] for r in got} == {"fig10"}


@pytest.mark.slow
def test_plain_python_run_py_finishes_and_writes_a_row(runs, tmp_path):
    """`python run.py` as the README runs it: toy world, single_word, the paper's protocol
    (300 steps, DDIM 50, every prompt), but 8 samples per prompt instead of 64; the whole
    default job (4-5 min on 2 cores, 89% of it sampling) is timed in docs/speed.md."""
    res = run_cli(["eval.num_samples=8"], runs, tmp_home=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    [row] = rows(runs)
    assert row["status"] == "ok" and row["choices"]["eval"] == "paper"
    assert row["training"]["steps"] == 300 and row["config"]["eval"]["steps"] == 50
    assert all(p["n"] == 8 for p in row["per_prompt"])
    print("default job timings:", row["timings"])


def test_dvar_job_row_says_where_it_stopped(runs):
    """single_word_dvar end to end: the row's training.steps is DVAR's stop, and the
    fixed-batch loss it read is in the row (training.dvar) beside the training losses."""
    res = run_cli(["method=single_word_dvar", *FAST, "model.inversion.steps=60"], runs)
    assert res.returncode == 0, res.stderr[-3000:]
    [row] = rows(runs)
    check_row(row, Path(row["folder"]))
    d = row["training"]["dvar"]
    assert (d["window"], d["threshold"], d["max_steps"]) == (3, 0.15, 60)    # 0.0508 x 60 steps
    assert d["stopped_at"] == row["training"]["steps"] == len(d["losses"]) < 60
    assert d["steps_saved"] == 60 - d["stopped_at"] and d["ratio"] < 0.15
    losses = json.loads((Path(row["folder"]) / "losses.json").read_text())["losses"]
    assert len(losses) == d["stopped_at"]
