"""Toy-world ground truth beside CLIP: the attribute oracle's metrics for a job's samples.

reconstruction_oracle: per sample of "A photo of S*", the share of the concept's
    attributes (unnamed ones included) the oracle sees (tinv.toyworld.oracle).
editability_oracle: per sample of an editing prompt, the share of the attributes that
    prompt asks for (conf/eval/prompts/toyworld.yaml says which) the oracle sees.
identity_oracle (per prompt only): the concept's attributes in the EDITED samples, i.e.
    whether S* survives the edit. Attributes a prompt asks for are left out of it (a
    "painting of S*" is not expected to stay a photo).
"""
from __future__ import annotations

import numpy as np

from .bootstrap import mean_ci


def score_cells(plan, rec_cells, edit_cells, device: str, out: dict, n_boot: int,
                seed: int) -> dict[str, list[float]]:
    """Adds the oracle metrics to `out` (metrics, metrics_ci, scores); returns per-edit-cell
    means {name: [value per edit cell]} for the per-prompt breakdown."""
    from tinv.toyworld.oracle import load_oracle, oracle_editability, oracle_reconstruction
    from .encoders import cached
    oracle = cached(load_oracle, device)
    truth = dict(plan.concept.attributes or {})
    per_cell: dict[str, list[float]] = {}
    if truth:
        rec = [np.asarray(oracle_reconstruction(oracle.predict(c.images), truth)) for c in rec_cells]
        _put(out, "reconstruction_oracle", rec, n_boot, seed)
    edit, ident = [], []
    for c in edit_cells:
        predictions = oracle.predict(c.images)
        asked = plan.prompts[c.prompt].attributes
        if asked:
            edit.append(np.asarray(oracle_editability(predictions, asked)))
        kept = {k: v for k, v in truth.items() if k not in asked}
        ident.append(float(np.mean(oracle_reconstruction(predictions, kept))) if kept else float("nan"))
    if edit and len(edit) == len(edit_cells):
        _put(out, "editability_oracle", edit, n_boot, seed)
        per_cell["editability_oracle"] = [float(e.mean()) for e in edit]
    if truth:
        per_cell["identity_oracle"] = ident
    return per_cell


def _put(out: dict, name: str, cells: list[np.ndarray], n_boot: int, seed: int) -> None:
    out["metrics"][name] = float(np.mean([c.mean() for c in cells]))
    out["metrics_ci"][name] = mean_ci(cells, n_boot, seed)
    out["scores"][name] = [float(x) for x in np.concatenate(cells)]
