"""One job: config -> concept and model -> invert -> sample -> score -> one result row.

Hydra stops here: `run_job` takes the composed config (a DictConfig or a plain dict)
and hands the engine plain values. What comes before execution lives beside this file:
concept resolution (tinv.harness.concepts), model loading (tinv.harness.loading), the plan and the job's
identity (tinv.harness.plan), the weights check (tinv.harness.preflight), the lock (tinv.harness.joblock) and the
attempts (tinv.harness.attempts). The stages:

1. the plan and the identity: every field's type and range first (tinv.harness.validate), then
   the plan (tinv.harness.plan: the concept resolved, once for the whole job; method fields,
   prompts, the typed evaluation and model settings). The job folder is named by a hash of
   the config, the weights and the concept's files and lives in the job store shared by all
   sweeps (tinv.harness.store; the sweep's folder links to it); a folder holding an "ok" row
   means the job is done, and its row is returned with no work.
2. validation, BEFORE the lock, the job folder and the model load, so bad input raises
   InputError and leaves nothing behind: weights (preflight), the concept folder's images
   (read in full, masks beside them checked), then the pipeline's family, the initializer
   and the placeholder against the model's tokenizer alone (tinv.harness.tokens).
3. one computation: the job's lock; a second process on the same job waits for the
   first and returns its row.
4. the work, timed: invert (when the method learns; pivotal tuning and DDIM inversion
   count here too), sample, evaluate. A failure here writes a row with status "failed".
   Under `hydra/launcher=packed` the inversion was done already, together with other
   jobs' (tinv/launch/packing.py); the job takes its share and does the rest alone. A job that
   differs from another only in eval.* reuses that job's stored inversion (tinv/harness/learned.py:
   one inversion per concept and setup, computed under its own lock).
"""
from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tinv.core import atomic

from tinv.harness import convergence, joblock, preflight, prompts as P, results, store, tokens, validate
from tinv.harness.attempts import Attempts, checkpoint_step
from tinv.harness.concepts import heldout_images, resolve_concept, scan_images, training_images
from tinv.core.errors import InputError
from tinv.harness.loading import choose_device, load_model, set_cpu_threads, set_sample_streams
from tinv.engine.progress import third_party as third_party_bars
from tinv.harness.plan import (Cell, Plan, _plain, default_choices,
                       effective_config, finished_row, job_location, make_plan)

