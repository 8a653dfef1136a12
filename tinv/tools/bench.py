"""Speed, side by side in one run: tinv vs the diffusers baseline (issue 7).

    python -m tinv.tools.bench [--quick] [--model auto|tiny|toy|sd15-random|PATH] [--out FILE] [--no-dvar]

Two comparisons, each timed on the same model in the same process:
  * inversion, seconds per concept-step: a training step written like diffusers'
    examples/textual_inversion/textual_inversion.py (trainable embedding table inside
    the text encoder, VAE encode of the pixels every step, fp32, or bf16 autocast
    on CUDA as its --mixed_precision=bf16 does) vs tinv's loop (cached latents, frozen
    weights, learned rows spliced in), alone at the same batch and with several
    concepts packed into one batch.
  * sampling N images (default 64, DDIM 50 steps, guidance 7.5): the stock
    StableDiffusionPipeline call vs `tinv.engine.sampling.sample`.
And what DVAR early stopping (tinv/engine/dvar.py, `inversion.stop=dvar`) saves: single-word on
the built-in toy concepts (all packed in one run, each stopping on its own), the steps it
runs against the toy world's fixed budget (300). On the toy model that is the preset
experiments/dvar.yaml's stop; on the sd15-random GPU model it is the time per step at
512 px (random weights learn nothing, so there the stop itself means little).
CPU (default): the toy model if its weights are shipped, else the tiny random model.
CUDA: an SD-1.5-architecture pipeline with random weights (no download), bf16.
Results are printed as a table and written as JSON (atomically).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tinv.engine import conditioning, objective
from tinv.engine.models import Parts

PROMPT = "a photo of a cat"
PLACEHOLDER = "<bench>"


def configure_threads(n: int | None = None) -> int:
    """Intra-op threads: n, else $OMP_NUM_THREADS, else the CPUs this process may use;
    one inter-op thread.

    Diffusion steps are one large op after another, so inter-op parallelism only adds
    contention; on a shared machine pass n (e.g. 1) to avoid oversubscribing cores.
    """
    n = n or int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass
    return n


# --------------------------------------------------------------------------- models
def sd15_random_parts(device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> Parts:
    """Stable Diffusion 1.5's architecture (UNet 860M, VAE, CLIP ViT-L/14 text encoder) with
    random weights: the real compute at 512 px, nothing downloaded."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0
    from transformers import CLIPTextConfig, CLIPTextModel

    from tinv.engine.models import tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer()  # OpenAI CLIP's BPE vocabulary, built offline
    with torch.device(device):  # initialize on the device: much faster than on the CPU
        unet = UNet2DConditionModel(  # SD-1.5 unet/config.json values
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
            attention_head_dim=8, norm_num_groups=32,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
            block_out_channels=(128, 256, 512, 512), sample_size=512, scaling_factor=0.18215,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
            num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
            hidden_act="quick_gelu", bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    unet.set_attn_processor(AttnProcessor2_0())  # SDPA (diffusers' default on torch 2, made explicit)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    if dtype != torch.float32:  # (diffusers warns on every cast, even a no-op one)
        text_encoder, unet, vae = (m.to(dtype) for m in (text_encoder, unet, vae))
    parts = Parts(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, vae=vae,
                  scheduler=scheduler, family="sd", resolution=512, vae_scale=0.18215)
    return parts.freeze()


def load_bench_parts(model: str, device: str, dtype: torch.dtype) -> tuple[Parts, str]:
    """The model to time and its name: auto = sd15-random on CUDA, else toy, else tiny."""
    from tinv.engine.models import load_parts, tiny_sd_parts
    from tinv.toyworld import MODEL_DIR

    if model == "auto":
        model = "sd15-random" if device == "cuda" else (
            "toy" if (MODEL_DIR / "model_index.json").exists() else "tiny")
    if model == "sd15-random":
        return sd15_random_parts(device, dtype), model
    if model == "tiny":
        return tiny_sd_parts(device=device), model
    path = MODEL_DIR if model == "toy" else Path(model)
    return load_parts(path, device=device, dtype=dtype), model


def _images(parts: Parts, n: int = 5):
    """Random pictures at the model's resolution: step time does not depend on content."""
    from tinv.engine.data import ConceptImages

    g = torch.Generator().manual_seed(0)
    side = parts.resolution
    return ConceptImages(pixels=torch.rand(n, 3, side, side, generator=g) * 2 - 1, paths=[])


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


# ------------------------------------------------------------------ inversion step
class DiffusersExampleStep:
    """One training step as diffusers' textual_inversion example takes it.

    The example's choices that cost time are kept: the whole token-embedding table is the
    trainable parameter (AdamW over all rows, the untouched rows copied back after each
    step), the text encoder runs in fp32 (under bf16 autocast on CUDA, as accelerate's
    mixed precision does), and the VAE encodes the batch's pixels at every step (no cached
    latents). The data loader's PIL work is left out: it runs in worker processes.
    """

    def __init__(self, parts: Parts, images, batch_size: int, device: str):
        from diffusers import DDPMScheduler

        self.parts, self.batch_size, self.device = parts, batch_size, device
        self.tokenizer = copy.deepcopy(parts.tokenizer)
        self.text_encoder = copy.deepcopy(parts.text_encoder).float()
        self.tokenizer.add_tokens([PLACEHOLDER])
        self.text_encoder.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        table = self.text_encoder.get_input_embeddings().weight
        self.placeholder_id = self.tokenizer.convert_tokens_to_ids(PLACEHOLDER)
        init_id = self.tokenizer(PROMPT.split()[-1], add_special_tokens=False).input_ids[0]
        with torch.no_grad():
            table[self.placeholder_id] = table[init_id]
        self.text_encoder.requires_grad_(False)
        self.text_encoder.get_input_embeddings().requires_grad_(True)
        self.text_encoder.train()
        self.original = table.detach().clone()
        self.optimizer = torch.optim.AdamW(self.text_encoder.get_input_embeddings().parameters(),
                                           lr=5e-3 * batch_size, weight_decay=1e-2)
        self.noise_scheduler = DDPMScheduler.from_config(parts.scheduler.config)
        self.pixels = images.pixels.to(device)
        self.ids = self.tokenizer([f"a photo of a {PLACEHOLDER}"] * batch_size, padding="max_length",
                                  max_length=77, truncation=True, return_tensors="pt").input_ids.to(device)
        self.keep = torch.ones(len(self.tokenizer), dtype=torch.bool, device=device)
        self.keep[self.placeholder_id] = False

    def __call__(self) -> None:
        parts, vae = self.parts, self.parts.vae
        idx = torch.randint(len(self.pixels), (self.batch_size,))
        with torch.autocast("cuda", torch.bfloat16, enabled=self.device == "cuda"):
            latents = vae.encode(self.pixels[idx].to(vae.dtype)).latent_dist.sample().detach()
            latents = latents * parts.vae_scale
            noise = torch.randn_like(latents)
            t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps,
                              (self.batch_size,), device=latents.device)
            hidden = self.text_encoder(self.ids)[0].to(parts.unet.dtype)
            # the example's noising, UNet call and MSE are Eq. 2 exactly: the engine's one copy
            loss = objective.loss(parts, self.noise_scheduler, latents, t, noise, conditioning.Cond(hidden))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        with torch.no_grad():
            self.text_encoder.get_input_embeddings().weight[self.keep] = self.original[self.keep]


