"""One inversion per concept and learned word, whatever the evaluation or the setup around it:
the learned word (and the pivotal-tuned UNet tensors) kept in the job store and reused by
every job that learns the same word: jobs that differ only in `eval.*` (guidance, sample
count, prompts, sampler), and setups that differ only after the word is learned (bipartite
inversion and pivotal tuning start from the single word's own: section 5.2 and appendix A).

A sweep over evaluation settings (the guidance presets, more samples, another prompt
list) is then a sweep of sampling and scoring, and the quickstart learns each concept's single
word once for three setups; each row says whose word it used (`timings.invert_reused_from`,
`invert_s` 0, or for pivotal tuning the tuning's own time).

Two keys (tinv.harness.identity):
- the word's (`word_key`): the job's identity (its resolved config, the weights' and the
  concept files' fingerprints; tinv.harness.plan.job_location) without `eval` and without
  `method`, plus the InversionConfig, which carries everything a method sets for learning;
- pivotal tuning's (`inversion_key`): the same with `method` and the PivotalConfig, which
  carries what the tuning takes from elsewhere: its prompt is `eval.reconstruction_prompt`,
  so pivotal jobs that differ there tune apart (from the same word).

The artifacts: `<results_root>/jobs/_inversions/<concept>-<learner>-<word key>/learned.pt`
(the InversionResult: vectors, losses, statistics), and for pivotal tuning
`<concept>-<method>-<key>/`: `pivotal_unet.safetensors` (the tuned tensors) and learned.pt
(the word again, and the PivotalResult). Each is written atomically once its stage ended,
learned.pt last, and computed under a lock beside it (tinv.harness.joblock: a dead owner does
not hold it), so of two jobs that need the same artifact at the same time one computes and the
other waits and reuses it. The job that computes a word inverts as before (resuming from its
own folder's checkpoint), so an interrupted inversion resumes exactly as it did before the store.
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
    word_from: str | None = None   # pivotal tuning ran here, from the word this job id stored


def key(plan) -> str:
    """12 hex digits naming the word a plan learns (the module docstring says what counts)."""
    return identity.word_key(plan.cfg, plan.model.weights, plan.concept_files, plan.icfg)


def folder(plan) -> Path:
    """Where the plan's learned word is stored."""
    return _root(plan) / f"{plan.concept.name}-{plan.icfg.learner}-{key(plan)}"


def tuned_key(plan) -> str:
    """12 hex digits naming the pivotal tuning a plan runs (plans that tune only)."""
    return identity.inversion_key(plan.cfg, plan.model.weights, plan.concept_files, plan.icfg, plan.pcfg)


def tuned_folder(plan) -> Path:
    """Where the plan's pivotal tuning is stored (its word and tuned UNet)."""
    return _root(plan) / f"{plan.concept.name}-{plan.cfg['method']['name']}-{tuned_key(plan)}"


def _root(plan) -> Path:
    return Path(plan.cfg["results_root"]) / results.STORE / "_inversions"


def stored(plan) -> bool:
    """Is this plan's word in the store already (then its job reuses it)?"""
    return (folder(plan) / FILE).is_file()


def obtain(plan, parts, images, job_folder: Path, job_id: str, progress: bool, packed=None) -> Learned:
    """The job's learned word (and tuned UNet) in `parts`: the stored one when a job that learns
    the same word made it, else computed here (from `packed`, this job's share of a packed
    inversion (Packed, from tinv.launch.packing), or by inverting) and stored for the others.
    Pivotal tuning then tunes from that word, or reuses a stored tuning of it."""
    if plan.pcfg is None:
        return _stored_or_made(folder(plan), parts, "inversion",
                               lambda: _invert(plan, parts, images, job_folder, packed, progress), job_id)
    return _stored_or_made(tuned_folder(plan), parts, "pivotal tuning",
                           lambda: _tune(plan, parts, images, job_folder, job_id, packed, progress), job_id, plan.pcfg)


def _stored_or_made(where: Path, parts, what: str, make, job_id: str, pcfg=None) -> Learned:
    """The artifact in `where`, installed, or made by `make` under the folder's lock and stored."""
    found = _installed(parts, where)
    if found:
        return found
    with joblock.hold(where, f"{what} {where.name}") as waited:
        found = _installed(parts, where)   # made meanwhile by the job we waited for
        if found:
            return found
        if waited:
            log.info("the %s %s was not finished by the job we waited for: computing it", what, where.name)
        learned = make()
        _store(where, learned, job_id, parts, pcfg)
        return learned


def _invert(plan, parts, images, job_folder: Path, packed, progress: bool) -> Learned:
    from tinv.engine import checkpoint, inversion
    if packed:
        return Learned(install(parts, packed.result), None, packed)
    result = inversion.invert(parts, images, plan.icfg, ckpt_dir=checkpoint.job_dir(job_folder), progress=progress,
                              class_images=class_images(plan, parts))
    return Learned(result)


def _tune(plan, parts, images, job_folder: Path, job_id: str, packed, progress: bool) -> Learned:
    """Pivotal tuning from the plan's word (stored, or learned here first): its own seed and
    batches (tinv.engine.pivotal), so it tunes the same whoever learned the word."""
    from tinv.engine import pivotal
    word = _stored_or_made(folder(plan), parts, "inversion",
                           lambda: _invert(plan, parts, images, job_folder, packed, progress), job_id)
    tuned = pivotal.pivotal_tune(parts, images, plan.pcfg, progress=progress)
    return Learned(word.result, tuned, word.packed, word_from=word.reused_from, load_s=word.load_s)


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


def _store(where: Path, learned: Learned, job_id: str, parts, pcfg=None) -> None:
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
