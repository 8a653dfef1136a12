"""The row's `training.steps_to_reference_loss`: the first logged step at which a run's
fixed-batch loss reached the single word's final one, for the same model, concept and seed,
found in the job store (tinv/harness/convergence.py), on constructed stores."""
from __future__ import annotations

import json
from pathlib import Path

from tinv.harness import convergence

MODEL = {"name": "toyworld", "inversion": {"steps": 300}}
CONCEPT = {"name": "red_star", "path": "toyworld/concepts/red_star"}


def cfg(root: Path, method: str, **kw) -> dict:
    return {"results_root": str(root), "method": {"name": method}, "model": MODEL, "concept": CONCEPT,
            "seed": 23, "train_images": None, **kw}


def put_row(root: Path, name: str, config: dict, after: float, status: str = "ok") -> None:
    folder = root / "jobs" / name
    folder.mkdir(parents=True)
    row = {"job_id": name.rsplit("-", 1)[1], "status": status, "config": config,
           "training": {"eval_loss_after": after}}
    (folder / "result.json").write_text(json.dumps(row))


CURVE = [[0, 0.100], [10, 0.090], [20, 0.080], [30, 0.075], [40, 0.070]]


def test_a_successor_row_says_when_it_reached_the_paired_single_words_final_loss(tmp_path):
    put_row(tmp_path, "red_star-single_word-aaa", cfg(tmp_path, "single_word"), 0.081)
    # not its pair: another seed (lower loss), another model's budget, a failed row; none is read
    put_row(tmp_path, "red_star-single_word-bbb", cfg(tmp_path, "single_word", seed=7), 0.05)
    put_row(tmp_path, "red_star-single_word-ccc",
            cfg(tmp_path, "single_word", model={**MODEL, "inversion": {"steps": 30}}), 0.05)
    put_row(tmp_path, "red_star-single_word-ddd", cfg(tmp_path, "single_word"), 0.01, status="failed")
    got = convergence.fields(cfg(tmp_path, "xti"), "red_star", CURVE, 0.070)
    assert got["reference_loss"] == {"method": "single_word", "job_id": "aaa", "eval_loss_after": 0.081}
    assert got["steps_to_reference_loss"] == 20 and "note" not in got
    assert got["fixed_batch_curve"] == CURVE


def test_never_reaching_it_and_a_missing_reference_are_null_with_a_note(tmp_path):
    mine = cfg(tmp_path, "neti")
    got = convergence.fields(mine, "red_star", CURVE, 0.070)           # the store holds no single word
    assert got["steps_to_reference_loss"] is None and got["reference_loss"] is None
    assert "no finished single_word row" in got["note"]
    put_row(tmp_path, "red_star-single_word-aaa", cfg(tmp_path, "single_word"), 0.06)
    got = convergence.fields(mine, "red_star", CURVE, 0.070)
    assert got["steps_to_reference_loss"] is None and got["reference_loss"]["job_id"] == "aaa"
    assert "never reached single_word's final 0.06000 in 40 steps (lowest 0.07000)" in got["note"]
    got = convergence.fields(mine, "red_star", [], 0.070)                # an inversion stored before curves
    assert got["steps_to_reference_loss"] is None and "before runs logged" in got["note"]


def test_the_single_words_own_row_is_its_own_reference(tmp_path):
    got = convergence.fields(cfg(tmp_path, "single_word"), "red_star", CURVE, 0.075)
    assert got["reference_loss"]["job_id"] == "this job" and got["steps_to_reference_loss"] == 30
