"""Measure the toy world's acceptance gates on the shipped weights.

    python -m tinv.toyworld.gates [--only oracle,autoencoder,generation,evaluator,inversion]

prints one JSON object of measured numbers. tests/toyworld/test_gates.py asserts the
thresholds on exactly these functions, with the same fixed seeds.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import MODEL_DIR, attributes, captions
from .attributes import NAMED, UNNAMED
from .oracle import load_oracle, oracle_reconstruction

FRESH_SEED = 777_000        # fresh renders: never the pretraining pool's seed
# Every built-in object concept; the gate asks that at least 3 of them gain >= 0.2.
INVERSION_CONCEPTS = ("red_star", "blue_heart", "green_cross", "orange_arrow", "purple_diamond",
                      "pink_square", "yellow_triangle", "white_circle")


def fresh_renders(n: int = 1000, seed: int = FRESH_SEED) -> tuple[torch.Tensor, list[dict]]:
    """n fresh scenes (any attributes, concepts included): images [n, 3, 32, 32] in [0, 1]."""
    from .render import render_array
    rng = np.random.default_rng(seed)
    scenes = [attributes.sample(rng) for _ in range(n)]
    imgs = np.stack([render_array(a, seed + i) for i, a in enumerate(scenes)])
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255, scenes


def accuracy(pred: dict[str, list[str]], scenes: list[dict], names) -> dict[str, float]:
    return {k: float(np.mean([p == a[k] for p, a in zip(pred[k], scenes)])) for k in names}


def oracle_gate(n: int = 1000) -> dict[str, float]:
    """Oracle accuracy per attribute on fresh renders."""
    imgs, scenes = fresh_renders(n)
    return accuracy(load_oracle().predict(imgs), scenes, attributes.ALL)


@torch.no_grad()
def autoencoder_gate(n: int = 1000) -> dict[str, float]:
    """Oracle accuracy per named attribute on the shipped autoencoder's reconstructions."""
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(MODEL_DIR / "vae", torch_dtype=torch.float32).eval()
    imgs, scenes = fresh_renders(n)
    rec = torch.cat([vae.decode(vae.encode(x * 2 - 1).latent_dist.mean).sample for x in imgs.split(250)])
    return accuracy(load_oracle().predict(((rec + 1) / 2).clamp(0, 1)), scenes, NAMED)


def generation_gate(n_prompts: int = 128, steps: int = 20, guidance: float | None = None,
                    parts=None) -> dict[str, float]:
    """Share of samples (one seed per prompt, default guidance) with the asked shape, colour,
    background and style, per the oracle."""
    import inspect

    from tinv import sampling
    from tinv.models import load_parts
    parts = parts or load_parts(MODEL_DIR)
    if guidance is None:
        guidance = inspect.signature(sampling.sample).parameters["guidance"].default
    pairs = captions.generation_prompts(n_prompts)
    imgs = sampling.sample(parts, [p for p, _ in pairs], seeds=[0], steps=steps, guidance=guidance,
                           progress=False)
    return accuracy(load_oracle().predict(imgs), [a for _, a in pairs], ("shape", "color", "background", "style"))


@torch.no_grad()
def evaluator_gate(n: int = 1000) -> dict[str, float]:
    """Zero-shot top-1 per named attribute; share of pairs where the matching caption beats a
    mismatching one (another scene's caption), and the harder share where the mismatch
    differs in one named attribute only."""
    from PIL import Image

    from .evaluator import load_evaluator
    model, preprocess, tokenizer = load_evaluator()
    imgs, scenes = fresh_renders(n)
    pil = [Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for x in imgs]
    feats = torch.cat([model.encode_image(torch.stack([preprocess(p) for p in pil[i:i + 250]]))
                       for i in range(0, n, 250)])
    feats = feats / feats.norm(dim=-1, keepdim=True)

    def text(prompts):
        f = model.encode_text(tokenizer(prompts))
        return f / f.norm(dim=-1, keepdim=True)
    out = {}
    for k, values in NAMED.items():
        t = text([captions.attribute_prompt(k, v) for v in values])
        top = (feats @ t.T).argmax(-1).tolist()
        out[f"zero_shot_{k}"] = float(np.mean([values[j] == s[k] for j, s in zip(top, scenes)]))
    rng = np.random.default_rng(FRESH_SEED)
    match = text([captions.full_caption(s) for s in scenes])
    other = text([captions.full_caption(scenes[(i + 1 + rng.integers(n - 1)) % n]) for i in range(n)])
    swapped = []
    for s in scenes:
        k = ("shape", "color", "background")[rng.integers(3)]
        choices = [v for v in NAMED[k] if v != s[k]]
        swapped.append(captions.full_caption({**s, k: choices[rng.integers(len(choices))]}))
    swap = text(swapped)
    s_match = (feats * match).sum(-1)
    out["pairs_match_beats_other"] = float((s_match > (feats * other).sum(-1)).float().mean())
    out["pairs_match_beats_one_swap"] = float((s_match > (feats * swap).sum(-1)).float().mean())
    return out


