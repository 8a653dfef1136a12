"""Sampling: DDIM with classifier-free guidance, one fixed x_T per seed (paper section 5.1).

We drive diffusers' `DDIMScheduler` and the model's own VAE decoder directly instead of
calling `StableDiffusionPipeline` / `LDMTextToImagePipeline`, for three reasons that the
evaluation grid (64 samples x every prompt x every setup x every concept) makes count:
  * one UNet call per step carries unconditional and conditional halves of a batch that
    may mix several prompts (the pipelines take one prompt list per call);
  * each distinct prompt is encoded once, not once per batch;
  * x_T depends on the seed alone (drawn on the CPU in float32), so every setup, prompt
    and device sees identical starting noise and setups are compared on the same draws.
The same code serves both families: `Parts.encode_text` hides CLIP vs LDM-BERT (behind
tinv.engine.conditioning, the one text-to-UNet seam, which a per-layer word also goes through), and
`vae.decode(...).sample` is shared by `AutoencoderKL` and `VQModel`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from diffusers import DDIMScheduler

from tinv.engine import conditioning
from tinv.engine.conditioning import Cond
from tinv.engine.pseudo_words import PseudoWord, expand_prompt, token_names
from tinv.engine.progress import bar as progress_bar

# How many batches sample() computes at once, each on its own Python thread (set_streams).
_STREAMS = 1


def set_streams(n: int) -> int:
    """Batches to sample at once on the CPU. The toy model's ops are too small for torch's
    intra-op threads to pay (and two thread counts sum floats in two orders); two batches
    side by side, each computed exactly as alone, use two cores with the rows unchanged."""
    global _STREAMS
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"sampling streams must be an integer >= 1, got {n!r}")
    _STREAMS = n
    return n


def installed_words(parts) -> list[PseudoWord]:
    """The pseudo-words present in the tokenizer, found by their token naming.

    A placeholder with k vectors owns the added tokens "<S*>", "<S*>_1", ..., "<S*>_{k-1}"
    (see `pseudo_words.token_names`), so the tokenizer alone tells how far "<S*>" expands,
    whoever added it (`invert`, an import, diffusers' `load_textual_inversion`).
    """
    special = set(parts.tokenizer.all_special_tokens)
    # only added tokens can be placeholders (and get_vocab() would copy all 49k of CLIP's)
    added = {t: i for t, i in parts.tokenizer.get_added_vocab().items() if t not in special}
    numbered = re.compile(r"^(.*)_(\d+)$")
    heads = [t for t in added if not ((m := numbered.match(t)) and m.group(1) in added)]
    table = parts.input_embeddings().weight
    words = []
    for head in heads:
        k = 1
        while f"{head}_{k}" in added:
            k += 1
        names = token_names(head, k)
        ids = [added[n] for n in names]
        words.append(PseudoWord(head, names, ids, init=table[ids].detach().clone()))
    return words


def tokenize(parts, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids [P, 77] with every placeholder spelled as all of its tokens."""
    words = installed_words(parts)
    return parts.tokenize([expand_prompt(p, words) for p in prompts])


@torch.no_grad()
def encode_prompts(parts, prompts: Sequence[str]) -> Cond:
    """Conditioning (a Cond of [P, L, D]) for each prompt, in the UNet's dtype and on its device."""
    if isinstance(prompts, str):
        raise TypeError(f"prompts must be a list of strings, got the string {prompts!r}")
    return conditioning.encode(parts, tokenize(parts, prompts)).to(parts.device, parts.dtype)


def latent_shape(parts) -> tuple[int, int, int]:
    """(C, h, w) of the UNet's latents at the model's resolution."""
    down = 2 ** (len(parts.vae.config.block_out_channels) - 1)
    side = parts.resolution // down
    return parts.unet.config.in_channels, side, side


def initial_noise(parts, seeds: Sequence[int]) -> tuple[torch.Tensor, list[torch.Generator]]:
    """x_T [S, C, h, w] (float32, CPU) and one generator per seed, advanced past x_T.

    Each seed owns a CPU generator, so x_T is the same on every device, in every batch
    layout and for every prompt; the generator is kept for DDIM's eta > 0 noise.
    """
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    x_T = torch.stack([torch.randn(latent_shape(parts), generator=g) for g in gens])
    return x_T, gens


def ddim_scheduler(parts, steps: int, **overrides) -> DDIMScheduler:
    """A fresh DDIM scheduler on the model's noise schedule (the shared one is left alone)."""
    if steps < 1:
        raise ValueError(f"sampling steps must be >= 1, got {steps}")
    if parts.family == "sd":  # StableDiffusionPipeline turns x_0 clipping off whatever the config says
        overrides.setdefault("clip_sample", False)
    sched = DDIMScheduler.from_config(parts.scheduler.config, **overrides)
    sched.set_timesteps(steps)
    return sched


def guided_eps(unet, x: torch.Tensor, t, cond: Cond, uncond: Cond | None, guidance: float) -> torch.Tensor:
    """eps = uncond + g * (cond - uncond), both halves in ONE UNet call; g == 1 skips uncond."""
    if guidance == 1.0 or uncond is None:
        return conditioning.eps(unet, x.to(unet.dtype), t, cond).float()
    both = conditioning.eps(unet, torch.cat([x, x]).to(unet.dtype), t, conditioning.cat([uncond, cond])).float()
    eps_uncond, eps_cond = both.chunk(2)
    return eps_uncond + guidance * (eps_cond - eps_uncond)


@torch.no_grad()
def denoise(parts, x_T: torch.Tensor, cond: Cond, uncond: Cond | None,
            steps: int, guidance: float, eta: float = 0.0,
            generators: list[torch.Generator] | None = None, bar=None) -> torch.Tensor:
    """Run DDIM from x_T [B, C, h, w] to x_0 latents (float32); cond/uncond are [B, L, D].

    Scheduler arithmetic stays in float32 whatever the UNet's dtype; `bar` (a tqdm) is
    advanced once per step.
    """
    sched = ddim_scheduler(parts, steps)
    x = x_T.to(parts.device, torch.float32)
    for t in sched.timesteps:
        eps = guided_eps(parts.unet, x, t, cond, uncond, guidance)
        x = sched.step(eps, t, x, eta=eta, generator=generators if eta > 0 else None).prev_sample
        if bar is not None:
            bar.update(1)
    return x


@torch.no_grad()
def decode_latents(parts, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> images [B, 3, H, W] in [0, 1], float32 on the CPU."""
    vae = parts.vae
    pixels = vae.decode((latents / parts.vae_scale).to(vae.device, vae.dtype)).sample
    return (pixels.float() / 2 + 0.5).clamp(0, 1).cpu()


def _check(prompts, seeds, guidance, batch_size):
    if isinstance(prompts, str) or not len(prompts):
        raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
    for p in prompts:
        if not isinstance(p, str) and (len(p) != len(seeds) or not all(isinstance(t, str) for t in p)):
            raise ValueError(f"a prompt given per seed needs one text for each of the {len(seeds)} "
                             f"seeds, got {p!r}")
    if not len(seeds):
        raise ValueError("seeds must be a non-empty list of integers")
    if guidance < 1.0:
        raise ValueError(f"guidance must be >= 1 (1 = no guidance), got {guidance}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


@torch.no_grad()
def sample(parts, prompts: Sequence[str | Sequence[str]], seeds: Sequence[int], steps: int = 50,
           guidance: float = 5.0, eta: float = 0.0, batch_size: int = 64,
           progress: bool = True, streams: int | None = None) -> torch.Tensor:
    """Generate len(prompts) x len(seeds) images, [N, 3, H, W] in [0, 1] (float32, CPU).

    Image i shows prompts[i // len(seeds)] from seed seeds[i % len(seeds)]: prompt-major,
    and seed s starts from the same x_T under every prompt. A prompt given as a list holds
    one text per seed (the human captions in turn: seed i under caption i mod 5), so such a
    row is batched like any other. Defaults follow the authors'
    evaluation script (DDIM 50 steps, eta 0, guidance 5.0). A batch may mix prompts;
    batch_size counts images (the UNet sees twice that with guidance). On the CPU, `streams`
    batches (default: set_streams) are computed at once on as many threads, each exactly as
    it would be alone, so the images do not depend on it.
    """
    _check(prompts, seeds, guidance, batch_size)
    per_image = [t for p in prompts for t in ([p] * len(seeds) if isinstance(p, str) else p)]
    unique = list(dict.fromkeys(per_image))
    table = encode_prompts(parts, unique + [""])  # last row: the unconditional prompt ""
    which = torch.tensor([unique.index(t) for t in per_image])
    x_T, gens = initial_noise(parts, seeds)
    n_seeds, total = len(seeds), len(prompts) * len(seeds)

    n_batches = -(-total // batch_size)
    bar = progress_bar(total=n_batches * steps, desc="sampling", unit="step", disable=not progress)

    def one_batch(start: int) -> torch.Tensor:
        idx = torch.arange(start, min(start + batch_size, total))
        cond = table[which[idx]]
        uncond = table[-1:].expand(len(cond))
        # a seed's generator is shared by its prompts, so eta > 0 noise is cloned per image
        batch_gens = [_clone(gens[i % n_seeds]) for i in idx.tolist()] if eta > 0 else None
        latents = denoise(parts, x_T[idx % n_seeds], cond, uncond, steps, guidance, eta,
                          batch_gens, bar)
        return decode_latents(parts, latents)

    starts = range(0, total, batch_size)
    workers = min(streams or _STREAMS, n_batches) if parts.device.type == "cpu" else 1
    if table.at is not None or table.values:
        # NeTI's words swap the text encoder's embeddings and its values a layer's to_v for
        # each call: module state that two threads would share, so its batches go one by one
        workers = 1
    if workers > 1:
        if table.layers:          # wrap the processors once here, not from two threads
            conditioning.route(parts.unet)
        with ThreadPoolExecutor(workers, thread_name_prefix="tinv-sample") as pool:
            out = list(pool.map(one_batch, starts))    # in order: image i stays image i
    else:
        out = [one_batch(start) for start in starts]
    bar.close()
    return torch.cat(out)


def _clone(gen: torch.Generator) -> torch.Generator:
    copy = torch.Generator()
    copy.set_state(gen.get_state())
    return copy
