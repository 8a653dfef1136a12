"""The suite's parts, one per process: `python -m tinv.tools.suite.parts NAME --result FILE ...`.

Each part returns a dict of its section's keys (tinv.tools.suite.SECTIONS) and may set
"status" and "reason" itself (the quickstart grid stopped by its timeout is "incomplete",
not failed). Full mode is for a GPU: the SD-1.5 architecture with random weights at
512 px, bf16. --quick is the same code on the CPU with tiny models and a few steps.
"""
from __future__ import annotations

import argparse
import gc
import json
import re
import resource
import runpy
import shlex
import sys
import tempfile
import time
from pathlib import Path

from tinv.engine.learners.specs import LEARNERS, SUCCESSORS as SUCCESSOR_SPECS
from tinv.tools.suite import run_killable

REPO = Path(__file__).resolve().parents[3]
GIB = 2 ** 30


def _device(quick: bool) -> str:
    if quick:   # no torch import: the quickstart part only starts run.py
        return "cpu"
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync(device: str) -> None:
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_mem(device: str) -> tuple[float, float | None, str]:
    """(peak GiB, peak reserved GiB or None, what was measured)."""
    import torch
    if device == "cuda":
        return (torch.cuda.max_memory_allocated() / GIB, torch.cuda.max_memory_reserved() / GIB,
                "cuda max_memory_allocated / max_memory_reserved")
    # ru_maxrss is in KiB on Linux; it covers the whole part process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, None, "cpu max RSS of the part process"


def _model_parts(quick: bool, device: str):
    """(Parts, name): tiny random SD on --quick, else the SD-1.5 architecture, random weights."""
    import torch

    from tinv.engine import models
    from tinv.tools.bench import sd15_random_parts
    if quick:
        return models.tiny_sd_parts(device=device), "tiny_sd_random"
    return sd15_random_parts(device, torch.bfloat16 if device == "cuda" else torch.float32), "sd15_random"


# ----------------------------------------------------------------------------- bench
def bench(a) -> dict:
    """tinv.tools.bench in this process: the three ratios, the compile time and DVAR's steps. The
    section is rewritten after every phase, so a timeout keeps the phases that finished."""
    from tinv.tools import bench as B
    from tinv.core.atomic import write_json
    argv = ["--compile", "--out", str(a.out / "bench.json")]
    if a.quick:   # inductor needs minutes on a CPU; eager still traces the UNet with dynamo
        argv += ["--quick", "--model", "tiny", "--device", "cpu", "--compile-backend", "eager"]
    else:         # DVAR runs last, packed at 512 px: 4 concepts keep it inside the part's limit (unmeasured)
        argv += ["--dvar-concepts", "4"]
    return bench_section(B.main(argv, on_phase=lambda res: write_json(a.result, bench_section(res))))


def bench_section(res: dict) -> dict:
    inv, smp, r = res["inversion"], res["sampling"], res["ratios"]
    return {"model": res["model"], "device": res["device"], "dtype": res["dtype"],
            "batch_size": inv["batch_size"], "packed_concepts": inv["packed_concepts"],
            "inversion_steps": inv["timed_steps"], "baseline_s_per_step": inv.get("baseline_s_per_step"),
            "tinv_s_per_concept_step": inv.get("tinv_s_per_concept_step"),
            "tinv_packed_s_per_concept_step": inv.get("tinv_packed_s_per_concept_step"),
            "samples": smp["images"], "sample_steps": smp["steps"], "baseline_sampling_s": smp.get("baseline_s"),
            "tinv_sampling_s": smp.get("tinv_s"), "compile_backend": smp.get("compile_backend"),
            "compile_s": smp.get("compile_s"), "ratio_single": r.get("inversion_single"),
            "ratio_packed": r.get("inversion_packed"), "ratio_sampling": r.get("sampling"),
            **{f"dvar_{k}": (res.get("dvar") or {}).get(k) for k in ("concepts", "budget", "window", "steps",
                                                                    "mean_steps", "steps_saved", "fewer_x",
                                                                    "wall_s")}}


