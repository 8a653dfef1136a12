"""Progress off a terminal: one plain line per stage at every tenth (step, loss, rate, ETA),
nothing per step, no carriage returns; the libraries' own bars follow `progress=`."""
from __future__ import annotations

import logging
import re

from tinv.engine import progress

from .conftest import FAST, run_cli


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tinv.engine.progress"]


def test_a_stage_says_each_tenth_once_with_its_loss_rate_and_eta(caplog, monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="tinv.engine.progress")
    bar = progress.bar(range(250), total=250, desc="invert <S*>")
    for i in bar:
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}", refresh=False)
    lines = _lines(caplog)
    assert len(lines) == 10, lines
    assert lines[0].startswith("invert <S*>: step 25/250 (10%), loss ") and "step/s, ETA " in lines[0]
    assert lines[-1].startswith("invert <S*>: step 250/250 (100%)") and "took " in lines[-1]


def test_a_resumed_or_stopped_stage_does_not_repeat_and_says_where_it_stopped(caplog, monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="tinv.engine.progress")
    bar = progress.bar(range(50, 80), initial=50, total=100, desc="invert")
    for _ in bar:
        pass
    assert [re.search(r"step (\d+)/", x).group(1) for x in _lines(caplog)] == ["60", "70", "80"]
    caplog.clear()
    bar = progress.bar(total=100, desc="sampling")
    bar.update(5)
    bar.close()
    [line] = _lines(caplog)
    assert "step 5/100 (5%)" in line


def test_on_a_terminal_it_is_tqdm(monkeypatch):
    from tqdm.auto import tqdm
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    assert isinstance(progress.bar(range(3), desc="x"), tqdm)


def test_the_libraries_bars_are_off_with_progress_false():
    from transformers.utils import logging as transformers_logging
    progress.third_party(False)
    assert not transformers_logging.is_progress_bar_enabled()


def test_a_job_logged_to_a_file_has_a_line_per_tenth_not_per_step(runs):
    args = [a for a in FAST if a not in ("progress=false", "model.inversion.steps=3")]
    res = run_cli([*args, "progress=true", "model.inversion.steps=40"], runs)    # stderr is a pipe
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr                     # the lines go where Hydra sends log lines
    assert "\r" not in out and "Loading weights" not in out
    invert = [x for x in out.splitlines() if "invert <S*>: step " in x]
    assert len(invert) == 10 and "step 40/40 (100%)" in invert[-1], invert
    assert all(re.search(r"loss \d", x) and "step/s" in x for x in invert)
