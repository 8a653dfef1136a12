"""How fast a setup learns, against the paper's: the optimizer step at which a run's
fixed-batch loss first reaches the single word's final fixed-batch loss on the same concept
and seed (P+'s claim that it "converges faster" than textual inversion is this number).

The fixed-batch loss is the engine's `fixed_eval_loss` ("a photo of S*" over fixed
(image, timestep, noise) pairs): a run logs it about every 1/30 of its steps
(`InversionResult.curve`, tinv.engine.inversion.CURVE_POINTS) and its last value is the row's
`training.eval_loss_after`. The reference is the single word's row in the job store
(`<results_root>/jobs/<concept>-single_word-*`) whose model, concept, seed and training
images are this job's; the single word's own row is its own reference. When there is none
(the single word has not run, or not finished), the field is null and the row's
`training.notes.steps_to_reference_loss` says why; the row's curve is there to compute it later.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tinv.harness import results

REFERENCE = "single_word"
# what must be the same for two jobs to be the same concept and seed on the same model
PAIRED_BY = ("model", "concept", "seed", "train_images")


def steps_to_reach(curve: list, target: float) -> int | None:
    """The first logged step whose fixed-batch loss is at or below `target` (None: never)."""
    return next((int(step) for step, loss in curve if loss <= target), None)


def reference_row(cfg: Mapping[str, Any], concept: str) -> dict | None:
    """The single word's finished row for this job's model, concept, seed and training images
    in the job store (the first by folder name when several evaluations of it are there: they
    share one inversion), or None."""
    store = Path(cfg["results_root"]) / results.STORE
    for folder in sorted(store.glob(f"{concept}-{REFERENCE}-*")):
        row = results.read_row(folder)
        if not row or row.get("status") != "ok":
            continue
        other = row.get("config") or {}
        if (other.get("method") or {}).get("name") != REFERENCE:
            continue
        if all(other.get(k) == cfg.get(k) for k in PAIRED_BY) and (row.get("training") or {}).get("eval_loss_after") is not None:
            return row
    return None


def fields(cfg: Mapping[str, Any], concept: str, curve: list, eval_loss_after: float) -> dict[str, Any]:
    """The row's training fields: `fixed_batch_curve`, `reference_loss` and
    `steps_to_reference_loss`, and a note for the row's `training.notes` when the step is null."""
    out: dict[str, Any] = {"fixed_batch_curve": [list(p) for p in curve], "reference_loss": None,
                           "steps_to_reference_loss": None}
    if (cfg.get("method") or {}).get("name") == REFERENCE:
        ref = {"method": REFERENCE, "job_id": "this job", "eval_loss_after": eval_loss_after}
    else:
        row = reference_row(cfg, concept)
        if row is None:
            out["note"] = (f"no finished {REFERENCE} row for this model, concept, seed and training images in "
                           f"{Path(cfg['results_root']) / results.STORE} when this row was written; "
                           "fixed_batch_curve holds this run's curve")
            return out
        ref = {"method": REFERENCE, "job_id": row.get("job_id"), "eval_loss_after": row["training"]["eval_loss_after"]}
    out["reference_loss"] = ref
    if not curve:
        out["note"] = "the inversion was stored before runs logged their fixed-batch loss curve"
        return out
    out["steps_to_reference_loss"] = steps_to_reach(curve, ref["eval_loss_after"])
    if out["steps_to_reference_loss"] is None:
        lowest = min(loss for _, loss in curve)
        out["note"] = (f"the fixed-batch loss never reached {REFERENCE}'s final {ref['eval_loss_after']:.5f} in "
                       f"{int(curve[-1][0])} steps (lowest {lowest:.5f})")
    return out