# ---------------------------------------------------------------------------- profile
def profile(a) -> dict:
    """torch.profiler over tinv's packed inversion step (8 concepts x batch 4 on the GPU).

    The step is `tinv.engine.inversion._optimizer_step`, the loop body of `invert_packed`, driven
    here directly so that latent caching and the before/after evaluation stay out."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from tinv.tools.bench import _images
    from tinv.engine.inversion import InversionConfig, _optimizer_step, _Set, training_scheduler
    from tinv.engine.pseudo_words import learning

    device = _device(a.quick)
    packed, batch = (2, 4) if a.quick else (8, 4)
    warmup, timed, profiled = (1, 2, 2) if a.quick else (3, 5, 2)
    parts, name = _model_parts(a.quick, device)
    images = _images(parts)
    sets = [_Set(parts, images, InversionConfig(placeholder=f"<prof{i}>", init="random",
                                                batch_size=batch, steps=10 ** 6))
            for i in range(packed)]
    sched = training_scheduler(parts)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with learning(parts, [w for s in sets for w in s.words]):
        for s in sets:
            s.make_optimizer()
        for _ in range(warmup):
            _optimizer_step(parts, sched, sets)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(timed):
            _optimizer_step(parts, sched, sets)
        _sync(device)
        s_per_step = (time.perf_counter() - t0) / timed
        with torch_profile(activities=activities) as prof:
            for _ in range(profiled):
                _optimizer_step(parts, sched, sets)
            _sync(device)
    events = prof.key_averages()
    if device == "cuda":
        from torch.autograd import DeviceType
        sort_by = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
        # Kernels are events of their own; operators own their kernels' time: the share of
        # an operator is of the kernels' total, the time the GPU was busy.
        busy = sum(getattr(e, sort_by) for e in events if e.device_type == DeviceType.CUDA)
        ops = [e for e in events if e.device_type == DeviceType.CPU]
    else:
        sort_by = "self_cpu_time_total"
        busy, ops = sum(e.self_cpu_time_total for e in events), list(events)
    (a.out / "profile.txt").write_text(
        f"tinv packed inversion step: {packed} concepts x batch {batch}, {name} on {device}, "
        f"{profiled} steps profiled, sorted by {sort_by}\n\n"
        + events.table(sort_by=sort_by, row_limit=30) + "\n")
    top = sorted(ops, key=lambda e: getattr(e, sort_by), reverse=True)[:12]
    return {"model": name, "device": device, "dtype": str(parts.dtype).replace("torch.", ""),
            "packed_concepts": packed, "batch_size": batch, "profiled_steps": profiled,
            "s_per_step": s_per_step, "s_per_concept_step": s_per_step / packed,
            "busy_s_per_step": busy / 1e6 / profiled, "sort_by": sort_by,
            "top_ops": [{"name": e.key, "self_ms_per_step": getattr(e, sort_by) / 1000 / profiled,
                         "share": getattr(e, sort_by) / (busy or 1.0), "calls_per_step": e.count / profiled}
                        for e in top]}


# ---------------------------------------------------------------------------- harness
def harness(a) -> dict:
    """One harness job through run.py (Hydra composition included), in this process so that
    its peak memory can be read. The model is the random pipeline saved as a local folder;
    the evaluator is tinv-tiny-clip, random weights: the scores mean nothing, the times do."""
    import torch

    from tinv.engine import models
    device = _device(a.quick)
    prompts, samples, steps, inv_steps = (2, 2, 2, 3) if a.quick else (2, 16, 50, 200)
    root = a.work / "harness"
    folder = Path(tempfile.mkdtemp(prefix="tinv-suite-pipeline-"))   # GBs: never under the output folder
    try:
        parts, name = _model_parts(a.quick, device)
        models.save_parts(parts, folder)
        resolution, dtype = parts.resolution, str(parts.dtype).replace("torch.", "")
        del parts
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        overrides = [
            "model=sd15", f"model.name={name}", f"model.path={folder}", "model.dino=false",
            "eval.clip.model=tinv-tiny-clip", "eval.clip.pretrained=null",   # timing only
            "eval=paper", f"eval.max_prompts={prompts}", f"eval.num_samples={samples}",
            f"eval.steps={steps}", f"model.inversion.steps={inv_steps}", "concept=red_star",
            "method=single_word", f"device={device}", "logger=none", "progress=false",
            f"results_root={root}", "sweep=suite"] + (["eval.bootstrap.n=20"] if a.quick else [])
        code = _run_cli_in_process(overrides)
    finally:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
    peak, reserved, kind = _peak_mem(device)
    rows = [json.loads(p.read_text()) for p in (root / "suite").glob("*/result.json")]
    if len(rows) != 1:
        raise RuntimeError(f"run.py exited {code} and wrote {len(rows)} rows under {root / 'suite'}")
    row, t = rows[0], rows[0]["timings"]
    out = {"model": name, "device": device, "dtype": dtype, "resolution": resolution,
           "evaluator": "tinv-tiny-clip (random weights: timing only, scores meaningless)",
           "prompts": prompts, "samples_per_prompt": samples, "sample_steps": steps,
           "inversion_steps": inv_steps, "inversion_batch_size": row["config"]["model"]["inversion"]["batch_size"],
           "job_status": row["status"], "invert_s": t.get("invert_s"), "sample_s": t.get("sample_s"),
           "evaluate_s": t.get("evaluate_s"), "total_s": t.get("total_s"),
           "invert_s_per_step": t["invert_s"] / inv_steps if "invert_s" in t else None,
           "peak_mem_gib": peak, "peak_mem_reserved_gib": reserved, "peak_mem_kind": kind}
    if row["status"] != "ok":
        out.update(status="failed", reason=f"job row: {row.get('error')}")
    return out


def _run_cli_in_process(overrides: list[str]) -> int:
    """`python run.py OVERRIDES` in this process; its exit code (0 when Hydra returns)."""
    saved = sys.argv
    sys.argv = [str(REPO / "run.py"), *overrides]
    try:
        runpy.run_path(str(REPO / "run.py"), run_name="__main__")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = saved


# --------------------------------------------------------------------------- pretrain
RECIPE_STEPS = 20_000   # tinv.tools.pretrain's --unet-steps


def pretrain(a) -> dict:
    """Steps per second of the toy world's joint UNet + text encoder training on the device.

    The step is train_joint's: min-SNR-5 loss on noised cached latents, caption dropout,
    gradient clipping, AdamW, EMA of both nets (tinv.tools.pretrain.Joint), fp32 as
    pretraining runs. Random latents stand in for the cached ones (same shape); the
    compound-word captions (a per-sample Python loop from step 17,000) are left out."""
    import numpy as np
    import torch

    from tinv.engine.models import tiny_clip_tokenizer
    from tinv.toyworld import attributes, captions, nets
    from tinv.tools.pretrain import Joint, _encode, joint_step

    device = _device(a.quick)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    recipe, large = (4, 16) if a.quick else (32, 1024)
    warmup, timed = (1, 2) if a.quick else (5, 30)
    tok = tiny_clip_tokenizer()
    joint = Joint(tok, seed=0)
    for m in (joint.unet, joint.text, joint.ema_unet, joint.ema_text):
        m.to(device)   # in place: the optimizer and EMA lists keep the same parameters
    joint.unet.train()
    joint.text.train()
    rng = np.random.default_rng(0)
    caps = [captions.caption(attributes.sample(rng), rng) for _ in range(256)]
    tokenize = lambda t: tok(t, padding="max_length", max_length=77, truncation=True,  # noqa: E731
                             return_tensors="pt").input_ids.to(device)
    ids, empty = tokenize(caps), tokenize([""])
    g = torch.Generator(device).manual_seed(0)
    lat = torch.randn(4096, 4, nets.LATENT_SIDE, nets.LATENT_SIDE, generator=g, device=device)
    sched = nets.scheduler()
    acp = sched.alphas_cumprod.to(device)
    min_snr = torch.clamp(acp / (1 - acp), max=5.0) / (acp / (1 - acp))

    def step(batch: int) -> None:
        b = torch.randint(len(lat), (batch,), generator=g, device=device)
        z = lat[b] + 0.1 * torch.randn(lat[b].shape, generator=g, device=device)
        cap = ids[torch.randint(len(ids), (batch,), generator=g, device=device)]
        drop = torch.rand(batch, generator=g, device=device) < 0.1
        cap = torch.where(drop[:, None], empty.expand(batch, -1), cap)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=g, device=device)
        noise = torch.randn(z.shape, generator=g, device=device)
        loss = joint_step(joint, sched, z, noise, t, _encode(joint.text, cap), min_snr)
        loss.item()   # train_joint reads the loss every step (progress bar): a sync, as there

    rates = {}
    for batch in (recipe, large):
        for _ in range(warmup):
            step(batch)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(timed):
            step(batch)
        _sync(device)
        rates[batch] = timed / (time.perf_counter() - t0)
    peak, _, kind = _peak_mem(device)
    return {"device": device, "dtype": "float32" + (" (tf32 matmuls)" if device == "cuda" else ""),
            "timed_steps": timed, "recipe_batch": recipe, "recipe_steps_per_s": rates[recipe],
            "recipe_steps": RECIPE_STEPS, "recipe_projected_min": RECIPE_STEPS / rates[recipe] / 60,
            "large_batch": large, "large_batch_steps_per_s": rates[large],
            "large_batch_samples_per_s": rates[large] * large, "peak_mem_gib": peak, "peak_mem_kind": kind}


# ------------------------------------------------------------------------- quickstart
# Quoted: Hydra refuses a bare comma list under hydra.* ("sweeping over Hydra's configuration").
QUICK_GRID = ['hydra.sweeper.params.method="single_word,two_word,image_only"',
              'hydra.sweeper.params.concept="red_star"', "model.inversion.steps=3",
              "eval.num_samples=2", "eval.steps=2", "eval.max_prompts=1", "eval.bootstrap.n=20"]


def grid_size(quick: bool) -> int:
    """Jobs in the quickstart preset (methods x built-in concepts), or in --quick's subset."""
    import yaml
    if quick:
        return 3
    from hydra_plugins.tinv_hydra.tinv_hydra import concept_names
    params = yaml.safe_load((REPO / "experiments" / "quickstart.yaml").read_text())["hydra"]["sweeper"]["params"]
    return len(str(params["method"]).split(",")) * len(concept_names(str(params["concept"])))


