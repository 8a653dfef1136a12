"""The method registry: what each kind of setup does, in one place.

A setup's YAML (conf/method/) is data: its flags say which kind it is, and `kind_of` is the
only reader of those flags. A kind says whether the setup learns a word (tinv.harness.learned runs
the inversion, the InversionConfig coming from the YAML's `inversion` block), what fills the
placeholder of the evaluation prompts, how the samples of each prompt are made, and whether
they are the training images themselves (scored without pairing an image with itself):

| kind | YAML flags | fills `{}` with | samples |
| --- | --- | --- | --- |
| learned word | learns | the learned word | DDIM from the seeds |
| tuned generator | learns, pivotal | the learned word | DDIM from the seeds, tuned UNet |
| bipartite inversion | learns, bipartite | the learned word | DDIM-inverted training images, regenerated |
| human captions | captions: short/long | each caption | DDIM from the seeds, per caption |
| human captions in turn | captions, caption_seeds: in_turn | caption i mod n at seed i | DDIM from the seeds, once each |
| image-only | reference: image_only | nothing | the training images |
| prompt-only | reference: prompt_only | "" | DDIM from the seeds, shared by all jobs |
| initializer word | reference: initializer | the concept's initializer | DDIM from the seeds |
| word and class noun | learns, inversion.class_noun | "S* <class noun>" | DDIM from the seeds |

The paper's successors (P+, NeTI, Custom Diffusion, DreamBooth-LoRA) are learned words
whose InversionConfig names a learner (tinv/engine/learners): a UNet they tune or a
per-layer conditioning they install travels with the learned word, so they sample as the
learned word does.

A new setup of an existing kind is a YAML; a new kind is a class here plus its YAML
(docs/DESIGN.md, "Adding a method"). This module stays light to import (the config check
builds plans before any model loads): the sampling code is imported where a kind samples.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

from tinv.core.errors import InputError

log = logging.getLogger("tinv.harness.job")    # its lines are the job's


def generate(plan, parts, texts: list, progress: bool) -> list:
    """Each text's samples [S, 3, H, W] from the protocol's seeds (plan.eval); a text given
    as a list has one entry per seed."""
    from tinv.engine.sampling import sample
    e = plan.eval
    images = sample(parts, texts, e.seeds, steps=e.steps, guidance=e.guidance, eta=e.eta,
                    batch_size=e.batch_size, progress=progress)
    return list(images.split(len(e.seeds)))


def prompt_only_cached(plan, parts, texts: list[str], cache_dir, progress: bool) -> list:
    """Prompt-only samples do not depend on the concept or setup: one file per
    (model weights, text, seeds, sampler settings), shared by every job under results_root."""
    import hashlib
    import json

    import torch

    from tinv.core import atomic
    e = plan.eval
    spec = {"model": plan.model.weights, "dtype": plan.model.dtype, "device": str(parts.device.type),
            "seeds": e.seeds, "steps": e.steps, "guidance": e.guidance, "eta": e.eta, "one_prompt_per_call": True}
    files = {t: cache_dir / (hashlib.sha256(json.dumps({**spec, "text": t}, sort_keys=True)
                                            .encode()).hexdigest()[:20] + ".pt") for t in texts}
    missing = [t for t in texts if not files[t].exists()]
    if missing:
        log.info("prompt-only: sampling %d uncached prompt(s)", len(missing))
        # One prompt per sampling call: a batch that mixed the missing prompts would depend on
        # what the cache held already (the kernels are not batch invariant), and with it the row.
        for t, imgs in ((t, generate(plan, parts, [t], progress)[0]) for t in missing):
            # uint8 as an image file holds it; +0.5 on load makes the round trip exact
            atomic.save_torch(files[t], {"spec": {**spec, "text": t}, "images": (imgs * 255).to(torch.uint8)})
    return [(torch.load(files[t])["images"].float() + 0.5) / 255 for t in texts]


class Kind:
    """A learned word sampled from the seeds: the paper's setups and the default."""
    name = "learned word"
    learns = True            # tinv.harness.learned runs (or reuses) the inversion
    tunes = False            # pivotal tuning after the inversion
    captions = False         # one filler per human caption, scores averaged over them
    in_turn = False          # one cell per prompt, seed i under filler i mod n (Plan.cells)
    exclude_self = False     # the samples are (regenerations of) the training images

    def fillers(self, method: Mapping, concept, placeholder: str) -> list[str | None]:
        """What replaces `{}` in each prompt (None: the prompt is not sampled at all)."""
        return [placeholder]

    def inversion_config(self, cfg: Mapping, concept, placeholder: str):
        """InversionConfig = defaults < model.inversion (budget) < method.inversion (setup),
        plus what the method states as a share of the budget; None for a kind that learns nothing."""
        if not self.learns:
            return None
        from tinv.engine.inversion_config import InversionConfig
        method = cfg["method"]
        fields = {**dict(cfg["model"].get("inversion") or {}), **dict(method.get("inversion") or {})}
        known = {f.name for f in dataclasses.fields(InversionConfig)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise InputError(f"method {method['name']!r}: unknown inversion field(s) {unknown}; "
                             f"InversionConfig has {sorted(known)}")
        fields.update(seed=int(cfg["seed"]), templates=concept.kind, placeholder=placeholder,
                      initializer_word=concept.initializer)
        if cfg["model"].get("style_noun"):
            fields["style_noun"] = cfg["model"]["style_noun"]
        steps = int(fields.get("steps", InversionConfig.steps))
        if method.get("progressive_fraction"):
            fields["progressive_interval"] = max(1, round(float(method["progressive_fraction"]) * steps))
        if method.get("dvar_window_fraction"):   # DVAR's window as a share of the budget (single_word_dvar.yaml)
            from tinv.engine.dvar import scaled_window
            fields["dvar_window"] = scaled_window(steps, float(method["dvar_window_fraction"]))
        try:
            return InversionConfig(**fields)
        except (TypeError, ValueError) as e:
            raise InputError(f"method {method['name']!r}: {e}") from e

    def pivotal_config(self, cfg: Mapping, icfg, recon_template: str):
        """The PivotalConfig of a kind that tunes the UNet after the inversion, else None."""
        if not self.tunes:
            return None
        from tinv.engine.pivotal import PivotalConfig
        p = dict(cfg["method"]["pivotal"])
        frac = p.pop("steps_fraction", None)
        if frac is not None:
            p["steps"] = max(1, round(float(frac) * icfg.steps))
        p.setdefault("batch_size", icfg.batch_size)
        try:
            return PivotalConfig(**p, seed=icfg.seed, placeholder=icfg.placeholder, prompt=recon_template)
        except (TypeError, ValueError) as e:
            raise InputError(f"method {cfg['method']['name']!r}: pivotal settings {p}: {e}") from e

    def sample(self, plan, parts, images, train01, cells, progress: bool, training: dict) -> None:
        """Give every cell its images; `images` are the ConceptImages, `train01` the same
        pixels in [0, 1] as the evaluator gets them; `training` takes what the row should say."""
        for c, imgs in zip(cells, generate(plan, parts, [c.texts or c.text for c in cells], progress)):
            c.images = imgs


class Tuned(Kind):
    """Pivotal tuning (appendix A): the learned word, then the UNet tuned around it; the
    job's parts hold the tuned UNet when it samples."""
    name = "tuned generator"
    tunes = True


class Bipartite(Kind):
    """Appendix A's bipartite inversion: the training images DDIM-inverted under the
    reconstruction prompt, then regenerated under every prompt."""
    name = "bipartite inversion"
    exclude_self = True

    def sample(self, plan, parts, images, train01, cells, progress, training):
        import time

        from tinv.engine.data import cache_latents
        from tinv.engine.ddim_inversion import bipartite
        t = time.perf_counter()
        latents = cache_latents(parts, images).mean[:, 0]
        res = bipartite(parts, latents, [c.text for c in cells], [plan.eval.guidance], plan.icfg.placeholder,
                        steps=plan.eval.steps, progress=progress, source_prompt=plan.recon.template)
        for c, imgs in zip(cells, res.images[0]):
            c.images = imgs
        training["bipartite_s"] = time.perf_counter() - t


class Captions(Kind):
    """Human captions replace S* (section 5.2): no learning, one filler per caption."""
    name = "human captions"
    learns = False
    captions = True

    def fillers(self, method, concept, placeholder):
        which = method["captions"]
        caps = (concept.captions or {}).get(which)
        if not caps:
            raise InputError(f"method {method['name']!r} needs {which} captions for concept "
                             f"{concept.name!r}: add concept.captions.{which} (or a captions.yaml "
                             f"in {str(concept.folder)!r})")
        return list(caps)


class CaptionsInTurn(Captions):
    """The human captions drawn once per seed, caption i mod n at seed i: each prompt gets
    the protocol's samples, from the same seeds as every other setup, where `Captions`
    draws every caption at every seed (n times the samples, and the sampling time)."""
    name = "human captions in turn"
    in_turn = True


CAPTION_SEEDS = {"each": "human captions", "in_turn": "human captions in turn"}


class ImageOnly(Kind):
    """Figure 10's upper reference: the training images scored as every prompt's samples."""
    name = "image-only"
    learns = False
    exclude_self = True

    def fillers(self, method, concept, placeholder):
        return [None]

    def sample(self, plan, parts, images, train01, cells, progress, training):
        for c in cells:      # the evaluator's own tensor: its embeddings are computed once
            c.images = train01


class PromptOnly(Kind):
    """Figure 10's other reference: the prompt with S* deleted. Its samples depend on
    neither concept nor setup, so every job under a results root shares one cache."""
    name = "prompt-only"
    learns = False

    def fillers(self, method, concept, placeholder):
        return [""]

    def sample(self, plan, parts, images, train01, cells, progress, training):
        from pathlib import Path
        cache = Path(plan.results_root) / "_cache" / "prompt_only"
        for c, imgs in zip(cells, prompt_only_cached(plan, parts, [c.text for c in cells], cache, progress)):
            c.images = imgs


class ClassNoun(Kind):
    """A word learned (or a rare word held fixed) beside the concept's class noun, as
    DreamBooth and Custom Diffusion prompt it: `{}` becomes "S* <class noun>", in training
    (InversionConfig.class_noun) and in every evaluation prompt."""
    name = "word and class noun"

    def fillers(self, method, concept, placeholder):
        if not concept.initializer:
            raise InputError(f"method {method['name']!r} prompts 'S* <class noun>': set concept.initializer "
                             f"(the class noun) for {concept.name!r}")
        return [f"{placeholder} {concept.initializer}"]


class InitializerWord(Kind):
    """The word the inversion starts from, untrained: the concept's initializer in place of
    S* (step 0 of the single word). What the optimization adds is the gap to it."""
    name = "initializer word"
    learns = False

    def fillers(self, method, concept, placeholder):
        if not concept.initializer:
            raise InputError(f"method {method['name']!r} needs the concept's initializer word: set "
                             f"concept.initializer for {concept.name!r}")
        return [concept.initializer]


KINDS: dict[str, Kind] = {k.name: k for k in (Kind(), Tuned(), Bipartite(), Captions(), CaptionsInTurn(), ImageOnly(),
                                               PromptOnly(), InitializerWord(), ClassNoun())}
REFERENCES: dict[str, Kind] = {"image_only": KINDS["image-only"], "prompt_only": KINDS["prompt-only"],
                               "initializer": KINDS["initializer word"]}


def kind_of(method: Mapping) -> Kind:
    """The kind a method YAML describes (the module table); an InputError for flags that
    name none."""
    if method.get("captions"):
        draw = method.get("caption_seeds") or "each"
        if draw not in CAPTION_SEEDS:
            raise InputError(f"method {method['name']!r}: caption_seeds={draw!r} is none of "
                             f"{', '.join(CAPTION_SEEDS)}")
        return KINDS[CAPTION_SEEDS[draw]]
    ref = method.get("reference")
    if ref:
        if ref not in REFERENCES:
            raise InputError(f"method {method['name']!r}: reference={ref!r} is none of "
                             f"{', '.join(sorted(REFERENCES))}")
        return REFERENCES[ref]
    if not method.get("learns"):
        raise InputError(f"method {method['name']!r} learns nothing and names no reference or captions")
    if method.get("bipartite"):
        return KINDS["bipartite inversion"]
    if method.get("pivotal"):
        return KINDS["tuned generator"]
    if (method.get("inversion") or {}).get("class_noun"):
        return KINDS["word and class noun"]
    return KINDS["learned word"]

