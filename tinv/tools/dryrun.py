"""A method's job on a real model's full-size architecture, random weights, nothing downloaded.

    python -m tinv.tools.dryrun model=sd15 method=single_word [override ...] [--latent N]
        [--eval-pairs N] [--keep DIR] [--json FILE]

What a user's first `model=sd15` job would do on a GPU, in minutes and without the weights:
1. the model's pipeline is built from the configs shipped in tinv/engine/model_configs (the
   published unet/vae/text encoder/scheduler configs; random weights) and saved as a diffusers
   folder, once per (model, latent size) under $TINV_CACHE (default /tmp/tinv-cache);
2. the job runs through the harness's own `run_job` on that folder (`model=<m>
   model.path=<folder>`), as run.py runs it: the method's training for 2 optimizer
   steps (every `steps` of the method, pivotal tuning's included; `num_class_images` 1), one
   DDIM step of one sample per prompt (the reconstruction prompt and one edit prompt), the
   evaluation on a random-weight CLIP (`tinv-tiny-clip`: the scores mean nothing), the exports;
3. the exports are loaded into a stock diffusers pipeline read from the same folder, each by
   the loader its format has (tinv.tools.dryrun.LOADERS), and the pipeline takes one denoising
   step with the learned word in its prompt.
It prints the seconds per optimizer step (between consecutive steps of one optimizer, so the
latent caching and the fixed-batch losses are not in it; on the CPU also the process's CPU
seconds), the sampling time, and the job's peak memory (CUDA: max_memory_allocated; CPU: the
peak RSS, Linux's VmHWM reset before the job). `method=a,b,...` runs each in turn in one
process (imports and the weights' fingerprint paid once) and ends with a table.

--latent N runs at a latent side of N (N x 8 px) with the same full-size weights (the tests'
setting on a 2-core CPU); the default is the model's own (64 for SD, 32 for the LDM).
--eval-pairs N: the fixed-batch loss that rows report before and after training
(inversion.fixed_eval_loss) is computed on N pairs instead of 16 (default 2: at 512 px on a
CPU its 2 x 16 UNet calls would take longer than the training). Any other argument is a
Hydra override of run.py (`concept=blue_heart`, `cpu_threads=1`, `device=cpu`, ...).
Bad input (an unknown model or method, a model with no shipped architecture) is one
`error:` line and exit code 2, before anything is built.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tinv.core.errors import InputError

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
GROUPS = {"model": CONF / "model", "method": CONF / "method", "concept": CONF / "concept",
          "eval": CONF / "eval", "logger": CONF / "logger", "experiment": REPO / "experiments"}
STEPS = 2
EXIT_BAD_INPUT = 2
GIB = 2 ** 30
# The job's settings that make it a dry run: one sample of one DDIM step per prompt, two
# prompts (reconstruction + one edit), a random CLIP, no DINO, no logger.
DRY = {"eval": {"num_samples": 1, "steps": 1, "max_prompts": 1, "batch_size": 2,
                "clip": {"model": "tinv-tiny-clip", "pretrained": None}},
       "logger": {"name": "none"}, "progress": False}


# ----------------------------------------------------------------------------- arguments
def parse(argv: list[str]) -> dict:
    """Flags and Hydra overrides -> the spec; InputError for bad input (nothing built)."""
    from tinv.engine import model_configs
    flags = {"latent": None, "eval_pairs": 2, "keep": None, "json": None}
    overrides, it = [], iter(argv)
    for a in it:
        if a.startswith("--"):
            name, _, value = a[2:].partition("=")
            key = name.replace("-", "_")
            if key not in flags:
                raise InputError(f"{a}: unknown flag; the flags are --latent N, --eval-pairs N, --keep DIR, --json FILE")
            value = value or next(it, "")
            if key in ("latent", "eval_pairs"):
                if not value.isdigit() or int(value) < 1:
                    raise InputError(f"--{name} {value!r}: give a whole number >= 1")
                value = int(value)
            flags[key] = value
        elif "=" in a:
            overrides.append(a)
        else:
            raise InputError(f"{a!r}: give Hydra overrides (model=sd15 method=single_word) and --flags")
    from tinv.harness.overrides import check
    check(overrides, CONF, GROUPS)          # run.py's check: unknown models, methods, fields
    model = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "model"), None)
    if model not in model_configs.NAMES:
        raise InputError(f"model={model}: a dry run builds a real model's architecture; give model="
                         + "|".join(model_configs.NAMES))
    methods = [m for o in overrides if o.split("=", 1)[0] == "method" for m in o.split("=", 1)[1].split(",")]
    if not methods:
        raise InputError("name the method: method=<one of conf/method/> (e.g. method=single_word; "
                         "method=a,b runs each in turn)")
    return {"model": model, "methods": methods, "overrides": overrides, **flags}


def compose(overrides: list[str]) -> dict:
    """The job config run.py would compose for `overrides`, as a plain dict."""
    from omegaconf import OmegaConf

    from tinv.harness.overrides import _compose
    composed = _compose(CONF, overrides)
    return OmegaConf.to_container(OmegaConf.masked_copy(composed, [k for k in composed if k != "hydra"]),
                                  resolve=True)


def shrink(cfg: dict, folder: Path, results_root: Path) -> dict:
    """The composed job as a dry run: the model from `folder`, every training budget of the
    method STEPS optimizer steps (whatever block it is in: inversion, pivotal tuning, a
    learner's), one class image where a method generates them, the DRY evaluation."""
    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, int) and not isinstance(v, bool) and (k == "steps" or k.endswith("_steps")):
                    node[k] = min(v, STEPS)
                elif k == "num_class_images" and isinstance(v, int):
                    node[k] = 1
                else:
                    walk(v)
    cfg = json.loads(json.dumps(cfg))
    walk(cfg["method"])
    cfg["model"]["inversion"].update(steps=STEPS, checkpoint_every=0)
    cfg["model"].update(path=str(folder), dino=False)
    for key, value in DRY.items():
        if isinstance(value, dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    cfg["eval"]["bootstrap"] = {**cfg["eval"].get("bootstrap", {}), "n": 10}
    cfg.update(results_root=str(results_root), sweep="dryrun")
    return cfg


# ----------------------------------------------------------------------------- the pipeline folder
def pipeline_folder(name: str, latent: int | None) -> Path:
    """The random full-size pipeline as a diffusers folder, built once (a process of its own,
    so its memory is not the job's) and reused; keyed by the shipped configs' bytes."""
    import hashlib

    from tinv.engine import model_configs
    from tinv.engine.models import _cache_dir
    h = hashlib.sha256()
    for f in sorted(model_configs.folder(name).rglob("*.json")):
        h.update(f.read_bytes())
    out = _cache_dir() / "dryrun" / f"{name}-latent{latent or 'native'}-{h.hexdigest()[:10]}"
    if not (out / "model_index.json").is_file():
        code = subprocess.call([sys.executable, "-m", "tinv.tools.dryrun", "--_build", name, str(latent or 0),
                                str(out)], env=_env())
        if code != 0:
            raise RuntimeError(f"building the {name} pipeline into {out} failed (exit {code})")
    return out


def build(name: str, latent: int | None, out: Path) -> Path:
    from tinv.core import atomic
    from tinv.engine import model_configs, models
    parts = model_configs.build(name, sample_size=latent or None)
    with atomic.replacing_dir(out, keep_existing=True) as tmp:
        models.save_parts(parts, tmp)
    return out


# ----------------------------------------------------------------------------- the job
class StepClock:
    """Seconds between consecutive steps of each torch optimizer (a global step hook): one
    whole training step each, whichever loop (inversion, pivotal tuning, a learner's) steps it."""

    def __init__(self, cuda: bool):
        from torch.optim.optimizer import register_optimizer_step_post_hook
        self.cuda, self.last, self.intervals, self.cpu = cuda, {}, [], []
        self.handle = register_optimizer_step_post_hook(self.hook)

    def hook(self, opt, args, kwargs) -> None:
        import torch
        if self.cuda:
            torch.cuda.synchronize()
        now = (time.perf_counter(), time.process_time())
        if id(opt) in self.last:
            self.intervals.append(now[0] - self.last[id(opt)][0])
            self.cpu.append(now[1] - self.last[id(opt)][1])
        self.last[id(opt)] = now

    def close(self) -> None:
        self.handle.remove()


def _reset_peak_rss() -> bool:
    """Linux: start the process's peak RSS (VmHWM) again from its current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_gib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def job(cfg: dict, eval_pairs: int) -> dict:
    """run_job on the dry-run config, in this process; its row, s/step and peak memory."""
    import torch

    from tinv.engine import inversion
    from tinv.harness.job import run_job
    from tinv.harness.loading import choose_device
    device = choose_device(str(cfg.get("device", "auto")))
    cuda = device.startswith("cuda")
    import gc
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    fresh = cuda or _reset_peak_rss()
    # the fixed-batch loss's pairs (its second default): a measurement around training, not training
    measured = inversion.fixed_eval_loss.__wrapped__      # under torch.no_grad's wrapper
    saved = measured.__defaults__
    measured.__defaults__ = (eval_pairs,) + saved[1:]
    clock = StepClock(cuda)
    t0 = time.perf_counter()
    try:
        row = run_job(cfg)
    finally:
        clock.close()
        measured.__defaults__ = saved
    wall = time.perf_counter() - t0
    if cuda:
        peak, kind = torch.cuda.max_memory_allocated() / GIB, "cuda max_memory_allocated"
    else:
        peak, kind = _peak_rss_gib(), ("peak RSS during the job (VmHWM, reset before it)" if fresh
                                        else "max RSS of the process")
    iv = clock.intervals
    return {"row": str(Path(row["folder"]) / "result.json"), "status": row["status"], "device": device,
            "wall_s": wall, "s_per_step": sum(iv) / len(iv) if iv else None, "timed_steps": len(iv),
            # the process's CPU seconds over the same steps: on a shared CPU the wall time says
            # how busy the machine was, this what the step costs
            "cpu_s_per_step": sum(clock.cpu) / len(clock.cpu) if clock.cpu else None,
            "peak_mem_gib": peak, "peak_mem_kind": kind, "timings": row.get("timings", {})}


# ----------------------------------------------------------------------------- the stock pipeline
def _textual_inversion(pipe, path: Path) -> str:
    pipe.load_textual_inversion(str(path))
    return "pipe.load_textual_inversion"


def _lora(pipe, path: Path) -> str:
    pipe.load_lora_weights(str(path.parent), weight_name=path.name)
    return "pipe.load_lora_weights"


def _attn_procs(pipe, path: Path) -> str:
    pipe.unet.load_attn_procs(str(path.parent), weight_name=path.name, _pipeline=pipe)
    return "pipe.unet.load_attn_procs"


def _unet_tensors(pipe, path: Path) -> str:
    """tinv's pivotal_unet.safetensors: named UNet parameters, loaded as a partial state dict."""
    from safetensors.torch import load_file
    tensors = load_file(str(path))
    result = pipe.unet.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{path.name}: tensors the stock UNet does not have: {result.unexpected_keys[:3]}")
    return "pipe.unet.load_state_dict(strict=False)"


def _model_folder(pipe, path: Path) -> str:
    """A diffusers or transformers model folder (config.json + weights) replaces the pipeline's
    component of that class (a fine-tuned UNet or text encoder)."""
    import diffusers
    import transformers
    cfg = json.loads((path / "config.json").read_text())
    cls_name = cfg.get("_class_name") or (cfg.get("architectures") or [None])[0]
    cls = getattr(diffusers, str(cls_name), None) or getattr(transformers, str(cls_name), None)
    for name, component in pipe.components.items():
        if cls is not None and isinstance(component, cls):
            setattr(pipe, name, cls.from_pretrained(str(path)).to(component.device, component.dtype))
            return f"{cls_name}.from_pretrained -> pipe.{name}"
    raise ValueError(f"{path}: a {cls_name} folder, and the pipeline has no component of that class")


# Each export format a stock pipeline loads, by file name (diffusers' own file names and
# tinv's): how. A learner module with a `load(pipe, file)` (tinv's P+ and NeTI formats) loads
# its own file, word included.
LOADERS = {"learned_embeds.safetensors": _textual_inversion,
           "pytorch_lora_weights.safetensors": _lora,
           "pytorch_custom_diffusion_weights.bin": _attn_procs,
           "pivotal_unet.safetensors": _unet_tensors}
OTHER_TOOLS = {".pt"}     # AUTOMATIC1111's and the authors' files: not diffusers' formats


def stock_pipeline(folder: Path, device: str):
    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False) \
        if (folder / "safety_checker").exists() else DiffusionPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_exports(pipe, row: dict) -> tuple[list[str], str | None, bool]:
    """Every export of the job in `pipe`; (what loaded each file, the phrase to prompt with,
    whether the pipeline must sample through tinv.engine.learners.pipeline.generate: the
    per-layer or per-timestep words of tinv's own formats)."""
    import importlib
    folder = Path(row["folder"])
    art = row.get("artifacts") or {}
    loaded, trigger = [], None
    learner = ((row.get("training") or {}).get("learner") or {}).get("name")
    own = None
    if learner and art.get("learner"):
        from tinv.engine.learners import MODULES
        own = importlib.import_module(f"tinv.engine.learners.{MODULES[learner]}")
        own = own if hasattr(own, "load") else None
    if own is not None:          # the learner's file carries the word: nothing else is loaded
        for what, rel in art["learner"].items():
            trigger = own.load(pipe, folder / rel)
            loaded.append(f"{rel}: tinv.engine.learners.{own.__name__.rsplit('.', 1)[1]}.load")
        return loaded, trigger, True
    if row["config"]["model"]["family"] == "ldm":
        return _load_ldm(pipe, row), "*", False
    files = sorted((folder / "embeddings").iterdir()) if (folder / "embeddings").is_dir() else []
    for f in files:
        if f.is_dir() and (f / "config.json").is_file():
            loaded.append(f"{f.relative_to(folder)}: {_model_folder(pipe, f)}")
        elif f.name in LOADERS:
            loaded.append(f"{f.relative_to(folder)}: {LOADERS[f.name](pipe, f)}")
        elif f.suffix == ".json" and "trigger" in (info := json.loads(f.read_text())):
            trigger = info["trigger"]
        elif f.suffix not in OTHER_TOOLS and f.suffix != ".json":
            raise ValueError(f"{f.relative_to(folder)}: no stock loader known for this export "
                             f"(tinv.tools.dryrun.LOADERS)")
    if trigger is None:
        trigger = (art.get("triggers") or {}).get("diffusers")
    return loaded, trigger, False