def quickstart(a) -> dict:
    """`python run.py -m +experiment=quickstart` under its own deadline; rows counted after."""
    device = _device(a.quick)
    root = a.work / "quickstart"
    cmd = [sys.executable, str(REPO / "run.py"), "-m", "+experiment=quickstart", f"results_root={root}",
           "progress=false", "logger=none", f"device={device}"] + (QUICK_GRID if a.quick else [])
    jobs = grid_size(a.quick)
    limit = max(5.0, a.timeout - 10)   # leave time to count rows and write the result
    log = a.work / "logs" / "quickstart-grid.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    code = run_killable(cmd, log, limit, cwd=REPO)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    print(text[-20000:])   # into the part's log (suite.log); the whole of it is in details.tar.gz
    rows = [json.loads(p.read_text()) for p in (root / "quickstart").glob("*/result.json")]
    ok = sum(r.get("status") == "ok" for r in rows)
    complete = code == 0 and ok == jobs
    out = {"device": device, "command": shlex.join(["python", "run.py"] + cmd[2:]), "jobs": jobs, "rows_ok": ok,
           "rows_failed": len(rows) - ok, "complete": complete, "grid_wall_s": wall if complete else None,
           "projected_wall_s": wall if complete else (wall * jobs / ok if ok else None)}
    if code is None:
        out.update(status="incomplete", reason=f"stopped at its {limit:.0f} s limit with {ok} of {jobs} rows; "
                   "projected_wall_s = elapsed x jobs / rows")
    elif not complete:
        errors = [ln for ln in text.splitlines() if re.match(r"^([\w.]+(Error|Exception)\b|error:)", ln)]
        out.update(status="failed", reason=f"run.py -m exited {code} with {ok} of {jobs} rows ok"
                   + (f": {errors[-1][:300]}" if errors else ""))
    return out


