"""User mistakes: one `error:` line, exit code 2, no row; high-depth images load with
their values; Ctrl-C is one line and a rerun resumes, visibly; output files are readable
like any other; grids carry their prompts; --help explains."""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinv.engine.data import ConceptError, load_concept_images, load_image

from .conftest import FAST, REPO, catches_sigint, one_error, rows, run_cli, start_cli

TINY_LDM = ["model=tiny_ldm", "eval.clip.model=tinv-tiny-clip", "eval.clip.pretrained=null", "model.dino=false",
            "eval=fast", "eval.steps=2", "logger=none", "model.inversion.steps=3", "progress=false"]


@pytest.fixture
def cat_folder(tmp_path) -> Path:
    folder = tmp_path / "my_cat"
    folder.mkdir()
    for i, color in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (32, 32), color).save(folder / f"{i}.png")
    return folder


def test_a_multi_token_initializer(runs, cat_folder):
    res = run_cli(["concept=folder", f"concept.path={cat_folder}", "concept.initializer=stuffed animal", *FAST], runs)
    line = one_error(res, runs)
    assert "'stuffed animal'" in line and "2 tokens" in line


def test_an_initializer_ldm_bert_reads_as_unk(runs, cat_folder):
    res = run_cli(["concept=folder", f"concept.path={cat_folder}", "concept.initializer='cat☃'", *TINY_LDM], runs)
    line = one_error(res, runs)
    assert "'cat☃'" in line and "[UNK]" in line


@pytest.mark.parametrize("override, listed", [("method=singleword", "single_word"),
                                              ("concept=no_such_concept", "red_star"),
                                              ("model=sd1.5", "sd15"),
                                              ("model=sd16", "did you mean sd15?"),
                                              ("+experiment=fig11", "fig10")])
def test_an_unknown_option_lists_the_options(runs, override, listed):
    res = run_cli([override, *FAST], runs)
    line = one_error(res, runs)
    assert override.split("=")[1] in line and listed in line


@pytest.mark.parametrize("override, says", [
    ("concept.initializr=star", "did you mean concept.initializer?"),
    ("evl.steps=3", "did you mean eval?"),
    ("method.inversion.lrr=1", "did you mean method.inversion.lr?"),
    ("concept.initializer=star\u2603", "quote the value"),
    ("+concept.initializer=star", "drop the +"),
    ("hydra/launcher=slurmm", "did you mean slurm?"),
    ("hydra.launcher.partition=gpu", "hydra/launcher=slurm"),
])
def test_hydras_own_errors_are_one_line_with_a_fix(runs, override, says):
    res = run_cli([override, *FAST], runs)
    line = one_error(res, runs)
    assert says in line and override.split("=")[0].lstrip("+") in line
    assert "+concept.initializr" not in line and "HYDRA_FULL_ERROR" not in res.stderr
    assert not (runs / "default").exists()            # not even Hydra's _hydra/ log folder


def test_a_run_that_makes_no_job_leaves_no_log_folder(runs, tmp_path):
    # found inside the job, after Hydra made its log folder: the folder goes again
    res = run_cli([f"concept.path={tmp_path / 'nothing_here'}", *FAST], runs)
    assert "does not exist" in one_error(res, runs)
    assert not (runs / "default").exists(), list(runs.rglob("*"))


@pytest.mark.parametrize("args", [["eval.num_samples=abc"], ["-m", "eval.num_samples=4,abc"]])
def test_a_bad_field_is_found_before_hydra_starts_even_in_a_later_job_of_a_sweep(runs, args):
    res = run_cli([*args, *FAST], runs)
    line = one_error(res, runs)
    assert "eval.num_samples='abc'" in line and "e.g. eval.num_samples=16" in line
    assert not runs.exists(), list(runs.rglob("*"))       # job 0 did not run first


def test_an_unknown_option_in_a_sweep_is_named(runs):
    res = run_cli(["-m", "method=single_word,singleword", *FAST], runs)
    line = one_error(res, runs)
    assert "method=singleword" in line and "did you mean single_word" in line