# Names tests and callers reach through tinv.harness.job (the job's public face).
__all__ = ["InputError", "default_choices", "job_location", "make_plan", "resolve_concept", "run_job"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- stages
def pivotal_moved(before: float, after: float) -> float:
    """Relative fall of the fixed-batch loss over the pivotal stage (negative if it rose)."""
    return (before - after) / before if before and before == before else float("nan")


def export_embeddings(result, folder: Path, family: str = "sd") -> tuple[dict, dict]:
    """The learned vectors in the formats that load them (diffusers, AUTOMATIC1111, the
    authors'), and the word each one expects in a prompt."""
    from tinv.engine.embeddings_io import export_result, triggers
    exported = dict(export_result(result, folder, family))
    return exported, triggers(result, exported)


def save_grids(cells: list[Cell], folder: Path) -> dict[str, Path]:
    """One PNG per cell: torchvision's grid (min(8, n) per row, 1 px padding) under a band
    that prints the prompt; the band's height is in the PNG's `label_px` text (the gallery
    cuts the tiles below it) and the prompt in its `prompt` text."""
    from PIL.PngImagePlugin import PngInfo
    from torchvision.utils import make_grid
    folder.mkdir(parents=True, exist_ok=True)
    grids = {}
    for c in cells:
        path = folder / f"{c.key}.png"
        grid = make_grid(c.images, nrow=min(8, len(c.images)), padding=1)
        pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
        image, band = labelled(pixels, c.text)
        info = PngInfo()
        info.add_text("prompt", c.text)
        info.add_text("label_px", str(band))
        image.save(path, pnginfo=info)
        grids[c.key] = path
    return grids


def labelled(pixels, text: str):
    """The image with `text` printed in a white band above it (wrapped to its width)."""
    from PIL import Image, ImageDraw, ImageFont
    grid = Image.fromarray(pixels)
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(grid)
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and measure.textlength(trial, font=font) > grid.width - 4:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    height = measure.textbbox((0, 0), "Ag", font=font)[3] + 2
    band = height * len(lines) + 4
    out = Image.new("RGB", (grid.width, grid.height + band), "white")
    out.paste(grid, (0, band))
    draw = ImageDraw.Draw(out)
    for i, t in enumerate(lines):
        draw.text((2, 2 + i * height), t, fill="black", font=font)
    return out, band


# ----------------------------------------------------------------------------- the job
@dataclass
class Running:
    """The job in progress in this process, held by the caller (run.py keeps one so that
    Ctrl-C can say where the job stopped: `interrupted`)."""
    job_id: str | None = None
    folder: Path | None = None
    timings: dict | None = None
    plan: Plan | None = None
    attempts: Attempts | None = None

    def beat(self) -> None:
        """The lock's heartbeat: the attempt's record saved (tinv.harness.attempts)."""
        if self.attempts:
            self.attempts.save()

    def interrupted(self) -> str:
        """One line for Ctrl-C: where the job stopped and what a rerun does."""
        if self.job_id is None:
            return "interrupted before any job started; nothing was written"
        stage = next((s for k, s in (("invert_s", "inverting"), ("sample_s", "sampling"), ("evaluate_s", "evaluating"))
                      if k not in self.timings), "writing its row")
        step, icfg = checkpoint_step(self.folder), self.plan.icfg
        if icfg is None:
            saved = "a rerun of the same command starts it again"
        elif step is None:
            saved = (f"no inversion checkpoint yet (the first comes at step {icfg.checkpoint_every}): "
                     "a rerun of the same command starts it again")
        else:
            saved = (f"its inversion checkpoint holds step {step} of {icfg.steps}: a rerun of the same "
                     "command resumes from there")
        return f"interrupted: job {self.job_id} stopped while {stage}; {saved} ({self.folder})"


def run_job(cfg, choices: dict | None = None, running: Running | None = None, packed=None) -> dict:
    """Run (or find) one job and return its row. InputError: nothing written.
    running: the caller's record of the job in progress (for Ctrl-C); packed: the launcher's
    shares of a packed inversion (tinv.harness.learned.Shares), of which this job takes its own."""
    cfg = effective_config(_plain(cfg))
    validate.check(cfg)             # every field's type and range, in milliseconds
    choices = {**default_choices(cfg), **(choices or {})}
    plan = make_plan(cfg, choices)  # the concept resolved once: the id, the inversion and the row read the plan's
    job_id, folder = job_location(cfg, plan.concept_files)
    done = _finished(cfg, folder)
    if done:
        log.info("job %s is done already: %s", job_id, folder / results.ROW_NAME)
        report(done)
        return done
    preflight.check(cfg)            # every weight at hand, or one error (in seconds) and no job folder
    tokens.check(plan, scan_images(plan))   # images read, words against the tokenizer: before the model
    running = running if running is not None else Running()
    with joblock.hold(folder, job_id, on_beat=running.beat) as waited:
        done = _finished(cfg, folder)
        if done:                    # computed meanwhile by the process we waited for
            log.info("job %s was computed by %s: %s", job_id, "the process we waited for" if waited
                     else "another process", folder / results.ROW_NAME)
            report(done)
            return done
        return _run(cfg, plan, job_id, folder, running, packed.take(folder) if packed else None)


def _finished(cfg: dict, folder: Path) -> dict | None:
    """The job's finished row, shown in this sweep's view too: the job another sweep
    computed is this sweep's row as well (a no-op for an old runs folder's own folder)."""
    done = finished_row(folder)
    if done:
        store.link(cfg["results_root"], cfg["sweep"], folder)
    return done


def _run(cfg: dict, plan: Plan, job_id: str, folder: Path, running: Running, share) -> dict:
    start, t0 = results.now(), time.perf_counter()
    choices = plan.choices
    device = choose_device(str(cfg.get("device", "auto")))
    log.info("torch CPU threads: %d, sampling streams: %d", set_cpu_threads(cfg.get("cpu_threads", "auto"), device),
             set_sample_streams(cfg.get("sample_streams", "auto"), device))
    third_party_bars(cfg.get("progress") is True)     # transformers' "Loading weights" bar, ...
    parts = load_model(cfg["model"], device)
    images = training_images(plan, parts, Path(cfg["results_root"]))

    from tinv.harness.wandb_log import job_setup, setup_tags, tracking
    folder.mkdir(parents=True, exist_ok=True)
    store.link(cfg["results_root"], cfg["sweep"], folder)   # the sweep sees its job from the start
    row = {"schema": results.SCHEMA, "job_id": job_id, "status": "running", "error": None,
           "sweep": cfg["sweep"], "choices": choices, "config": cfg,
           "folder": str(folder.resolve()), "timings": {}}
    log.info("job %s (%s on %s) -> %s", job_id, choices["method"], plan.concept.name, folder)
    tries = Attempts(folder, job_id, row["timings"], plan.icfg.steps if plan.icfg else None)
    running.job_id, running.folder, running.timings, running.plan, running.attempts = \
        job_id, folder, row["timings"], plan, tries
    try:
        setup = job_setup(choices, plan.concept.name)
        with tracking(cfg["logger"], folder, name=f"{plan.concept.name}-{choices['method']}",
                      group=cfg["sweep"], job_type=choices["method"], tags=setup_tags(setup),
                      config={**setup, "sweep": cfg["sweep"], "job_id": job_id, "cfg": cfg}) as tracker:
            row.update(execute(plan, parts, images, folder, device, bool(cfg.get("progress", True)),
                               tracker, row["timings"], job_id, share))
            row["timings"]["total_s"] = _total_s(row["timings"], t0)
            row["status"] = "ok"
            tracker.summary({**row["metrics"], **{f"time/{k}": v for k, v in row["timings"].items()}})
    except Exception as e:
        # A failed row tells collect.py what went wrong; the next run tries the job again.
        # An interrupt (SIGTERM, Ctrl-C) writes nothing: the requeued job resumes instead.
        row.update(status="failed", error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc(limit=20))
        row["timings"]["total_s"] = _total_s(row["timings"], t0)   # with the stages that finished
        row["attempts"] = tries.close("failed")
        _write_row(row, plan, folder, device, start)
        raise
    except KeyboardInterrupt:
        tries.close("interrupted")    # no row: a rerun resumes; `running` says where it stopped
        raise
    finally:
        running.attempts = None
    row["attempts"] = tries.close("ok")
    _write_row(row, plan, folder, device, start)
    report(row)
    return row


# ----------------------------------------------------------------------------- what a person reads
def report(row: dict) -> None:
    """The end of a job: where it is, the headline metrics with their 95% intervals, and
    what each one means."""
    from tinv.metrics import MEANINGS
    total = row.get("timings", {}).get("total_s")
    log.info("job %s %s%s: %s", row["job_id"], row["status"], f" in {total:.1f} s" if total else "",
             row["folder"])
    shown = {k: v for k, v in row.get("metrics", {}).items() if k in MEANINGS}
    width = max(map(len, shown), default=0)
    for name, value in shown.items():
        ci = row.get("metrics_ci", {}).get(name)
        interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        log.info("  %-*s %.3f%s  %s", width, name, value, interval, MEANINGS[name])
    for line in usage_lines(row):
        log.info("%s", line)


# How each export loads, and the exact word it expects in a prompt (docs/harness.md).
USAGE = {"diffusers": 'diffusers: pipe.load_textual_inversion("{path}"), then write {word} in prompts '
                      '(lower case: diffusers expands all the vectors only so)',
         "a1111": "AUTOMATIC1111: copy {path} into its embeddings/ folder, then write {word} (the file's name)",
         "authors": "the authors' scripts: --embedding_path {path}, then write {word}"}


def usage_lines(row: dict) -> list[str]:
    """One line per export: how to load it and the word it expects."""
    art = row.get("artifacts") or {}
    files, words = art.get("embeddings") or {}, art.get("triggers") or {}
    learner = ((row.get("training") or {}).get("learner") or {}).get("name")
    if learner and art.get("learner"):     # a successor loads through its own files
        from tinv.engine import learners
        paths = {k: Path(row["folder"]) / v for k, v in art["learner"].items()}
        from tinv.harness.validate import placeholder
        return [f"  {line}" for line in learners.usage(learner, paths, placeholder(row["config"]))]
    return [f"  {USAGE[k].format(path=Path(row['folder']) / files[k], word=words[k])}"
            for k in USAGE if k in files and k in words]


def _write_row(row: dict, plan: Plan, folder: Path, device: str, start: str) -> None:
    row["provenance"] = {**results.provenance(device, start, weights=plan.model.weights),
                         "concept_files": plan.concept_files}
    atomic.write_json(folder / results.ROW_NAME, row)


def _total_s(timings: dict, t0: float) -> float:
    """Wall time since the job started, plus its share of a packed inversion (run before)."""
    from tinv.harness.learned import share_s
    return time.perf_counter() - t0 + share_s(timings)


def execute(plan: Plan, parts, images, folder: Path, device: str, progress: bool, tracker,
            timings: dict, job_id: str, share=None) -> dict:
    """invert -> sample -> evaluate; returns the row's metrics, artifacts, ...; fills
    `timings` stage by stage, so a failed row shows how far the job got. The inversion is
    reused when a job differing only in eval.* made it already (tinv.harness.learned);
    `share`: this job's share of a packed inversion (tinv.harness.learned.Packed), if any."""
    train01 = (images.pixels + 1) / 2     # the training images as the evaluator reads them
    t = time.perf_counter()
    got = learn(plan, parts, images, folder, job_id, progress, share)
    training, artifacts = (record_learning(plan, parts, got, folder, tracker) if got else ({}, {}))
    timings.update(invert_timings(got, time.perf_counter() - t))

    t = time.perf_counter()
    cells = sample(plan, parts, images, train01, got, progress, training)
    artifacts["samples"] = write_samples(cells, folder, tracker)
    timings["sample_s"] = time.perf_counter() - t

    t = time.perf_counter()
    held, held_from = heldout_images(plan, parts, Path(plan.results_root))   # a fixed held-out set, if any
    scored = score(plan, cells, train01, held, device, training)
    timings["evaluate_s"] = time.perf_counter() - t
    tracker.log_table(scored["per_prompt"])
    return {**scored, "artifacts": artifacts, "training": training, "concept": concept_record(plan, images),
            "eval_protocol": protocol_record(plan, held_from)}


# ----------------------------------------------------------------------------- execute's steps
def learn(plan: Plan, parts, images, folder: Path, job_id: str, progress: bool, share):
    """The job's learned word (and tuned UNet) in `parts` (tinv.harness.learned.Learned), or
    None for a method that learns nothing: stored by a job of the same inversion, or computed
    here (alone, or from this job's share of a packed inversion: tinv/launch/packing.py) and stored."""
    if plan.icfg is None:
        return None
    from tinv.harness import learned
    return learned.obtain(plan, parts, images, folder, job_id, progress, packed=share)


def record_learning(plan: Plan, parts, got, folder: Path, tracker) -> tuple[dict, dict]:
    """The row's `training` record and the learned files (losses, exports, the successor's and
    the tuned UNet's): (training, artifacts)."""
    training = training_record(plan, got.result)
    artifacts = write_learned(parts, got.result, folder, tracker)
    if got.result.learner:
        artifacts["learner"] = learner_record(plan, parts, got.result, folder, training)
    if plan.pcfg is not None:
        training["pivotal"] = pivotal_record(plan, parts, got.pivotal, folder, training["notes"])
    return training, artifacts


def training_record(plan: Plan, result) -> dict:
    """What the inversion did: steps, rates, losses, where the word went, the prior term,
    DVAR's stop, when it reached the single word's loss."""
    training = {"steps": result.steps, "lr_effective": result.lr_effective, "lr_rule": result.lr_rule,
                "loss_first": result.losses[0] if result.losses else None,
                "loss_last": result.losses[-1] if result.losses else None,
                "eval_loss_before": result.eval_loss_before, "eval_loss_after": result.eval_loss_after,
                "embedding_norm": result.embedding_norm, "embedding_dist_init": result.embedding_dist_init,
                "notes": dict(result.notes)}
    if result.learner:  # S*'s vector is not what a successor learned: its norm and distance say nothing
        for name in ("embedding_norm", "embedding_dist_init"):
            training.pop(name)
        training["notes"]["embedding"] = (f"no embedding_norm/embedding_dist_init: the {result.learner['name']} "
                                          "learner's own parameters carry the concept, not S*'s vector")
    if result.prior_losses:     # prior preservation: its term, and where its class images came from
        icfg = plan.icfg
        training["prior"] = {"weight": icfg.prior_loss_weight, "num_class_images": icfg.num_class_images,
                             "class_prompt": icfg.class_text, "class_images": icfg.class_images or "generated",
                             "loss_first": result.prior_losses[0], "loss_last": result.prior_losses[-1]}
    if result.dvar:     # stop=dvar: where it stopped, and the fixed-batch loss it read
        training["dvar"] = dict(result.dvar)
    # when its fixed-batch loss first reached the single word's final one (tinv.harness.convergence)
    reached = convergence.fields(plan.cfg, plan.concept.name, result.curve, result.eval_loss_after)
    if "note" in reached:
        training["notes"]["steps_to_reference_loss"] = reached.pop("note")
    training.update(reached)
    return training


def write_learned(parts, result, folder: Path, tracker) -> dict:
    """The losses (losses.json, and to the tracker) and the learned word in every format users
    load; returns the row's artifacts for them."""
    atomic.write_json(folder / "losses.json", {"losses": result.losses, "diffusion_losses": result.diffusion_losses,
                                               **({"prior_losses": result.prior_losses} if result.prior_losses else {})})
    artifacts: dict[str, Any] = {"losses": "losses.json"}
    tracker.log_losses(result.losses)
    if result.dvar:
        tracker.log_losses(result.dvar["losses"], name="inversion/dvar_fixed_batch_loss")
    exported, artifacts["triggers"] = export_embeddings(result, folder / "embeddings", parts.family)
    artifacts["embeddings"] = {k: str(Path(v).relative_to(folder)) for k, v in exported.items()}
    return artifacts


def learner_record(plan: Plan, parts, result, folder: Path, training: dict) -> dict:
    """A successor's own files, in the formats users load (tinv/engine/learners); its name,
    settings and how far its tensors moved go into `training`."""
    from tinv.engine import learners
    files = {k: str(Path(v).relative_to(folder)) for k, v in
             learners.export(parts, result.learner, folder / "embeddings").items()}
    training["learner"] = {"name": result.learner["name"], **plan.icfg.learner_args}
    moved = result.learner.get("moved")     # None: a result stored before rows said it
    if moved is not None:
        training["learner"]["moved"] = moved
        if moved < 0.01:    # a successor's row that equals its starting point must say so
            training["notes"]["learner"] = (
                f"the {result.learner['name']} learner's tensors moved {moved:.2%} (< 1%) from where "
                "they started: this row is practically the untrained setup; raise its lr or steps")
    return files


def pivotal_record(plan: Plan, parts, piv, folder: Path, notes: dict) -> dict:
    """The tuned UNet's tensors exported (the UNet in `parts` is tuned already) and the
    stage's record; a note when it left the fixed-batch loss where it was."""
    from tinv.engine.pivotal import save_tuned
    save_tuned(parts, piv, folder / "embeddings", plan.pcfg)
    record = {"steps": plan.pcfg.steps, "lr": plan.pcfg.lr, "params": plan.pcfg.params,
              "tuned_tensors": len(piv.tuned), "loss_last": piv.losses[-1] if piv.losses else None,
              "eval_loss_before": piv.eval_loss_before, "eval_loss_after": piv.eval_loss_after}
    moved = pivotal_moved(piv.eval_loss_before, piv.eval_loss_after)
    if moved < 0.01:   # a pivotal row that equals single-word's must say why
        notes["pivotal"] = (f"the pivotal stage moved the fixed-batch loss by {moved:.2%} (< 1%): the tuned UNet is "
                            f"practically the untuned one; raise model.calibration.pivotal.lr or .steps")
    return record


def invert_timings(got, elapsed: float) -> dict:
    """The row's inversion timings: what this job spent; 0 and whose it used for a reused
    inversion; its share of a packed one (tinv.harness.learned.packed_timings); for pivotal
    tuning from another job's word, whose word (`invert_word_from`)."""
    if got and got.reused_from:
        # no inversion ran for this row: its time went to reading the stored one
        return {"invert_s": 0.0, "invert_reused_from": got.reused_from, "invert_load_s": got.load_s}
    # pivotal tuning from a stored word: invert_s is the tuning's time
    word = {"invert_word_from": got.word_from} if got and got.word_from else {}
    if got and got.packed:
        from tinv.harness.learned import packed_timings
        return {**packed_timings(got.packed, elapsed), **word}
    return {"invert_s": elapsed, **word}


def sample(plan: Plan, parts, images, train01, got, progress: bool, training: dict) -> list[Cell]:
    """Every cell's samples, as the method's kind makes them (tinv.methods); `train01` is the
    evaluator's tensor of the training images (image-only's samples are that very tensor)."""
    cells = plan.cells()
    if got and got.result.learner:     # evaluation-time options of a successor (NeTI's truncation)
        from tinv.engine import learners
        learners.prepare_sampling(parts, got.result.learner, plan.cfg["eval"])
    plan.kind.sample(plan, parts, images, train01, cells, progress, training)
    return cells


def write_samples(cells: list[Cell], folder: Path, tracker) -> dict:
    """One grid per cell (samples/), logged; the row's artifact paths."""
    grids = save_grids(cells, folder / "samples")
    tracker.log_images(grids)
    return {k: str(p.relative_to(folder)) for k, p in grids.items()}


def score(plan: Plan, cells: list[Cell], train01, held, device: str, training: dict) -> dict:
    """The protocol's metrics (tinv.metrics.protocol; `held`: the held-out images, or None),
    and where the word went beside them."""
    from tinv.metrics.protocol import evaluate
    scored = evaluate(plan, cells, train01, device, None if held is None else (held.pixels + 1) / 2)
    if "embedding_norm" in training:   # where the word went, beside what it draws
        for name in ("embedding_norm", "embedding_dist_init"):
            # one inversion, no sample to resample: no interval (across seeds, run seeds)
            scored["metrics"][name], scored["metrics_ci"][name] = training[name], None
    return scored


def concept_record(plan: Plan, images) -> dict:
    c = plan.concept
    return {"name": c.name, "kind": c.kind, "folder": str(c.folder), "initializer": c.initializer,
            "n_images": len(images)}


def protocol_record(plan: Plan, held_from) -> dict:
    """How the row was scored: the prompts, the seeds, the held-out images, the evaluator."""
    return {"prompt_set": P.prompt_set_name(plan.cfg), "seeds": [plan.eval.seeds[0], len(plan.eval.seeds)],
            "reconstruction_prompt": plan.recon.template, "editability_text": "prompt with the placeholder deleted",
            "editability_paper": "editability_clip_meanemb", "reconstruction_heldout": held_from,
            "evaluator": plan.eval.clip if plan.model.evaluator == "clip" else "toyworld"}