# ------------------------------------------------------------------------- successors
SUCCESSORS = tuple(LEARNERS)       # the paper's word first, then each learner (tinv/engine/learners/specs.py)


def successors(a) -> dict:
    """Seconds per inversion step of each successor's learner (tinv/engine/learners) beside the
    single word's, one concept at batch 4 on a fresh model each (Custom Diffusion and the LoRA
    change the UNet they train). A learner that fails is named in `errors`; the others run."""
    import torch

    from tinv.core.atomic import write_json
    from tinv.engine.inversion import InversionConfig, _optimizer_step, _Set, training_scheduler
    from tinv.engine.pseudo_words import learning
    from tinv.tools.bench import _images
    device = _device(a.quick)
    warmup, timed, batch = (1, 2, 2) if a.quick else (2, 5, 4)
    per_step, errors, name, dtype = {}, {}, None, None
    for learner in SUCCESSORS:
        try:
            parts, name = _model_parts(a.quick, device)
            dtype = str(parts.dtype).replace("torch.", "")
            parts.freeze()
            s = _Set(parts, _images(parts), InversionConfig(placeholder="<succ>", initializer_word="cat",
                                                             learner=learner, batch_size=batch, steps=10 ** 6))
            sched = training_scheduler(parts)
            with learning(parts, s.words):
                s.make_optimizer()
                for _ in range(warmup):
                    _optimizer_step(parts, sched, [s])
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(timed):
                    _optimizer_step(parts, sched, [s])
                _sync(device)
            per_step[learner] = (time.perf_counter() - t0) / timed
        except Exception as e:  # noqa: BLE001 - one learner's failure is its row, not the part's
            errors[learner] = f"{type(e).__name__}: {e}"[:300]
        finally:
            parts = s = None
            if device == "cuda":
                torch.cuda.empty_cache()
        print(f"successors: {learner} {per_step.get(learner, errors.get(learner))}", flush=True)
        word = per_step.get("word")
        out = {"model": name, "device": device, "dtype": dtype, "batch_size": batch, "timed_steps": timed,
               "learners": list(SUCCESSORS), "s_per_step": per_step,
               "ratio_to_word": {k: v / word for k, v in per_step.items()} if word else {}, "errors": errors}
        write_json(a.result, out)       # a part killed at its limit keeps the learners it timed
    if errors:
        out.update(status="failed", reason=f"{', '.join(errors)} failed: " + "; ".join(errors.values())[:300])
    return out


