"""One inversion per concept and setup, whatever the evaluation: the learned word (and the
pivotal-tuned UNet tensors) kept in the job store and reused by every job that differs
only in `eval.*` (guidance, sample count, prompts, sampler).

A sweep over evaluation settings (the guidance presets, more samples, another prompt
list) is then a sweep of sampling and scoring: each concept is inverted once, and each
row says whose inversion it used (`timings.invert_reused_from`, `invert_s` 0).

The key: the job's identity (its resolved config, the weights' and the concept files'
fingerprints; tinv.harness.plan.job_location) without `eval`, plus the InversionConfig and
PivotalConfig the job would run. Those two carry what the learning takes from elsewhere:
pivotal tuning's prompt is `eval.reconstruction_prompt`, so pivotal jobs that differ there
are different inversions and never share.

The artifact: `<results_root>/jobs/_inversions/<concept>-<method>-<key>/`: `learned.pt` (the
InversionResult: vectors, losses, statistics; the PivotalResult) and, for pivotal tuning,
`pivotal_unet.safetensors` (the tuned tensors), each written atomically once the inversion
(and pivotal tuning) ended, learned.pt last. It is computed under a lock
beside it (tinv.harness.joblock: a dead owner does not hold it), so of two jobs that need the same
inversion at the same time one computes and the other waits and reuses it. The job that
computes it inverts as before (resuming from its own folder's checkpoint), so an
interrupted inversion resumes exactly as it did before the store.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinv.core import atomic

from tinv.harness import identity, joblock, results

log = logging.getLogger(__name__)

FILE = "learned.pt"
FORMAT = 1


@dataclass
class Learned:
    """What a learning job gets: its word (already in `parts`), its tuned UNet (ditto)."""
    result: Any                    # InversionResult
    pivotal: Any = None            # PivotalResult, for pivotal tuning
    packed: Any = None             # the Packed share the result came from, if any
    reused_from: str | None = None  # the job id that computed it, when this job did not
    load_s: float = 0.0            # time to install a reused artifact


def key(plan) -> str:
    """12 hex digits naming the inversion a plan runs (the module docstring says what counts)."""
    cfg = plan.cfg
    return identity.inversion_key(cfg, plan.model.weights, plan.concept_files, plan.icfg, plan.pcfg)


def folder(plan) -> Path:
    return (Path(plan.cfg["results_root"]) / results.STORE / "_inversions"
            / f"{plan.concept.name}-{plan.cfg['method']['name']}-{key(plan)}")


def stored(plan) -> bool:
    """Is this plan's inversion in the store already (then its job reuses it)?"""
    return (folder(plan) / FILE).is_file()


def obtain(plan, parts, images, job_folder: Path, job_id: str, progress: bool, packed=None) -> Learned:
    """The job's learned word (and tuned UNet) in `parts`: the stored one when a job of the
    same inversion made it, else computed here (from `packed`, this job's share of a packed
    inversion (Packed, from tinv.launch.packing), or by inverting) and stored for the jobs that differ
    only in eval.*."""
    where = folder(plan)
    found = _installed(parts, where)
    if found:
        return found
    with joblock.hold(where, f"inversion {where.name}") as waited:
        found = _installed(parts, where)   # made meanwhile by the job we waited for
        if found:
            return found
        if waited:
            log.info("the inversion %s was not finished by the job we waited for: computing it", where.name)
        learned = _compute(plan, parts, images, job_folder, packed, progress)
        _store(where, learned, job_id, parts, plan.pcfg)
        return learned


def _compute(plan, parts, images, job_folder: Path, packed, progress: bool) -> Learned:
    from tinv.engine import checkpoint, inversion, pivotal
    if packed:
        result = install(parts, packed.result)
    else:
        result = inversion.invert(parts, images, plan.icfg, ckpt_dir=checkpoint.job_dir(job_folder), progress=progress,
                                  class_images=class_images(plan, parts))
    piv = pivotal.pivotal_tune(parts, images, plan.pcfg, progress=progress) if plan.pcfg is not None else None
    return Learned(result, piv, packed)


def class_images(plan, parts):
    """Prior preservation's class images for a plan (None without it): a folder's real images,
    or the model's own samples of the class prompt, made once per (model, prompt, n, seed) in
    `<results_root>/jobs/_class_images/` under a lock (a job that needs them while another makes
    them waits, then reads them), so every job and method of that class shares them."""
    icfg = plan.icfg
    if icfg is None or not icfg.prior_preservation:
        return None
    from tinv.engine import prior
    if icfg.class_images:
        return prior.class_images(parts, icfg)
    spec = {"weights": plan.model.weights, "prompt": icfg.class_text, "n": icfg.num_class_images,
            "seed": prior.CLASS_SEED, "steps": prior.CLASS_STEPS, "guidance": prior.CLASS_GUIDANCE,
            "resolution": parts.resolution}
    name = "_".join(icfg.class_text.split())[:40].replace("/", "_")
    where = Path(plan.cfg["results_root"]) / results.STORE / "_class_images" / f"{name}-{results.identity(spec)}"
    if not where.is_dir():
        with joblock.hold(where, f"class images {where.name}"):
            if not where.is_dir():
                log.info("drawing %d class images of %r -> %s", icfg.num_class_images, icfg.class_text, where)
            return prior.class_images(parts, icfg, cache=where)
    return prior.class_images(parts, icfg, cache=where)