def _load_ldm(pipe, row: dict) -> list[str]:
    """The authors' embeddings.pt (the only LDM export) as their scripts use it: each string's
    vectors into the text encoder's table at its stored token id."""
    import torch
    folder = Path(row["folder"])
    rel = row["artifacts"]["embeddings"]["authors"]
    obj = torch.load(folder / rel, map_location="cpu", weights_only=False)
    table = pipe.bert.get_input_embeddings().weight
    with torch.no_grad():
        for s, tok in obj["string_to_token"].items():
            vec = obj["string_to_param"][s].detach().reshape(-1, table.shape[1])
            table[int(tok)] = vec[0].to(table)
    return [f"{rel}: the authors' string_to_token/string_to_param into LDMBertModel's embedding table"]


def stock_check(folder: Path, row: dict, device: str) -> dict:
    """Load the job's exports into a stock pipeline from `folder` and take one step with the
    learned word: ok, what loaded, and whether the prompt's encoding changed with them."""
    import torch
    t0 = time.perf_counter()
    pipe = stock_pipeline(folder, device)
    out: dict[str, Any] = {"pipeline": type(pipe).__name__}
    if not row.get("artifacts", {}).get("embeddings") and not row.get("artifacts", {}).get("learner"):
        out.update(ok=True, loaded=[], note="the method exports nothing (it learns nothing)",
                   load_s=time.perf_counter() - t0)
        return out
    loaded, trigger, routed = load_exports(pipe, row)
    prompt = f"a photo of {trigger}"
    gen = torch.Generator("cpu").manual_seed(0)
    size = {} if out["pipeline"] == "LDMTextToImagePipeline" else {"output_type": "latent"}
    with torch.no_grad():
        if routed:
            from tinv.engine.learners.pipeline import generate
            images = generate(pipe, prompt, num_inference_steps=1, generator=gen, **size).images
        else:
            images = pipe(prompt, num_inference_steps=1, generator=gen, **size).images
    arr = images if isinstance(images, torch.Tensor) else torch.as_tensor(__import__("numpy").asarray(images))
    out.update(ok=bool(torch.isfinite(arr.float()).all()), loaded=loaded, prompt=prompt,
               load_s=time.perf_counter() - t0)
    return out


