"""Rows of different protocols are never pooled: the tools refuse, the report splits."""
from __future__ import annotations

import re

import numpy as np
import pytest

from analysis import claims, collect, effects, plot_tradeoff, protocol, report
from analysis.table import load_results
from tests.analysis.conftest import make_row, write_row

SETUPS = ("single_word", "three_word", "image_only", "prompt_only")


def _rows(root, concepts, eval_name="paper", num_samples=6, steps=50, kind="object", rng=None):
    for concept in concepts:
        for method in SETUPS:
            row = make_row(method, concept, rng=rng)
            row["choices"]["eval"] = eval_name
            row["config"]["eval"].update(name=eval_name, num_samples=num_samples, steps=steps)
            row["config"]["concept"]["kind"] = row["concept"]["kind"] = kind
            row["job_id"] += f"-{eval_name}"
            write_row(root / f"{concept}-{method}-{eval_name}", row)


@pytest.fixture(scope="module")
def mixed_csv(tmp_path_factory):
    """The issue's case: an eval=fast sweep written next to eval=paper rows."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    _rows(root / "runs", ("red_star", "blue_cube"), rng=rng)
    _rows(root / "runs", ("red_star", "blue_cube", "green_ring"), "fast", num_samples=4, steps=4, rng=rng)
    out = root / "results.csv"
    assert collect.main([str(root / "runs"), "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("tool", [plot_tradeoff, effects, claims, report])
def test_two_protocols_are_split_or_refused_never_pooled(mixed_csv, tool, tmp_path, capsys):
    out = tmp_path / ("out.html" if tool is report else "out.md" if tool is claims else "out.png")
    assert tool.main([str(mixed_csv), "-o", str(out), "--n-boot", "50"]) == (2 if tool is effects else 0)
    err = capsys.readouterr().err.strip().splitlines()
    if tool is report:  # the report makes one section per protocol instead
        text = out.read_text()
        heads = re.findall(r"<h2>Objects: ([^<]*)</h2>", text)
        assert len(heads) == 2 and any("6 samples per prompt" in h for h in heads) \
            and any("4 samples per prompt" in h for h in heads)
        return
    if tool is claims:  # so does claims.md, one section per protocol
        heads = re.findall(r"^## Objects: (.*)$", out.read_text(), re.M)
        assert len(heads) == 2 and "4 samples per prompt" in heads[0] and "6 samples per prompt" in heads[1]
        return
    if tool is plot_tradeoff:  # and the trade-off figure, one panel per protocol
        assert out.exists() and out.with_suffix(".pdf").exists()
        return
    assert len(err) == 1 and err[0].startswith("error:")
    assert "samples per prompt (eval.num_samples: 4 (12 rows), 6 (8 rows))" in err[0]
    assert "--where eval=fast" in err[0]
    assert not out.exists()  # nothing half-written


def test_picking_one_protocol_with_where_works(mixed_csv, tmp_path):
    assert plot_tradeoff.main([str(mixed_csv), "-o", str(tmp_path / "t.png"), "--n-boot", "50",
                               "--where", "eval=paper"]) == 0


def _objects_and_styles_csv(tmp_path, seed: int):
    """A collected table of two object concepts and one style concept."""
    rng = np.random.default_rng(seed)
    _rows(tmp_path / "runs", ("red_star", "blue_cube"), rng=rng)
    _rows(tmp_path / "runs", ("brick_pixel",), kind="style", rng=rng)
    csv = tmp_path / "r.csv"
    collect.main([str(tmp_path / "runs"), "-o", str(csv)])
    return csv


def test_objects_and_styles_are_separate(tmp_path):
    csv = _objects_and_styles_csv(tmp_path, seed=1)
    df = load_results(csv)
    with pytest.raises(protocol.IncomparableRows, match=r"concept kind .*--where concept.kind=object"):
        plot_tradeoff.plot_tradeoff(df)
    groups = protocol.comparable_groups(df)
    assert [v["concept.kind"] for v, _ in groups] == ["object", "style"]
    assert [g["concept"].nunique() for _, g in groups] == [2, 1]
    [page] = report.write_reports(csv, tmp_path / "rep.html", n_boot=30, galleries=False)
    text = page.read_text()
    assert text.index("<h2>Objects: n = 2 object concepts") < text.index("<h2>Styles: n = 1 style concept ")


def test_a_guidance_sweep_is_its_own_protocol_except_for_its_figure(results_csv):
    df = load_results(results_csv)
    with pytest.raises(protocol.IncomparableRows, match="guidance scale"):
        protocol.require_comparable(df)
    protocol.require_comparable(df, ignore=(protocol.GUIDANCE,))


def test_tradeoff_draws_one_panel_per_group_titled_with_its_protocol(tmp_path, capsys):
    """Objects and styles in one table: two panels, each with its own setups' points; no pooling."""
    csv = _objects_and_styles_csv(tmp_path, seed=2)
    df = load_results(csv)
    fig, summary = plot_tradeoff.plot_tradeoff_groups(df, n_boot=50)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2
    assert "Objects: n = 2 object concepts" in panels[0].get_title() and \
        "Styles: n = 1 style concept" in panels[1].get_title()
    for ax, kind in zip(panels, ("object", "style")):
        drawn = {l.get_gid() for l in ax.get_lines() if l.get_gid() and not l.get_gid().startswith("label:")}
        assert drawn == set(SETUPS)
        # each point is that group's own mean: pooling would put objects and styles together
        rows = df[df["concept.kind"] == kind]
        point = next(line for line in ax.get_lines() if line.get_gid() == "single_word")  # the data line
        own = rows[rows["method"] == "single_word"]
        assert np.isclose(point.get_ydata()[0], own.groupby("concept")["reconstruction_clip"].mean().mean())
    assert sorted(summary["group"].str.split(":").str[0].unique()) == ["Objects", "Styles"]
    out = tmp_path / "fig.png"
    assert plot_tradeoff.main([str(csv), "-o", str(out), "--n-boot", "50"]) == 0
    assert out.exists() and out.with_suffix(".pdf").exists()
