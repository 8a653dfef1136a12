"""method=masked_word through the harness: a toy job writes its row; a folder concept's mask
of the wrong size is one `error:` line naming the file, exit 2, before any job folder."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from .conftest import FAST, TOY, error_lines, rows, run_cli


def test_a_masked_word_toy_job_writes_a_row(runs):
    res = run_cli(["method=masked_word", "concept=red_star", *FAST], runs)
    assert res.returncode == 0, res.stderr[-3000:]
    [row] = rows(runs)
    assert row["status"] == "ok" and row["config"]["method"]["inversion"]["learner"] == "masked_word"
    t = row["training"]
    assert "leaves_out" in t["notes"] and "learner" not in t       # a loss variant of the word: no state of its own
    assert t["embedding_dist_init"] > 0 and "reconstruction_clip" in row["metrics"]
    assert (Path(row["folder"]) / row["artifacts"]["embeddings"]["diffusers"]).is_file()
    if TOY:     # the built-in concept's masks are rendered, none missing
        assert "have no mask" not in t["notes"]["leaves_out"]


def test_a_mask_of_the_wrong_size_is_one_error_before_any_work(runs, tmp_path):
    folder = tmp_path / "mug"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (200, 40 * i, 40)).save(folder / f"{i}.png")
    Image.new("L", (32, 32), 255).save(folder / "0.png.mask.png")
    Image.new("L", (20, 32), 255).save(folder / "1.png.mask.png")
    res = run_cli(["method=masked_word", "concept=folder", f"concept.path={folder}", "concept.initializer=cup",
                   *FAST], runs)
    assert res.returncode == 2, res.stderr[-2000:]
    [line] = error_lines(res.stderr)
    assert str(folder / "1.png.mask.png") in line and "20x32" in line and "32x32" in line, line
    assert "Traceback" not in res.stderr and not list(runs.rglob("result.json"))
    assert not (runs / "jobs").exists() or not any((runs / "jobs").iterdir())
