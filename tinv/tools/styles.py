"""Styles on the toy world (section 4.3): why they did not invert, and the gates that say they do.

    python -m tinv.tools.styles [--only diagnosis,existence,inversion] [--set ARG=VALUE]

prints one JSON object per gate (the CLI of tinv.tools.gates). tests/toyworld/test_styles.py
asserts the thresholds on these functions with the same fixed seeds; docs/toyworld.md has the
measured numbers.

- `diagnosis`: the experiment that found the cause (issue 19). (1) Can the world draw each
  look from words in its captions' grammar? (2) What does the paper's template "a painting
  in the style of X" draw for the coarse word X, and for the look's own words? (3) Does the
  default single word learn the look under the paper's style templates, and under the same
  templates with the medium noun "painting" (a style VALUE in this world) swapped for
  "picture" (`model.style_noun`)? Style, background and outline shares by the oracle.
- `existence`: positive control. For each style concept, one input vector that draws its
  style, background and outline: the pretraining's own style compound (`pretrain.style_vector`,
  a combination pretraining never showed) at a few side scales, chosen on selection seeds,
  reported on held-out seeds, under the toy world's reconstruction prompt.
- `inversion`: the default single-word inversion of every style concept against prompt-only
  (S* deleted) and the long human captions, under the reconstruction prompt, with paired
  95% intervals over the concepts.
"""
from __future__ import annotations

import numpy as np
import torch

from tinv.toyworld.captions import BACKGROUND, STYLE_PREFIX
from tinv.toyworld.concepts import CONCEPTS
from tinv.tools import gates
from tinv.tools.gates import _shares, composed, concept_docs, default_inversion, main, paired_interval
from tinv.toyworld.oracle import load_oracle, oracle_reconstruction

STYLE_CONCEPTS = tuple(n for n, c in CONCEPTS.items() if c["kind"] == "style")
SELECT_SEEDS, HELD_OUT = range(8), range(1000, 1016)


def _by_attribute(oracle, images, truth: dict) -> dict:
    """Share of samples showing each of `truth`'s attributes, all of them, and the styles drawn."""
    pred = oracle.predict(images)
    out = {k: float(np.mean(oracle_reconstruction(pred, {k: v}))) for k, v in truth.items()}
    out["all"] = float(np.mean(oracle_reconstruction(pred, truth)))
    out["styles_drawn"] = {s: float(np.mean([p == s for p in pred["style"]])) for s in sorted(set(pred["style"]))}
    return out


def _recon_template() -> str:
    from tinv.harness.prompts import reconstruction_prompt
    return reconstruction_prompt(composed(), "style").template


def diagnosis(concepts=STYLE_CONCEPTS, n_samples: int = 16, sample_steps: int = 20, steps: int = 300) -> dict:
    """Words alone, then single-word inversion under the paper's and the neutral-noun templates."""
    from tinv import PACKAGE_DIR
    from tinv.engine import sampling
    from tinv.engine.inversion import invert_packed
    from tinv.engine.models import load_parts
    from tinv.engine.templates import templates_for
    docs = concept_docs(concepts)
    oracle, parts = load_oracle(), load_parts(gates.MODEL_DIR)
    seeds = list(HELD_OUT)[:n_samples]
    words = {}
    for n, c in docs.items():
        a = c["attributes"]
        look = f"{STYLE_PREFIX[a['style']][0].split(' of')[0]} {BACKGROUND[a['background']][0]}"
        words[n] = {"caption grammar": f"{STYLE_PREFIX[a['style']][0]} a star {BACKGROUND[a['background']][0]}",
                    "paper template, coarse word": f"a painting in the style of {c['initializer']}",
                    "paper template, the look's words": f"a painting in the style of {look}",
                    "neutral noun, coarse word": f"a picture in the style of {c['initializer']}",
                    "neutral noun, the look's words": f"a picture in the style of {look}"}
    flat = [(n, k, p) for n in docs for k, p in words[n].items()]
    imgs = sampling.sample(parts, [p for *_, p in flat], seeds, steps=sample_steps, progress=False)
    out: dict = {"words": {}, "inversion": {}}
    for (n, k, p), im in zip(flat, imgs.split(n_samples)):
        out["words"].setdefault(n, {})[k] = {"prompt": p, **_by_attribute(oracle, im, docs[n]["attributes"])}
    nouns = {"paper (painting)": "painting", "neutral (picture)": "picture"}
    jobs = [(n, label, default_inversion(n, placeholder=f"<{n}-{noun}>", style_noun=noun, steps=steps,
                                         checkpoint_every=0))
            for n in docs for label, noun in nouns.items()]
    learned = invert_packed(parts, [(PACKAGE_DIR / docs[n]["path"], cfg) for n, _, cfg in jobs], progress=False, one_batch=True)
    first = [templates_for("style", cfg.style_noun)[0][0] for *_, cfg in jobs]
    texts = [t.format(cfg.placeholder) for t, (*_, cfg) in zip(first, jobs)] + \
            [t.format(docs[n]["initializer"]) for t, (n, *_) in zip(first, jobs)]
    imgs = sampling.sample(parts, texts, seeds, steps=sample_steps, progress=False).split(n_samples)
    for i, ((n, label, cfg), res) in enumerate(zip(jobs, learned)):
        out["inversion"].setdefault(n, {})[label] = {
            "prompt": texts[i], "learned": _by_attribute(oracle, imgs[i], docs[n]["attributes"]),
            "coarse_word": _by_attribute(oracle, imgs[len(jobs) + i], docs[n]["attributes"]),
            "eval_loss_before_after": [res.eval_loss_before, res.eval_loss_after]}
    return out