def default_inversion(concept: str, **overrides):
    """The InversionConfig of `python run.py concept=<concept>` (the toy world, method
    single_word): conf/ composed by Hydra and merged by `tinv.plan.inversion_config`, as a
    job does; `overrides` replace single fields."""
    import dataclasses

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tinv import PACKAGE_DIR
    from tinv.concepts import resolve_concept
    from tinv.plan import inversion_config
    with initialize_config_dir(config_dir=str(Path(PACKAGE_DIR).parent / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config", overrides=[f"concept={concept}"]), resolve=True)
    return dataclasses.replace(inversion_config(cfg, resolve_concept(cfg["concept"])), **overrides)


def inversion_gate(concepts=INVERSION_CONCEPTS, n_samples: int = 16, sample_steps: int = 20,
                   **overrides) -> dict[str, dict[str, float]]:
    """Oracle reconstruction of the default single-word inversion ("a photo of a <name>")
    vs the coarse word alone ("a photo of a <initializer>"), per concept.

    The concepts are inverted together (`invert_packed`: independent placeholders, one UNet
    batch; the same result as one run each), each with `default_inversion()`.
    """
    import yaml

    from tinv import PACKAGE_DIR, sampling
    from tinv.inversion import invert_packed
    from tinv.models import load_parts
    oracle = load_oracle()
    conf = Path(PACKAGE_DIR).parent / "conf" / "concept"
    docs = {name: yaml.safe_load((conf / f"{name}.yaml").read_text()) for name in concepts}
    parts = load_parts(MODEL_DIR)
    invert_packed(parts, [(PACKAGE_DIR / c["path"], default_inversion(name, placeholder=f"<{name}>", **overrides))
                          for name, c in docs.items()], progress=False)
    prompts = [p for name, c in docs.items() for p in (f"a photo of a <{name}>", f"a photo of a {c['initializer']}")]
    imgs = sampling.sample(parts, prompts, list(range(n_samples)), steps=sample_steps, progress=False)
    out = {}
    for i, (name, c) in enumerate(docs.items()):
        learned = imgs[2 * i * n_samples:(2 * i + 1) * n_samples]
        coarse = imgs[(2 * i + 1) * n_samples:(2 * i + 2) * n_samples]
        r_learned = np.mean(oracle_reconstruction(oracle.predict(learned), c["attributes"]))
        r_coarse = np.mean(oracle_reconstruction(oracle.predict(coarse), c["attributes"]))
        out[name] = {"inverted": float(r_learned), "coarse_word": float(r_coarse),
                     "gain": float(r_learned - r_coarse)}
    return out


GATES = {"oracle": oracle_gate, "autoencoder": autoencoder_gate, "generation": generation_gate,
         "evaluator": evaluator_gate, "inversion": inversion_gate}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(GATES), help=f"comma-separated subset of {list(GATES)}")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    result = {}
    for name in args.only.split(","):
        if name not in GATES:
            raise SystemExit(f"unknown gate {name!r}; choose from {list(GATES)}")
        t0 = time.time()
        result[name] = GATES[name]()
        result[name + "_seconds"] = round(time.time() - t0, 1)
        print(json.dumps({name: result[name]}), flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