# ----------------------------------------------------------------------------- dry runs
# One method per kind of learner (tests/test_dryrun.py runs the same ones on the CPU at 64 px).
# The whole UNet's DreamBooth last, the registry's last: a part cut at its limit keeps the lighter ones.
DRYRUN_METHODS = ("single_word", "pivotal_tuning", *(s.method for s in SUCCESSOR_SPECS))


def dryrun(a) -> dict:
    """tinv.tools.dryrun on SD 1.5's full-size architecture: each method's job through run_job
    (2 steps, one DDIM step per prompt), its exports loaded into a stock pipeline; on the GPU at
    512 px and the fixed-batch loss's real 16 pairs, --quick the single word at 64 px on the CPU.
    The section is rewritten after every method, so a timeout keeps those that finished."""
    import torch

    from tinv.core.atomic import write_json
    from tinv.tools import dryrun as D
    device = _device(a.quick)
    latent = 8 if a.quick else None
    methods = [m for m in (("single_word",) if a.quick else DRYRUN_METHODS)]
    skipped = [m for m in methods if not (REPO / "conf" / "method" / f"{m}.yaml").is_file()]
    methods = [m for m in methods if m not in skipped]
    folder = D.pipeline_folder("sd15", latent)
    out = {"model": "sd15 (full-size architecture, random weights)", "device": device, "latent": latent or 64,
           "resolution": (latent or 64) * 8, "steps": D.STEPS, "methods": [], "s_per_step": {},
           "peak_mem_gib": {}, "peak_mem_kind": None, "export_ok": {}, "errors": {},
           "skipped": {m: "not in conf/method" for m in skipped}}
    for m in methods:
        try:
            cfg = D.shrink(D.compose(["model=sd15", f"method={m}", f"device={device}"]), folder, a.work / "dryrun" / m)
            rec = D.job(cfg, eval_pairs=2 if a.quick else 16)
            row = json.loads(Path(rec["row"]).read_text())
            if rec["status"] != "ok":
                raise RuntimeError(row.get("error"))
            check = D.stock_check(folder, row, device)
            out["s_per_step"][m], out["peak_mem_gib"][m] = rec["s_per_step"], rec["peak_mem_gib"]
            out["peak_mem_kind"], out["export_ok"][m] = rec["peak_mem_kind"], bool(check["ok"])
        except Exception as e:  # noqa: BLE001 - one method's failure is its entry, not the part's
            out["errors"][m] = f"{type(e).__name__}: {e}"[:300]
        finally:
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        out["methods"].append(m)
        print(f"dryrun: {m} {out['s_per_step'].get(m, out['errors'].get(m))}", flush=True)
        write_json(a.result, out)
    bad = sorted(set(out["errors"]) | {m for m, ok in out["export_ok"].items() if not ok})
    if bad:
        out.update(status="failed", reason=f"{', '.join(bad)} failed: " + "; ".join(out["errors"].values())[:300])
    return out


# -------------------------------------------------------------------------------- CLI
PARTS = {"bench": bench, "profile": profile, "harness": harness, "pretrain": pretrain,
         "successors": successors, "dryrun": dryrun, "quickstart": quickstart}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tinv.tools.suite.parts")
    p.add_argument("part", choices=sorted(PARTS))
    p.add_argument("--result", type=Path, required=True, help="this part's JSON")
    p.add_argument("--out", type=Path, required=True, help="the suite's output folder")
    p.add_argument("--work", type=Path, required=True, help="results roots and other work files")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds this part is given")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    from tinv.core.atomic import write_json
    write_json(a.result, PARTS[a.part](a))


if __name__ == "__main__":
    main()