# ----------------------------------------------------------------------------- the command
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def run(spec: dict, method: str) -> dict:
    """One method's dry run (module docstring), in this process; the report's record."""
    import gc

    import torch
    t0 = time.perf_counter()
    overrides = [o for o in spec["overrides"] if o.split("=", 1)[0] != "method"] + [f"method={method}"]
    cfg = compose(overrides)
    folder = pipeline_folder(spec["model"], spec["latent"])
    prepare_s = time.perf_counter() - t0
    root = Path(spec["keep"]) / method if spec["keep"] else Path(tempfile.mkdtemp(prefix="tinv-dryrun-"))
    try:
        cfg = shrink(cfg, folder, root)
        rec = job(cfg, spec["eval_pairs"])
        row = json.loads(Path(rec["row"]).read_text())
        gc.collect()
        rec["export"] = stock_check(folder, row, rec["device"]) if rec["status"] == "ok" else \
            {"ok": False, "pipeline": "-", "note": f"the job failed: {row.get('error')}"}
    finally:
        if not spec["keep"]:
            shutil.rmtree(root, ignore_errors=True)
    unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
    vae_dir = "vae" if (folder / "vae").is_dir() else "vqvae"
    down = 2 ** (len(json.loads((folder / vae_dir / "config.json").read_text())["block_out_channels"]) - 1)
    rec.update(model=spec["model"], method=method, folder=str(folder),
               resolution=unet_cfg["sample_size"] * down, latent=unet_cfg["sample_size"],
               batch_size=cfg["model"]["inversion"]["batch_size"], steps=STEPS, eval_pairs=spec["eval_pairs"],
               prepare_s=prepare_s, total_s=time.perf_counter() - t0, torch_threads=torch.get_num_threads(),
               kept=bool(spec["keep"]))
    return rec


