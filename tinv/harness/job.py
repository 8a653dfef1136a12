"""One job: config -> concept and model -> invert -> sample -> score -> one result row.

Hydra stops here: `run_job` takes the composed config (a DictConfig or a plain dict)
and hands the engine plain values. What comes before execution lives beside this file:
concept resolution (tinv.harness.concepts), model loading (tinv.harness.loading), the plan and the job's
identity (tinv.harness.plan), the weights check (tinv.harness.preflight), the lock (tinv.harness.joblock) and the
attempts (tinv.harness.attempts). The stages:

1. identity: the job folder is named by a hash of the config, the weights and the
   concept's files (tinv.harness.plan) and lives in the job store shared by all sweeps
   (tinv.harness.store; the sweep's folder links to it); a folder holding an "ok" row means the
   job is done, and its row is returned with no work.
2. validation, BEFORE the lock, the job folder and the model load, so bad input raises
   InputError and leaves nothing behind: every field's type and range (tinv.harness.validate,
   first, before the id), weights (preflight), method fields and prompts (the plan), the
   concept folder's images (read in full), then the pipeline's family, the initializer
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
from pathlib import Path
from typing import Any

import torch

from tinv.core import atomic

from tinv.harness import convergence, joblock, preflight, prompts as P, results, store, tokens, validate
from tinv.harness.attempts import Attempts, checkpoint_step
from tinv.harness.concepts import heldout_images, resolve_concept, scan_images, training_images
from tinv.core.errors import InputError
from tinv.harness.loading import choose_device, load_model, model_fingerprint, set_cpu_threads
from tinv.engine.progress import third_party as third_party_bars
from tinv.harness.plan import (Cell, Plan, _plain, concept_fingerprint, default_choices,
                       effective_config, finished_row, job_location, make_plan)
from tinv.methods import seeds

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
def run_job(cfg, choices: dict | None = None) -> dict:
    """Run (or find) one job and return its result row. InputError: nothing written."""
    cfg = effective_config(_plain(cfg))
    validate.check(cfg)             # every field's type and range, in milliseconds
    job_id, folder = job_location(cfg)
    done = _finished(cfg, folder)
    if done:
        log.info("job %s is done already: %s", job_id, folder / results.ROW_NAME)
        report(done)
        return done
    choices = {**default_choices(cfg), **(choices or {})}
    preflight.check(cfg)            # every weight at hand, or one error (in seconds) and no job folder
    plan = make_plan(cfg, choices)
    tokens.check(plan, scan_images(plan))   # images read, words against the tokenizer: before the model
    with joblock.hold(folder, job_id, on_beat=lambda: _RUNNING.get("attempts") and _RUNNING["attempts"].save()) \
            as waited:
        done = _finished(cfg, folder)
        if done:                    # computed meanwhile by the process we waited for
            log.info("job %s was computed by %s: %s", job_id, "the process we waited for" if waited
                     else "another process", folder / results.ROW_NAME)
            report(done)
            return done
        return _run(cfg, choices, plan, job_id, folder)


def _finished(cfg: dict, folder: Path) -> dict | None:
    """The job's finished row, shown in this sweep's view too: the job another sweep
    computed is this sweep's row as well (a no-op for an old runs folder's own folder)."""
    done = finished_row(folder)
    if done:
        store.link(cfg["results_root"], cfg["sweep"], folder)
    return done


def _run(cfg: dict, choices: dict, plan: Plan, job_id: str, folder: Path) -> dict:
    start, t0 = results.now(), time.perf_counter()
    device = choose_device(str(cfg.get("device", "auto")))
    log.info("torch CPU threads: %d", set_cpu_threads(cfg.get("cpu_threads", "auto"), device))
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
    _RUNNING.update(job_id=job_id, folder=folder, timings=row["timings"], plan=plan, attempts=tries)
    try:
        setup = job_setup(choices, plan.concept.name)
        with tracking(cfg["logger"], folder, name=f"{plan.concept.name}-{choices['method']}",
                      group=cfg["sweep"], job_type=choices["method"], tags=setup_tags(setup),
                      config={**setup, "sweep": cfg["sweep"], "job_id": job_id, "cfg": cfg}) as tracker:
            row.update(execute(plan, parts, images, folder, device, bool(cfg.get("progress", True)),
                               tracker, row["timings"], job_id))
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
        _write_row(row, folder, device, start)
        _RUNNING.clear()
        raise
    except KeyboardInterrupt:
        tries.close("interrupted")    # no row: a rerun resumes; _RUNNING stays for interrupted()
        raise
    finally:
        _RUNNING.pop("attempts", None)
    row["attempts"] = tries.close("ok")
    _write_row(row, folder, device, start)
    _RUNNING.clear()
    report(row)
    return row


# ----------------------------------------------------------------------------- what a person reads
_RUNNING: dict[str, Any] = {}     # the job in progress in this process, for interrupted()


def interrupted() -> str:
    """One line for Ctrl-C: where the job stopped and what a rerun does."""
    if not _RUNNING:
        return "interrupted before any job started; nothing was written"
    job_id, folder, timings, plan = (_RUNNING[k] for k in ("job_id", "folder", "timings", "plan"))
    stage = next((s for k, s in (("invert_s", "inverting"), ("sample_s", "sampling"), ("evaluate_s", "evaluating"))
                  if k not in timings), "writing its row")
    step = checkpoint_step(folder)
    if plan.icfg is None:
        saved = "a rerun of the same command starts it again"
    elif step is None:
        saved = (f"no inversion checkpoint yet (the first comes at step {plan.icfg.checkpoint_every}): "
                 "a rerun of the same command starts it again")
    else:
        saved = (f"its inversion checkpoint holds step {step} of {plan.icfg.steps}: a rerun of the same "
                 "command resumes from there")
    return f"interrupted: job {job_id} stopped while {stage}; {saved} ({folder})"


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


def _write_row(row: dict, folder: Path, device: str, start: str) -> None:
    row["provenance"] = {**results.provenance(device, start, weights=model_fingerprint(row["config"]["model"])),
                         "concept_files": concept_fingerprint(row["config"]["concept"])}
    atomic.write_json(folder / results.ROW_NAME, row)


def _total_s(timings: dict, t0: float) -> float:
    """Wall time since the job started, plus its share of a packed inversion (run before)."""
    from tinv.harness.learned import share_s
    return time.perf_counter() - t0 + share_s(timings)


def execute(plan: Plan, parts, images, folder: Path, device: str, progress: bool, tracker,
            timings: dict, job_id: str) -> dict:
    """invert -> sample -> evaluate; returns the row's metrics, artifacts, ...; fills
    `timings` stage by stage, so a failed row shows how far the job got. The inversion is
    reused when a job differing only in eval.* made it already (tinv.harness.learned)."""
    cfg = plan.cfg
    artifacts: dict[str, Any] = {}
    training: dict[str, Any] = {}
    train01 = (images.pixels + 1) / 2

    t = time.perf_counter()
    got = None
    if plan.icfg is not None:
        from tinv.harness import learned
        # stored by a job of the same inversion, or computed here (alone, or this job's share
        # of a packed inversion: tinv/launch/packing.py) and stored
        got = learned.obtain(plan, parts, images, folder, job_id, progress, packed=learned.take(folder))
        result = got.result
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
        reached = convergence.fields(cfg, plan.concept.name, result.curve, result.eval_loss_after)
        if "note" in reached:
            training["notes"]["steps_to_reference_loss"] = reached.pop("note")
        training.update(reached)
        atomic.write_json(folder / "losses.json", {"losses": result.losses,
                                                   "diffusion_losses": result.diffusion_losses,
                                                   **({"prior_losses": result.prior_losses} if result.prior_losses else {})})
        artifacts["losses"] = "losses.json"
        tracker.log_losses(result.losses)
        if result.dvar:
            tracker.log_losses(result.dvar["losses"], name="inversion/dvar_fixed_batch_loss")
        exported, artifacts["triggers"] = export_embeddings(result, folder / "embeddings", parts.family)
        artifacts["embeddings"] = {k: str(Path(v).relative_to(folder)) for k, v in exported.items()}
        if result.learner:     # a successor's own files, in the formats users load (tinv/engine/learners)
            from tinv.engine import learners
            artifacts["learner"] = {k: str(Path(v).relative_to(folder)) for k, v in
                                    learners.export(parts, result.learner, folder / "embeddings").items()}
            training["learner"] = {"name": result.learner["name"], **plan.icfg.learner_args}
            moved = result.learner.get("moved")     # None: a result stored before rows said it
            if moved is not None:
                training["learner"]["moved"] = moved
                if moved < 0.01:    # a successor's row that equals its starting point must say so
                    training["notes"]["learner"] = (
                        f"the {result.learner['name']} learner's tensors moved {moved:.2%} (< 1%) from where "
                        "they started: this row is practically the untrained setup; raise its lr or steps")
        if plan.pcfg is not None:
            from tinv.engine.pivotal import save_tuned
            piv = got.pivotal               # the UNet in `parts` is tuned already
            save_tuned(parts, piv, folder / "embeddings", plan.pcfg)
            training["pivotal"] = {"steps": plan.pcfg.steps, "lr": plan.pcfg.lr, "params": plan.pcfg.params,
                                   "tuned_tensors": len(piv.tuned),
                                   "loss_last": piv.losses[-1] if piv.losses else None,
                                   "eval_loss_before": piv.eval_loss_before,
                                   "eval_loss_after": piv.eval_loss_after}
            moved = pivotal_moved(piv.eval_loss_before, piv.eval_loss_after)
            if moved < 0.01:   # a pivotal row that equals single-word's must say why
                training["notes"]["pivotal"] = (
                    f"the pivotal stage moved the fixed-batch loss by {moved:.2%} (< 1%): the tuned UNet is "
                    f"practically the untuned one; raise model.calibration.pivotal.lr or .steps")
    timings["invert_s"] = time.perf_counter() - t
    if got and got.reused_from:
        # no inversion ran for this row: its time went to reading the stored one
        timings.update(invert_s=0.0, invert_reused_from=got.reused_from, invert_load_s=got.load_s)
    elif got and got.packed:
        from tinv.harness.learned import packed_timings
        timings.update(packed_timings(got.packed, timings["invert_s"]))

    t = time.perf_counter()
    cells = plan.cells()
    if got and got.result.learner:     # evaluation-time options of a successor (NeTI's truncation)
        from tinv.engine import learners
        learners.prepare_sampling(parts, got.result.learner, cfg["eval"])
    plan.kind.sample(plan, parts, images, train01, cells, progress, training)
    grids = save_grids(cells, folder / "samples")
    artifacts["samples"] = {k: str(p.relative_to(folder)) for k, p in grids.items()}
    tracker.log_images(grids)
    timings["sample_s"] = time.perf_counter() - t

    t = time.perf_counter()
    from tinv.metrics.protocol import evaluate
    held, held_from = heldout_images(plan, parts, Path(cfg["results_root"]))
    scored = evaluate(plan, cells, train01, device, None if held is None else (held.pixels + 1) / 2)
    if "embedding_norm" in training:   # where the word went, beside what it draws
        for name in ("embedding_norm", "embedding_dist_init"):
            # one inversion, no sample to resample: no interval (across seeds, run seeds)
            scored["metrics"][name], scored["metrics_ci"][name] = training[name], None
    timings["evaluate_s"] = time.perf_counter() - t
    tracker.log_table(scored["per_prompt"])
    return {**scored, "artifacts": artifacts, "training": training,
            "concept": {"name": plan.concept.name, "kind": plan.concept.kind,
                        "folder": str(plan.concept.folder), "initializer": plan.concept.initializer,
                        "n_images": len(images)},
            "eval_protocol": {"prompt_set": P.prompt_set_name(cfg), "seeds": [seeds(cfg)[0], len(seeds(cfg))],
                              "reconstruction_prompt": plan.recon.template,
                              "editability_text": "prompt with the placeholder deleted",
                              "editability_paper": "editability_clip_meanemb",
                              "reconstruction_heldout": held_from,
                              "evaluator": (cfg["eval"]["clip"] if cfg["model"]["evaluator"] == "clip"
                                            else "toyworld")}}
