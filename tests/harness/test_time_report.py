"""The sweep summary says where the time went: per setup, inversion / sampling /
evaluation wall time, the rest of the jobs' time and the packs' waiting (tinv/harness/time_report.py)."""
from __future__ import annotations

import re

import pytest

from tinv.harness import time_report

from .conftest import FAST, rows, run_cli

COLUMNS = ("jobs", "reused", "invert", "sample", "evaluate", "other", "pack wait", "total")


def _row(method: str, **t) -> dict:
    return {"choices": {"method": method}, "timings": t}


def test_the_breakdown_adds_up_by_construction():
    rows_ = [_row("single_word", invert_s=3.0, sample_s=5.0, evaluate_s=1.0, total_s=10.0,
                  packed_invert_s=6.0, packed_with=["b"], packed_prep_s=4.0),
             _row("single_word", invert_s=0.0, sample_s=5.0, evaluate_s=1.0, total_s=6.5, invert_reused_from="a"),
             _row("image_only", invert_s=0.0, sample_s=0.0, evaluate_s=0.5, total_s=2.0)]
    b = time_report.breakdown(rows_)
    assert list(b) == ["single_word", "image_only"]
    tuned = time_report.breakdown([_row("pivotal_tuning", invert_s=2.0, sample_s=5.0, total_s=8.0, invert_word_from="a")])
    assert tuned["pivotal_tuning"]["reused"] == 1 and tuned["pivotal_tuning"]["invert"] == 2.0   # tuned from a's word
    assert b["single_word"] == {"jobs": 2, "reused": 1, "invert": 3.0, "sample": 10.0, "evaluate": 2.0,
                                "other": 1.5, "pack wait": 2.0, "total": 18.5}     # 4.0 shared by 2 jobs
    assert b["image_only"]["other"] == 1.5 and b["image_only"]["pack wait"] == 0.0
    text = time_report.table(rows_, done=3, wall_s=25.0)
    assert "3 jobs run here; 3 finished before this sweep, not counted" in text
    assert "sweep wall 25.0 s: 4.5 s outside the jobs" in text
    assert "the jobs ran side by side" in time_report.table(rows_, wall_s=10.0)


def _parse(stderr: str) -> tuple[dict[str, dict[str, float]], float, float]:
    block = stderr[stderr.index("where the time went"):]
    table = {}
    for line in block.splitlines()[2:]:
        m = re.match(r"^  (\S+)" + r"\s+([\d.]+)" * len(COLUMNS) + r"$", line)
        if not m:
            break
        table[m.group(1)] = dict(zip(COLUMNS, map(float, m.groups()[1:])))
    wall, outside = map(float, re.search(r"sweep wall ([\d.]+) s: ([\d.]+) s outside the jobs", block).groups())
    return table, wall, outside


def test_a_tiny_packed_sweep_says_where_its_time_went(runs):
    # 4 learners (2 concepts x 2 guidances: 2 inversions, packed, and 2 reuses) + 4 image-only
    sweep = ["-m", "method=single_word,image_only", "concept=red_star,blue_heart", "eval.guidance=5.0,2.0",
             *FAST, "cpu_threads=1", "sweep=tiny", "hydra/launcher=packed", "hydra.launcher.pack=2"]
    res = run_cli(sweep, runs)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "where the time went, seconds of wall time (8 jobs run here):" in res.stderr
    table, wall, outside = _parse(res.stderr)
    assert set(table) == {"single_word", "image_only", "all"}, res.stderr[-3000:]
    found = rows(runs, "tiny")
    for setup in ("single_word", "image_only"):
        mine = [r["timings"] for r in found if r["choices"]["method"] == setup]
        got = table[setup]
        assert got["jobs"] == len(mine) == 4
        for column, key in (("invert", "invert_s"), ("sample", "sample_s"), ("evaluate", "evaluate_s")):
            assert got[column] == pytest.approx(sum(t[key] for t in mine), abs=0.051), (setup, column)
        wait = sum(time_report.pack_wait_s(t) for t in mine)
        assert got["pack wait"] == pytest.approx(wait, abs=0.051)
        assert got["total"] == pytest.approx(sum(t["total_s"] for t in mine) + wait, abs=0.051)
    assert table["single_word"]["reused"] == 2 and table["single_word"]["pack wait"] > 0
    assert table["image_only"]["invert"] == table["image_only"]["pack wait"] == 0
    # three numbers each printed to 0.1: the printed sum may be one step off the sum of the printed parts
    assert table["all"]["total"] == pytest.approx(table["single_word"]["total"] + table["image_only"]["total"],
                                                  abs=0.11)
    assert wall == pytest.approx(table["all"]["total"] + outside, abs=0.11) and outside > 0

    again = run_cli(sweep, runs)                 # every job done: no time to account for
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(0 jobs run here; 8 finished before this sweep, not counted): nothing ran" in again.stderr