def report(rec: dict) -> str:
    t, e = rec["timings"], rec["export"]
    step = f"{rec['s_per_step']:.2f} s" if rec["s_per_step"] is not None else "n/a (the method trains nothing)"
    lines = [
        f"dry run: model={rec['model']} method={rec['method']} at {rec['resolution']} px (latent {rec['latent']}), "
        f"full-size random weights, {rec['device']}",
        f"  job: {rec['status']} in {rec['wall_s']:.1f} s (invert {t.get('invert_s', 0):.1f} s, sample "
        f"{t.get('sample_s', 0):.1f} s, evaluate {t.get('evaluate_s', 0):.1f} s); row {rec['row'] if rec.get('kept') else '(removed)'}",
        f"  seconds per step: {step} (batch {rec['batch_size']}, {rec['timed_steps']} step interval(s) timed"
        + (f"; {rec['cpu_s_per_step']:.2f} s of CPU" if rec.get("cpu_s_per_step") is not None and rec["device"] == "cpu"
           else "") + ")",
        f"  peak memory: {rec['peak_mem_gib']:.2f} GiB ({rec['peak_mem_kind']})",
        f"  export -> stock {e['pipeline']}: {'ok' if e['ok'] else 'FAILED'}"
        + (f", one step on {e['prompt']!r}" if e.get("prompt") else f" ({e.get('note')})"),
    ] + [f"    {x}" for x in e.get("loaded", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--_build"]:
        build(argv[1], int(argv[2]) or None, Path(argv[3]))
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        spec = parse(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    import logging

    from tinv.engine.progress import third_party
    from tinv.harness.logs import quiet_third_party
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_third_party()
    third_party(False)
    records = []
    for method in spec["methods"]:
        rec = run(spec, method)
        records.append(rec)
        print(report(rec), flush=True)
        if spec["json"]:
            from tinv.core import atomic
            atomic.write_json(Path(spec["json"]), records if len(spec["methods"]) > 1 else rec)
    if len(records) > 1:
        print(table(records))
    return 0 if all(r["status"] == "ok" and r["export"]["ok"] for r in records) else 1


def table(records: list[dict]) -> str:
    """The methods side by side (docs/speed.md's table)."""
    def f(v):
        return f"{v:.2f}" if v is not None else "-"
    lines = ["| method | peak memory (GiB) | s/step (wall) | s/step (CPU) | export + load |",
             "| --- | ---: | ---: | ---: | --- |"]
    for r in records:
        lines.append(f"| {r['method']} | {r['peak_mem_gib']:.2f} | {f(r['s_per_step'])} | {f(r.get('cpu_s_per_step'))} | "
                     + ("ok" if r["export"]["ok"] else "FAILED") + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
