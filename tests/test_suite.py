"""The GPU suite (issue 14) in its --quick form: the same parts, processes and files as on
a GPU, with tiny models on the CPU, so that the one command a GPU lease runs cannot rot.

The full --quick run takes about 70 s of CPU (five part processes, each importing torch,
diffusers and open_clip); no timing is asserted."""
import json
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tinv.tools.suite import COMMON, PARTS, SECTIONS

REPO = Path(__file__).resolve().parents[1]
# values that are null by design on the CPU
CPU_NULLS = {("harness", "peak_mem_reserved_gib")}


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _suite(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinv.tools.suite", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_quick_suite_writes_every_key(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "scripts/device/suite.sh", "--quick", "--out", str(out)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    suite = json.loads((out / "suite.json").read_text())
    assert suite["quick"] and suite["parts"] == list(PARTS)
    for part in PARTS:
        sec = suite[part]
        assert list(sec) == list(COMMON + SECTIONS[part]), part
        assert sec["status"] == "ok" and sec["reason"] is None, (part, sec["reason"])
        nulls = [k for k, v in sec.items() if v is None and k != "reason" and (part, k) not in CPU_NULLS]
        assert not nulls, (part, nulls)

    b = suite["bench"]
    assert b["device"] == "cpu" and b["compile_backend"] == "eager" and b["compile_s"] > 0
    assert math.isclose(b["ratio_packed"], b["baseline_s_per_step"] / b["tinv_packed_s_per_concept_step"])
    assert math.isclose(b["ratio_sampling"], b["baseline_sampling_s"] / b["tinv_sampling_s"])
    assert json.loads((out / "bench.json").read_text())["command"].startswith("python -m tinv.tools.bench --compile")
    t = suite["targets"]   # a tiny CPU model says nothing about the GPU targets
    assert not t["applies"] and "--quick" in t["reason"] and t["inversion_packed"]["meets_target"] is None

    h = suite["harness"]
    assert h["job_status"] == "ok" and h["peak_mem_gib"] > 0
    assert h["invert_s"] + h["sample_s"] + h["evaluate_s"] <= h["total_s"]
    p = suite["profile"]
    assert p["top_ops"] and all(0 < o["share"] <= 1 for o in p["top_ops"])
    assert p["top_ops"][0]["self_ms_per_step"] >= p["top_ops"][-1]["self_ms_per_step"]
    assert suite["pretrain"]["large_batch_samples_per_s"] > 0
    sc = suite["successors"]   # every learner timed beside the single word
    assert set(sc["s_per_step"]) == set(sc["learners"]) >= {"word", "xti", "neti", "custom_diffusion", "lora"}
    assert not sc["errors"] and sc["ratio_to_word"]["word"] == 1.0
    d = suite["dryrun"]    # the single word's dry run on SD 1.5's full-size weights, its export loaded
    assert d["methods"] == ["single_word"] and d["export_ok"] == {"single_word": True} and not d["errors"]
    assert d["s_per_step"]["single_word"] > 0 and d["peak_mem_gib"]["single_word"] > 3.0
    q = suite["quickstart"]
    assert q["complete"] and q["rows_ok"] == q["jobs"] == 3 and q["rows_failed"] == 0

    md = (out / "suite.md").read_text()
    for part in PARTS:
        assert f"| {part} | ok |" in md
    assert "| inversion s/concept-step, 2 concepts packed |" in md
    # what a GPU lease brings back: at most 8 files, the results roots packed
    files = sorted(f.name for f in out.iterdir())
    assert files == ["bench.json", "details.tar.gz", "profile.txt", "suite.json", "suite.log", "suite.md"]
    with tarfile.open(out / "details.tar.gz") as tar:
        rows = [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith("result.json")]
    assert len(rows) == 1 + len(d["methods"]) + q["jobs"] and all(r["status"] == "ok" for r in rows)


def test_a_part_that_runs_out_of_time_leaves_nulls_and_a_reason(tmp_path):
    proc = _suite(["--quick", "--parts", "pretrain", "--timeout", "pretrain=1", "--out", str(tmp_path)])
    assert proc.returncode == 1, proc.stderr[-2000:]
    suite = json.loads((tmp_path / "suite.json").read_text())
    sec = suite["pretrain"]
    assert sec["status"] == "timeout" and "1 s limit" in sec["reason"]
    assert all(sec[k] is None for k in SECTIONS["pretrain"])
    for part in set(PARTS) - {"pretrain"}:
        assert suite[part]["status"] == "skipped" and list(suite[part]) == list(COMMON + SECTIONS[part])
    assert "| pretrain | timeout |" in (tmp_path / "suite.md").read_text()


@pytest.mark.parametrize("args, named", [(["--parts", "bench,nope"], "nope"),
                                         (["--timeout", "bench=soon"], "bench=soon"),
                                         (["--budget", "0"], "--budget")])
def test_bad_input_is_one_error_line_and_no_files(tmp_path, args, named):
    proc = _suite(["--quick", "--out", str(tmp_path / "out"), *args], timeout=120)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and named in errors[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_bench_part_plans_dvar_steps_saved():
    """The GPU suite's bench section carries DVAR's steps (filled from tinv.tools.bench's result)
    and suite.md reports them; a bench stopped before its DVAR phase leaves them null."""
    from tinv.tools.suite.parts import bench_section
    dvar = {"budget": 300, "window": 15, "threshold": 0.15, "concepts": 2, "steps": {"red_star": 30, "blue_heart": 40},
            "mean_steps": 35.0, "steps_saved": 265.0, "fewer_x": 300 / 35, "wall_s": 12.0}
    res = {"model": "sd15-random", "device": "cuda", "dtype": "bfloat16", "ratios": {},
           "inversion": {"batch_size": 4, "packed_concepts": 8, "timed_steps": 10},
           "sampling": {"images": 64, "steps": 50}}
    assert {"dvar_steps_saved", "dvar_steps", "dvar_fewer_x"} <= set(SECTIONS["bench"])
    sec = bench_section({**res, "dvar": dvar})
    assert list(sec) == list(SECTIONS["bench"])
    assert (sec["dvar_steps_saved"], sec["dvar_steps"], sec["dvar_window"]) == (265.0, dvar["steps"], 15)
    assert all(bench_section(res)[k] is None for k in SECTIONS["bench"] if k.startswith("dvar_"))


def test_the_quickstart_part_counts_the_presets_jobs():
    """The quickstart part's `jobs` is the preset's grid as the sweeper expands it (its
    `concept: objects` is 8 concepts, not one), so `complete` compares rows with the real
    count; --quick's subset is 3."""
    import yaml

    from hydra_plugins.tinv_hydra.tinv_hydra import concept_names
    from tinv.tools.suite.parts import grid_size
    params = yaml.safe_load((REPO / "experiments" / "quickstart.yaml").read_text())["hydra"]["sweeper"]["params"]
    objects = [p.stem for p in (REPO / "conf" / "concept").glob("*.yaml")
               if yaml.safe_load(p.read_text()).get("kind") == "object" and p.stem not in ("folder", "dreambench")]
    assert sorted(concept_names(params["concept"])) == sorted(objects)
    assert grid_size(False) == len(params["method"].split(",")) * len(objects)
    assert grid_size(True) == 3
