"""analysis/controls.py: the successors' positive control (issue 29), on tables whose truth is
set by construction and on the committed successors example."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis import controls

EXAMPLE = Path(__file__).resolve().parents[2] / "analysis" / "examples" / "successors.csv"
CONCEPTS = ("red_star", "blue_heart", "green_cross", "pink_square")


def table(values: dict[str, list[float]], kind: str = "object") -> pd.DataFrame:
    rows = [{"method": m, "concept": c, "concept.kind": kind, "status": "ok", "reconstruction_oracle": v}
            for m, vs in values.items() for c, v in zip(CONCEPTS, vs)]
    return pd.DataFrame(rows)


def test_a_method_above_prompt_only_everywhere_passes_and_one_below_on_one_concept_fails():
    df = table({"prompt_only": [0.25, 0.25, 0.30, 0.25], "good": [0.6, 0.5, 0.35, 0.9],
                "bad": [0.6, 0.5, 0.30, 0.9], "image_only": [1, 1, 1, 1]})
    v = controls.verdicts(controls.margins(df)).set_index("method")
    assert set(v.index) == {"good", "bad"}                      # references are not judged
    assert v.loc["good", "passes"] and v.loc["good", "min_margin"] == pytest.approx(0.05)
    assert not v.loc["bad", "passes"] and v.loc["bad", "failed"] == "green_cross"   # a tie is no win


def test_styles_are_left_out_and_the_cli_exit_code_says_whether_all_pass(tmp_path, capsys):
    df = pd.concat([table({"prompt_only": [0.2] * 4, "m": [0.5] * 4}),
                    table({"prompt_only": [0.2] * 4, "m": [0.1] * 4}, kind="style")])
    f = tmp_path / "rows.csv"
    df.to_csv(f, index=False)
    assert controls.main([str(f), "-o", str(tmp_path / "c.md")]) == 0
    assert "| m | 4 | +0.300" in (tmp_path / "c.md").read_text()
    pd.concat([df, table({"w": [0.1, 0.9, 0.9, 0.9]})]).to_csv(f, index=False)
    assert controls.main([str(f)]) == 1
    assert "FAILS on red_star" in capsys.readouterr().out


def test_bad_input_is_one_error_line(tmp_path, capsys):
    assert controls.main([str(tmp_path / "none.csv")]) == 2
    assert capsys.readouterr().err.startswith("error: no such table")
    f = tmp_path / "rows.csv"
    table({"m": [0.5] * 4}).to_csv(f, index=False)
    assert controls.main([str(f)]) == 2
    assert "prompt_only" in capsys.readouterr().err


def test_every_port_in_the_committed_successors_example_beats_prompt_only_on_every_object():
    v = controls.verdicts(controls.margins(pd.read_csv(EXAMPLE)))
    assert {"xti", "neti", "custom_diffusion", "dreambooth_lora"} <= set(v["method"])   # each port of the successors preset
    assert v["passes"].all(), controls.render(v)
