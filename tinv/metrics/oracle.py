"""Toy-world ground truth beside CLIP: the attribute oracle's metrics for a job's samples.

reconstruction_oracle: per sample of "A photo of S*", the share of the concept's
    attributes (unnamed ones included) the oracle sees (tinv.toyworld.oracle).
editability_oracle: per sample of an editing prompt, the share of the attributes that
    prompt asks for (conf/eval/prompts/toyworld.yaml says which) the oracle sees.
editability_oracle_all: the share of samples in which the oracle sees EVERY asked attribute
    (stricter: one missed attribute fails the sample).
editability_*_d1/_d2/_d3: the same over the prompts that ask one change, two, or three or
    more (the paper's prompts vary in difficulty).
identity_oracle: the concept's attributes in the EDITED samples, i.e. whether S* survives
    the edit. Attributes a prompt asks for are left out of it (a "painting of S*" is not
    expected to stay a photo).
Both come split: `_named` (attributes captions can say), `_unnamed` (accent, outline: no
word says them, so only a learned word can carry them) and one `_<attribute>` each, so a
row shows WHAT a setup reconstructs, not only how much.
"""
from __future__ import annotations

import numpy as np

from .bootstrap import mean_ci


def score_cells(plan, rec_cells, edit_cells, device: str, out: dict, n_boot: int,
                seed: int, levels: dict[str, list[int]] | None = None) -> dict[str, list[float]]:
    """Adds the oracle metrics to `out` (metrics, metrics_ci, scores); returns per-edit-cell
    means {name: [value per edit cell]} for the per-prompt breakdown."""
    from tinv.toyworld.oracle import (load_oracle, oracle_editability, oracle_editability_all,
                                      oracle_reconstruction, splits)
    from .encoders import cached
    oracle = cached(load_oracle, device)
    truth = dict(plan.concept.attributes or {})
    per_cell: dict[str, list[float]] = {}
    if truth:
        predicted = [oracle.predict(c.images) for c in rec_cells]
        for suffix, wanted in splits(truth).items():
            rec = [np.asarray(oracle_reconstruction(pred, wanted)) for pred in predicted]
            _put(out, "reconstruction_oracle" + suffix, rec, n_boot, seed)
    edit, edit_all, ident, ident_split = [], [], [], {}
    for c in edit_cells:
        predictions = oracle.predict(c.images)
        asked = plan.prompts[c.prompt].attributes
        if asked:
            edit.append(np.asarray(oracle_editability(predictions, asked)))
            edit_all.append(np.asarray(oracle_editability_all(predictions, asked)))
        kept = {k: v for k, v in truth.items() if k not in asked}
        ident.append(float(np.mean(oracle_reconstruction(predictions, kept))) if kept else float("nan"))
        for suffix, wanted in splits(kept).items():
            ident_split.setdefault(suffix, []).append(np.asarray(oracle_reconstruction(predictions, wanted)))
    if edit and len(edit) == len(edit_cells):
        _put(out, "editability_oracle", edit, n_boot, seed)
        _put(out, "editability_oracle_all", edit_all, n_boot, seed)
        per_cell["editability_oracle"] = [float(e.mean()) for e in edit]
        for level, idx in (levels or {}).items():   # prompts asking 1, 2, 3+ changes
            _put(out, f"editability_oracle_{level}", [edit[i] for i in idx], n_boot, seed)
    for suffix, cells in ident_split.items():
        _put(out, "identity_oracle" + suffix, cells, n_boot, seed)
    if truth:
        per_cell["identity_oracle"] = ident
    return per_cell


def _put(out: dict, name: str, cells: list[np.ndarray], n_boot: int, seed: int) -> None:
    out["metrics"][name] = float(np.mean([c.mean() for c in cells]))
    out["metrics_ci"][name] = mean_ci(cells, n_boot, seed)
    out["scores"][name] = [float(x) for x in np.concatenate(cells)]