def test_every_junk_file_is_named(runs, cat_folder):
    (cat_folder / "notes.txt").write_text("not an image")
    (cat_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (cat_folder / "captions.yaml").write_text("short: [a cat]\n")     # belongs there: not junk
    res = run_cli(["concept=folder", f"concept.path={cat_folder}", "concept.initializer=cat", *FAST], runs)
    line = one_error(res, runs)
    assert "2 unusable file(s)" in line and "notes.txt" in line and "broken.png" in line
    assert "captions.yaml" not in line


def write_png16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit PNG written by hand (PIL writes 16-bit grayscale only): gray, or RGB."""
    arr = np.asarray(arr, dtype=">u2")
    h, w = arr.shape[:2]
    color = 0 if arr.ndim == 2 else 2
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 3)])
def test_a_16_bit_png_loads_with_its_real_values(tmp_path, shape):
    values = np.random.default_rng(0).integers(0, 65536, shape).astype(np.uint16)
    write_png16(tmp_path / "deep.png", values)
    got = np.asarray(load_image(tmp_path / "deep.png", 16), dtype=np.float64) / 255   # same size: no resampling
    want = values / 65535.0
    want = want[..., None].repeat(3, -1) if want.ndim == 2 else want
    assert np.abs(got - want).max() <= 1 / 255 + 1e-9          # 8-bit precision, not clipped to white
    assert got.mean() == pytest.approx(want.mean(), abs=0.01) and got.mean() < 0.7


def test_a_float_image_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((8, 8), 0.25, np.float32), mode="F").save(tmp_path / "f.tiff")
    got = np.asarray(load_image(tmp_path / "f.tiff", 8), dtype=np.float64) / 255
    assert got == pytest.approx(np.full((8, 8, 3), 0.25), abs=1 / 255)


def test_junk_in_a_folder_is_all_named_by_the_loader(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
    for name in ("a.txt", "b.jpg"):
        (tmp_path / name).write_bytes(b"junk")
    with pytest.raises(ConceptError, match=r"2 unusable.*a\.txt.*b\.jpg"):
        load_concept_images(tmp_path, 8)


def test_ctrl_c_is_one_line_and_a_rerun_resumes_visibly(runs):
    args = [a for a in FAST if a not in ("progress=false", "model.inversion.steps=3")]
    args += ["model.inversion.steps=200", "model.inversion.checkpoint_every=5", "progress=false"]
    proc = start_cli(args, runs, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(runs.glob("default/*/checkpoint/*.pt")) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    assert proc.poll() is None, "the job ended before it could be interrupted: raise its steps"
    assert catches_sigint(proc.pid), "the job ignores SIGINT: start it with start_cli (default_sigint)"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (f"exit {proc.returncode}; rows: {list(runs.rglob('result.json'))}\n"
                                    f"stderr: {err[-2000:]}\nstdout: {out[-2000:]}")
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("interrupted:")]
    assert "stopped while inverting" in line and "checkpoint holds step" in line and "resumes" in line
    assert not list(runs.rglob("result.json"))

    res = run_cli(args, runs)
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "attempt 2" in log and "resuming the inversion from its checkpoint at step" in log
    [row] = rows(runs)
    # the closing lines: each export, and the exact word it expects in a prompt
    folder, files = Path(row["folder"]), row["artifacts"]["embeddings"]
    assert row["artifacts"]["triggers"] == {"diffusers": "<s*>", "a1111": Path(files["a1111"]).stem, "authors": "*"}
    assert f'pipe.load_textual_inversion("{folder / files["diffusers"]}"), then write <s*> in prompts' in log
    assert f"copy {folder / files['a1111']} into its embeddings/ folder, then write {folder.name.lower()} " in log
    assert f"--embedding_path {folder / files['authors']}, then write *" in log
    first, second = row["attempts"]
    assert first["status"] == "interrupted" and second["status"] == "ok"
    assert second["resumed_from_step"] >= 5 and first["resumed_from_step"] is None
    assert second["timings"] == row["timings"] and "invert_s" in second["timings"]
    assert first["alive_s"] > 0 and first["end"] is not None

    # files the job wrote are readable like any other output (mkstemp would make them 0600)
    folder = Path(row["folder"])
    mask = os.umask(0)
    os.umask(mask)
    for rel in ["result.json", "losses.json", "attempts.json", row["artifacts"]["embeddings"]["a1111"],
                row["artifacts"]["embeddings"]["authors"], "checkpoint/inversion_checkpoint.pt"]:
        assert (folder / rel).stat().st_mode & 0o777 == 0o666 & ~mask, rel

    # every grid is labelled with the text its samples were made from
    texts = {p["role"] + str(i): p["generated"][0] for i, p in enumerate(row["per_prompt"])}
    grids = [Image.open(folder / rel) for rel in row["artifacts"]["samples"].values()]
    assert sorted(g.info["prompt"] for g in grids) == sorted(texts.values())
    assert all(int(g.info["label_px"]) > 0 for g in grids)


def test_help_has_the_groups_their_options_and_examples():
    res = subprocess.run([sys.executable, str(REPO / "run.py"), "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "method: " in out and "single_word" in out and "pivotal_tuning" in out
    assert "model: " in out and "sd15" in out and "concept: " in out and "red_star" in out
    assert "python run.py -m +experiment=fig10" in out and "model.path=" in out
    assert "eval.clip.pretrained=/models/" in out and "eval.dino.pretrained=/models/" in out   # offline, whole
    assert "<s*>" in out and "embeddings.pt *" in out          # the word each export expects
    assert len(out.splitlines()) < 60          # not Hydra's 229-line config dump


def test_ldm_bert_reads_cat_as_cat_so_they_are_one_job():
    from omegaconf import OmegaConf

    from tinv.harness.plan import job_location

    from .test_config import _compose

    def job_id(*overrides):
        return job_location(OmegaConf.to_container(_compose(*overrides), resolve=True))[0]
    assert job_id("model=tiny_ldm", "concept.initializer=Star") == job_id("model=tiny_ldm", "concept.initializer=star")
    assert job_id("model=tiny_sd", "concept.initializer=Star") != job_id("model=tiny_sd", "concept.initializer=star")


def test_an_ldm_job_exports_only_the_format_that_loads_it_and_says_its_word(runs, cat_folder):
    res = run_cli(["concept=folder", f"concept.path={cat_folder}", "concept.initializer=Cat", *TINY_LDM], runs)
    assert res.returncode == 0, res.stderr[-3000:]
    [row] = rows(runs)
    assert set(row["artifacts"]["embeddings"]) == {"authors"} and row["artifacts"]["triggers"] == {"authors": "*"}
    assert not list(Path(row["folder"]).glob("embeddings/*.safetensors"))
    assert row["concept"]["initializer"] == "cat"
    assert "--embedding_path" in res.stdout + res.stderr and "load_textual_inversion" not in res.stdout + res.stderr


def test_a_tiny_image_trains_with_a_warning(tmp_path, caplog):
    import logging

    from tinv.harness.concepts import _warn_small
    Image.new("RGB", (1, 1), "red").save(tmp_path / "dot.png")
    Image.new("RGB", (32, 32), "red").save(tmp_path / "fine.png")
    with caplog.at_level(logging.WARNING, logger="tinv.harness.concepts"):
        _warn_small(sorted(tmp_path.glob("*.png")), 32)
    [record] = caplog.records
    assert "dot.png (1x1)" in record.getMessage() and "fine.png" not in record.getMessage()