def time_baseline_step(parts: Parts, images, batch_size: int, steps: int, device: str) -> float:
    step = DiffusersExampleStep(parts, images, batch_size, device)
    step()  # warm-up: allocator, kernels
    return _timed(lambda: [step() for _ in range(steps)], device) / steps


_run_id = 0


def time_tinv_step(parts: Parts, images, batch_size: int, n_concepts: int, steps: int,
                   device: str, warmup: int = 2) -> float:
    """Seconds per concept-step of tinv's loop, `n_concepts` sets packed in one batch.

    Timed as the difference of two runs (warmup + steps vs warmup steps), so latent
    caching and the before/after evaluation drop out and only optimizer steps count.
    """
    from tinv.engine.inversion import InversionConfig, invert_packed

    def run(n_steps: int) -> float:
        global _run_id
        _run_id += 1
        jobs = [(images, InversionConfig(placeholder=f"<bench{_run_id}-{i}>", init="random",
                                         batch_size=batch_size, steps=n_steps))
                for i in range(n_concepts)]
        return _timed(lambda: invert_packed(parts, jobs, progress=False, one_batch=True), device)

    run(1)  # warm-up
    return max(run(warmup + steps) - run(warmup), 1e-9) / (steps * n_concepts)


# -------------------------------------------------------------------------- sampling
def time_stock_sampling(parts: Parts, n: int, steps: int, guidance: float, device: str) -> float:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=DDIMScheduler.from_config(parts.scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator(device).manual_seed(0)

    def call(n_images: int, n_steps: int):
        pipe(PROMPT, num_images_per_prompt=n_images, num_inference_steps=n_steps,
             guidance_scale=guidance, generator=gen, output_type="pt",
             height=parts.resolution, width=parts.resolution)
    call(n, 1)  # warm-up at the timed batch shape
    return _timed(lambda: call(n, steps), device)


def time_tinv_sampling(parts: Parts, n: int, steps: int, guidance: float, batch_size: int,
                       device: str) -> float:
    from tinv.engine.sampling import sample

    seeds = list(range(n))
    sample(parts, [PROMPT], seeds, steps=1, guidance=guidance, batch_size=batch_size,
           progress=False)  # warm-up at the timed batch shape
    return _timed(lambda: sample(parts, [PROMPT], seeds, steps=steps, guidance=guidance,
                                 batch_size=batch_size, progress=False), device)


def compile_unet(parts: Parts, n: int, guidance: float, device: str,
                 backend: str = "inductor") -> tuple[Parts, float]:
    """A copy of parts whose UNet is torch.compile'd for the timed batch shape, and the
    seconds that compiling and a 1-step call at that shape took (reported, not hidden).

    backend "eager" only captures the graph (no code generation): a seconds-long check
    on CPU that the compile path still works, where inductor takes minutes."""
    from tinv.engine.sampling import sample

    # static shapes: the sampler always calls the UNet at one batch shape
    compiled = replace(parts, unet=torch.compile(parts.unet, dynamic=False, backend=backend))
    seconds = _timed(lambda: sample(compiled, [PROMPT], list(range(n)), steps=1, guidance=guidance,
                                    batch_size=n, progress=False), device)
    return compiled, seconds


# -------------------------------------------------------------------------- DVAR
TOY_BUDGET = 300    # conf/model/toyworld.yaml's inversion.steps


def dvar_steps(parts: Parts, n_concepts: int, budget: int, batch_size: int, device: str) -> dict:
    """Where DVAR stops single-word on the first `n_concepts` built-in toy concepts."""
    from tinv.engine import dvar
    from tinv.engine.data import load_concept_images
    from tinv.engine.inversion import InversionConfig, invert_packed
    from tinv.toyworld.concepts import CONCEPT_DIR, CONCEPTS

    global _run_id
    _run_id += 1
    names = list(CONCEPTS)[:n_concepts]
    window = dvar.scaled_window(budget)
    jobs = [(load_concept_images(CONCEPT_DIR / name, parts.resolution),
             InversionConfig(placeholder=f"<dvar{_run_id}-{i}>", initializer_word=CONCEPTS[name]["initializer"],
                             templates=CONCEPTS[name]["kind"], batch_size=batch_size, steps=budget,
                             stop="dvar", dvar_window=window))
            for i, name in enumerate(names)]
    t0 = time.perf_counter()
    out = invert_packed(parts, jobs, progress=False, one_batch=True)
    _sync(device)
    steps = {name: r.steps for name, r in zip(names, out)}
    mean = sum(steps.values()) / len(steps)
    return {"budget": budget, "window": window, "threshold": dvar.THRESHOLD, "concepts": len(names),
            "steps": steps, "mean_steps": mean, "steps_saved": budget - mean, "fewer_x": budget / mean,
            "wall_s": time.perf_counter() - t0}


# ------------------------------------------------------------------------- the run
def run_bench(args, on_phase=None) -> dict:
    """Time every phase; `on_phase(result so far)` after each one, so that a run stopped
    part-way (a GPU lease's timeout) still leaves the phases that finished."""
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    threads = configure_threads(args.threads) if device == "cpu" else torch.get_num_threads()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    parts, model = load_bench_parts(args.model, device, dtype)
    images = _images(parts)
    q = args.quick
    inv_steps = args.inversion_steps or (2 if q else 10)
    n_img = args.samples or (4 if q else 64)
    s_steps = args.sample_steps or (3 if q else 50)
    packed = args.packed or (2 if q else 8)
    b = args.batch_size
    print(f"tinv.tools.bench: {model} on {device} ({threads} threads), dtype {dtype}", file=sys.stderr)

    inv = {"batch_size": b, "timed_steps": inv_steps, "packed_concepts": packed}
    smp = {"images": n_img, "steps": s_steps, "guidance": args.guidance, "batch_size": n_img}
    sample_parts = [parts]   # tinv's sampler runs on the compiled UNet once "compile" ran

    def compile_phase() -> float:
        smp["compile_backend"] = args.compile_backend
        sample_parts[0], seconds = compile_unet(parts, n_img, args.guidance, device, args.compile_backend)
        return seconds
    phases = [
        ("inversion: diffusers example step", inv, "baseline_s_per_step",
         lambda: time_baseline_step(parts, images, b, inv_steps, device)),
        ("inversion: tinv, one concept", inv, "tinv_s_per_concept_step",
         lambda: time_tinv_step(parts, images, b, 1, inv_steps, device)),
        (f"inversion: tinv, {packed} packed", inv, "tinv_packed_s_per_concept_step",
         lambda: time_tinv_step(parts, images, b, packed, inv_steps, device)),
        ("sampling: stock StableDiffusionPipeline", smp, "baseline_s",
         lambda: time_stock_sampling(parts, n_img, s_steps, args.guidance, device)),
    ] + ([(f"torch.compile of tinv's UNet ({args.compile_backend})", smp, "compile_s", compile_phase)]
         if args.compile else []) + [
        ("sampling: tinv", smp, "tinv_s",
         lambda: time_tinv_sampling(sample_parts[0], n_img, s_steps, args.guidance, n_img, device)),
    ]
    res = {"schema": 1, "model": model, "device": device, "dtype": str(dtype).replace("torch.", ""),
           "threads": threads, "quick": q, "command": " ".join(["python -m tinv.tools.bench"] + getattr(args, "argv", sys.argv[1:])),
           "machine": _machine(device), "inversion": inv, "sampling": smp, "ratios": {}}
    if args.dvar:   # last: a run stopped part-way (a lease's timeout) keeps the speed phases
        n_dvar = args.dvar_concepts or (2 if q else 10)
        phases.append((f"DVAR: single-word on {n_dvar} toy concepts, packed", res, "dvar",
                       lambda: dvar_steps(parts, n_dvar, args.dvar_budget, b, device)))
    for name, where, key, fn in tqdm(phases, desc="bench", unit="phase", file=sys.stderr):
        where[key] = fn()
        shown = dvar_line(where[key]) if key == "dvar" else f"{where[key]:.4g} s"
        tqdm.write(f"  {name}: {shown}", file=sys.stderr)
        res["ratios"] = _ratios(inv, smp)
        if on_phase is not None:
            on_phase(res)
    return res


def _ratios(inv: dict, smp: dict) -> dict:
    """baseline time / tinv time for each comparison whose two timings exist so far."""
    pairs = {"inversion_single": (inv, "baseline_s_per_step", "tinv_s_per_concept_step"),
             "inversion_packed": (inv, "baseline_s_per_step", "tinv_packed_s_per_concept_step"),
             "sampling": (smp, "baseline_s", "tinv_s")}
    return {k: d[a] / d[t] for k, (d, a, t) in pairs.items() if a in d and t in d}


def _machine(device: str) -> dict:
    info = {"host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "cpus_available": len(os.sched_getaffinity(0)), "torch": torch.__version__}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def dvar_line(d: dict) -> str:
    return (f"DVAR (N={d['window']}, alpha={d['threshold']:g}) on {d['concepts']} toy concepts: "
            f"{d['mean_steps']:.1f} of {d['budget']} steps on average, {d['steps_saved']:.1f} saved "
            f"({d['fewer_x']:.1f}x fewer; per concept {d['steps']})")


def table(res: dict) -> str:
    inv, smp, r = res["inversion"], res["sampling"], res["ratios"]
    rows = [
        ("inversion s/concept-step, batch %d" % inv["batch_size"], inv["baseline_s_per_step"],
         inv["tinv_s_per_concept_step"], r["inversion_single"]),
        ("inversion s/concept-step, %d packed" % inv["packed_concepts"], inv["baseline_s_per_step"],
         inv["tinv_packed_s_per_concept_step"], r["inversion_packed"]),
        ("sampling %d images x %d steps, s" % (smp["images"], smp["steps"]), smp["baseline_s"],
         smp["tinv_s"], r["sampling"]),
    ]
    head = f"{res['model']} on {res['device']} ({res['dtype']}, {res['threads']} threads)"
    lines = [head, f"| {'what':<40} | {'diffusers':>10} | {'tinv':>10} | {'speed-up':>8} |",
             f"|{'-' * 42}|{'-' * 12}|{'-' * 12}|{'-' * 10}|"]
    lines += [f"| {w:<40} | {a:>10.4g} | {t:>10.4g} | {x:>7.2f}x |" for w, a, t, x in rows]
    if "compile_s" in smp:
        lines.append(f"torch.compile of the UNet ({smp.get('compile_backend', 'inductor')}): "
                     f"{smp['compile_s']:.1f} s (not in the tinv time)")
    if res.get("dvar"):
        lines.append(dvar_line(res["dvar"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None, on_phase=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m tinv.tools.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few steps and images (smoke run)")
    p.add_argument("--model", default="auto", help="auto | tiny | toy | sd15-random | pipeline folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: $OMP_NUM_THREADS, else every available CPU)")
    p.add_argument("--batch-size", type=int, default=4, help="images per concept per step")
    p.add_argument("--packed", type=int, default=None, help="concepts packed in one batch (8)")
    p.add_argument("--inversion-steps", type=int, default=None, help="timed steps (10)")
    p.add_argument("--samples", type=int, default=None, help="images to sample (64)")
    p.add_argument("--sample-steps", type=int, default=None, help="DDIM steps (50)")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--compile", action="store_true", help="torch.compile tinv's UNet for sampling")
    p.add_argument("--compile-backend", default="inductor", choices=["inductor", "aot_eager", "eager"],
                   help="torch.compile backend (eager: graph capture only, a quick check on CPU)")
    p.add_argument("--no-dvar", dest="dvar", action="store_false", help="skip the DVAR steps-saved phase")
    p.add_argument("--dvar-concepts", type=int, default=None, help="toy concepts DVAR runs on (10; --quick 2)")
    p.add_argument("--dvar-budget", type=int, default=TOY_BUDGET, help="the fixed budget DVAR is against (300)")
    p.add_argument("--out", default="runs/bench/bench.json", help="JSON result file")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)   # the command as given, also when called
    from tinv.core.atomic import write_json

    def partial(res: dict) -> None:
        write_json(args.out, res)
        if on_phase is not None:
            on_phase(res)
    res = run_bench(args, partial)
    write_json(args.out, res)
    print(table(res))
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