def existence_gate(concepts=STYLE_CONCEPTS, scales=(1.0, 1.5, 2.0, 3.0), n_samples: int = 16,
                   sample_steps: int = 20) -> dict:
    """The best style compound per concept (chosen on SELECT_SEEDS) on held-out seeds."""
    from tinv.engine import sampling
    from tinv.engine.models import load_parts
    from tinv.engine.pseudo_words import set_vectors
    from tinv.tools.pretrain import style_vector
    docs = concept_docs(concepts)
    oracle, parts = load_oracle(), load_parts(gates.MODEL_DIR)
    table = parts.input_embeddings().weight.detach().clone()
    template = _recon_template()
    words = [(n, s, f"<{n}-x{s:g}>") for n in docs for s in scales]
    for n, s, token in words:
        set_vectors(parts, token, style_vector(table, parts.tokenizer, docs[n]["attributes"], s).reshape(1, -1))
    pick = sampling.sample(parts, [template.format(t) for *_, t in words], list(SELECT_SEEDS), steps=sample_steps,
                           progress=False).split(len(SELECT_SEEDS))
    best: dict = {}
    for (n, s, token), imgs in zip(words, pick):
        score = _shares(oracle, imgs, docs[n]["attributes"])["all"]
        if n not in best or score > best[n][1]:
            best[n] = (token, score, s)
    seeds = list(HELD_OUT)[:n_samples]
    imgs = sampling.sample(parts, [template.format(best[n][0]) for n in docs], seeds, steps=sample_steps,
                           progress=False).split(n_samples)
    return {"prompt": template, **{n: {"scale": best[n][2], "selection_all": best[n][1],
                                       **_by_attribute(oracle, im, docs[n]["attributes"])}
                                   for n, im in zip(docs, imgs)}}


def inversion_gate(concepts=STYLE_CONCEPTS, n_samples: int = 16, sample_steps: int = 20) -> dict:
    """Single word vs prompt-only and vs the long human captions, on each look's attributes."""
    from tinv import PACKAGE_DIR
    from tinv.engine import sampling
    from tinv.engine.inversion import invert_packed
    from tinv.engine.models import load_parts
    from tinv.harness.prompts import fill
    docs = concept_docs(concepts)
    oracle, parts = load_oracle(), load_parts(gates.MODEL_DIR)
    template = _recon_template()
    invert_packed(parts, [(PACKAGE_DIR / c["path"], default_inversion(n, placeholder=f"<{n}>", checkpoint_every=0))
                          for n, c in docs.items()], progress=False, one_batch=True)
    seeds = list(HELD_OUT)[:n_samples]
    texts = [t for n in docs for t in (fill(template, f"<{n}>"), fill(template, ""))]
    imgs = sampling.sample(parts, texts, seeds, steps=sample_steps, progress=False).split(n_samples)
    per_caption = max(1, n_samples // 5)
    caps = [fill(template, cap) for c in docs.values() for cap in c["captions"]["long"][:5]]
    cap_imgs = sampling.sample(parts, caps, seeds[:per_caption], steps=sample_steps, progress=False)
    out: dict = {"prompt": template}
    for i, (n, c) in enumerate(docs.items()):
        out[n] = {"single_word": _by_attribute(oracle, imgs[2 * i], c["attributes"]),
                  "prompt_only": _by_attribute(oracle, imgs[2 * i + 1], c["attributes"]),
                  "captions_long": _by_attribute(oracle, cap_imgs[5 * i * per_caption:5 * (i + 1) * per_caption],
                                                 c["attributes"])}
    learned = [out[n]["single_word"]["all"] for n in docs]
    out["mean_single_word"] = float(np.mean(learned))
    for ref in ("prompt_only", "captions_long"):
        diffs = [out[n]["single_word"]["all"] - out[n][ref]["all"] for n in docs]
        out[f"gain_over_{ref}"] = {"mean": float(np.mean(diffs)), "ci": paired_interval(diffs), "per_concept": diffs}
    return out


GATES = {"diagnosis": diagnosis, "existence": existence_gate, "inversion": inversion_gate}


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(gates=GATES, doc=__doc__)