def _store(where: Path, learned: Learned, job_id: str, parts, pcfg) -> None:
    """The tuned UNet tensors first (pivotal_unet.safetensors, as a job exports them), then
    learned.pt, whose presence says the artifact is whole; both written atomically."""
    from tinv.engine import pivotal
    if learned.pivotal is not None:
        pivotal.save_tuned(parts, learned.pivotal, where, pcfg)
    atomic.save_torch(where / FILE, {"format": FORMAT, "made_by": job_id, "made": results.now(),
                                     "result": dataclasses.asdict(learned.result),
                                     "pivotal": dataclasses.asdict(learned.pivotal) if learned.pivotal else None})


def _installed(parts, where: Path) -> Learned | None:
    """The stored inversion, put into `parts` as `invert` (and pivotal tuning) leave them;
    None when there is none (or it cannot be read: then it is computed again)."""
    from tinv.engine import checkpoint
    path = where / FILE
    if not path.is_file():
        return None
    t = time.perf_counter()
    try:
        saved = checkpoint.load(path)
    except ValueError as e:
        log.warning("%s; computing the inversion again", e)
        return None
    from tinv.engine.inversion import InversionResult
    from tinv.engine.pivotal import PivotalResult, load_tuned
    piv = None
    if saved["pivotal"] is not None:
        piv = PivotalResult(**saved["pivotal"])
        try:            # before the words go in: a failure here leaves `parts` untouched
            load_tuned(parts, where)    # (names and shapes are checked before any copy)
        except Exception as e:  # noqa: BLE001 - missing, truncated, another UNet: compute again
            log.warning("the stored tuned UNet in %s cannot be used (%s); computing the inversion again", where, e)
            return None
    result = install(parts, InversionResult(**saved["result"]))
    log.info("inversion reused from job %s (%s): nothing to learn", saved["made_by"], path)
    return Learned(result, piv, None, saved["made_by"], time.perf_counter() - t)


def install(parts, result):
    """Put learned words (an InversionResult's) into a freshly loaded model, as `invert`
    leaves them (same tokens, same order); the result with this model's token ids."""
    import torch

    from tinv.engine.pseudo_words import set_vectors
    from tinv.engine import learners
    with torch.random.fork_rng(devices=[]):     # set_vectors draws a throwaway random init
        words = [set_vectors(parts, name, vec) for name, vec in result.embeds.items()]
    learners.restore(parts, result.learner, {w.placeholder: w for w in words})   # a successor's own state
    return dataclasses.replace(result, token_ids={w.placeholder: list(w.token_ids) for w in words})


# ----------------------------------------------------------------------------- packed shares
# A launcher that inverts several jobs together (tinv.launch.packing) hands each job its
# share through a Shares it owns and passes to the jobs' task function; the job takes its
# own (keyed by its folder) where it would invert.
@dataclass
class Packed:
    """One job's share of a packed inversion."""
    job_id: str
    result: Any                  # InversionResult, already under the job's own placeholder
    group_s: float               # wall time of the whole packed inversion
    jobs: list[str]              # job ids of the group, in packing order (this one included)
    prep_s: float = 0.0          # the group's wait before inverting: loading the model and images
    one_batch: bool = False      # the group's micro-batches in one UNet call (rows equal alone only to float error)


class Shares:
    """A packed inversion's shares, by job folder, until each job takes its own."""

    def __init__(self) -> None:
        self._ready: dict[str, Packed] = {}

    @staticmethod
    def _key(folder) -> str:
        return str(Path(folder).resolve())

    def offer(self, folder, packed: Packed) -> None:
        self._ready[self._key(folder)] = packed

    def take(self, folder) -> Packed | None:
        """The packed inversion waiting for the job in `folder`, if any (removed once taken)."""
        return self._ready.pop(self._key(folder), None)

    def clear(self) -> None:
        self._ready.clear()


def packed_timings(packed: Packed, own_s: float) -> dict:
    """A packed job's row timings: `invert_s` is an even share of the group's packed
    inversion (`packed_invert_s`, shared with the jobs `packed_with`) plus what this job
    did alone (installing the vectors, pivotal tuning). `packed_prep_s` is the group's wait
    before its inversion (loading the model and images), in no job's stages: the sweep
    summary counts it as the pack's waiting (tinv.harness.time_report). `packed_one_batch`:
    the group ran in one UNet batch (hydra.launcher.one_batch), so the row may differ from the
    lone job's by float error."""
    t = {"packed_invert_s": packed.group_s, "packed_with": [j for j in packed.jobs if j != packed.job_id],
         "packed_prep_s": packed.prep_s, "packed_one_batch": packed.one_batch}
    return {"invert_s": share_s(t) + own_s, **t}


def share_s(timings: dict) -> float:
    """A row's even share of its packed inversion; 0 for a job that inverted alone."""
    if "packed_with" not in timings:
        return 0.0
    return timings["packed_invert_s"] / (len(timings["packed_with"]) + 1)
