"""A job's samples -> its metrics: the evaluation protocol of section 5.1 (docs/harness.md).

`evaluate(plan, cells, train, device, heldout)` takes the job plan (tinv.harness.plan.Plan:
concept, prompts, and the typed `eval` and `model` settings of tinv.metrics.settings) and its
cells (tinv.harness.plan.Cell: a prompt or prompt x caption with its samples) and returns the
row's `metrics`, `metrics_ci`, `scores` and `per_prompt`. With `heldout` (images of the concept
no training set uses, in [0, 1]) it adds reconstruction_clip_heldout: reconstruction against
that fixed set, comparable across training-set sizes (appendix B), where reconstruction_clip
is scored against each job's own training images.
"""
from __future__ import annotations

import numpy as np
import torch

from tinv.metrics import encoders, oracle, scores as S


def evaluate(plan, cells: list, train: torch.Tensor, device: str, heldout: torch.Tensor | None = None) -> dict:
    """metrics, metrics_ci, per_prompt, scores: the protocol of section 5.1 (see docs/harness.md)."""
    e, m = plan.eval, plan.model
    boot = e.boot
    # Image-only's samples ARE the training images, and bipartite inversion's are each
    # training image regenerated from its own inverted noise: either way sample i is a
    # copy of training image i, so the (i, i) pair is left out of reconstruction.
    exclude_self = plan.kind.exclude_self
    clip = (encoders.cached(encoders.ClipEncoder.toyworld, device) if m.evaluator == "toyworld"
            else encoders.cached(encoders.ClipEncoder.from_open_clip, e.clip["model"],
                                 e.clip["pretrained"], device))
    memo: dict[tuple[int, int], np.ndarray] = {}

    def embed(enc, images):  # image-only reuses one tensor for every cell
        key = (id(enc), id(images))
        if key not in memo:
            memo[key] = enc.images(images)
        return memo[key]

    rec_cells = [c for c in cells if c.prompt < 0]
    edit_cells = [c for c in cells if c.prompt >= 0]
    train_clip = embed(clip, train)
    out = {"metrics": {}, "metrics_ci": {}, "scores": {}}

    def put(name, res):
        out["metrics"][name] = res["value"]
        out["metrics_ci"][name] = res["ci"]
        out["scores"][name] = [float(x) for x in res["scores"]]

    rec = S.reconstruction([S.pair_matrix(train_clip, embed(clip, c.images), exclude_self)
                            for c in rec_cells], **boot)
    put("reconstruction_clip", rec)
    if heldout is not None:     # no sample is a copy of a held-out image: no pair to leave out
        put("reconstruction_clip_heldout", S.reconstruction(
            [S.pair_matrix(embed(clip, heldout), embed(clip, c.images)) for c in rec_cells], **boot))
    texts = clip.texts([plan.prompts[c.prompt].edit_text for c in edit_cells])
    edit = S.editability([(embed(clip, c.images), t) for c, t in zip(edit_cells, texts)], **boot)
    put("editability_clip_meanemb", edit["meanemb"])
    put("editability_clip_persample", edit["persample"])
    by_level = difficulty_levels(plan, edit_cells)
    for level, idx in by_level.items():
        sub = S.editability([(embed(clip, edit_cells[i].images), texts[i]) for i in idx], **boot)
        put(f"editability_clip_meanemb_{level}", sub["meanemb"])
    # DreamBench's metrics (Ruiz et al. 2023), as its evaluation computes them: every edit
    # prompt's samples against the real images (CLIP-I; DINO below) and against the prompt's
    # own text with S* read as the concept's class word, "a dog in the jungle" (CLIP-T); each
    # also on the CLIPScore scale, 2.5 x max(cos, 0), that Custom Diffusion's tables print.
    image_pairs = [S.pair_matrix(train_clip, embed(clip, c.images), exclude_self) for c in edit_cells]
    class_word = plan.concept.initializer or ""
    text_pairs = [S.pair_matrix(t[None, :], embed(clip, c.images)) for c, t in
                  zip(edit_cells, clip.texts([plan.prompts[c.prompt].fill(class_word) for c in edit_cells]))]
    for name, pairs in (("clip_i", image_pairs), ("clip_t", text_pairs)):
        put(f"dreambench_{name}", S.reconstruction(pairs, **boot))
        put(f"dreambench_{name}_clipscore", S.reconstruction([S.clipscore(p) for p in pairs], **boot))
    # DINO: timm's ViT-S/16 for models with `dino: true`; on the toy world, where no DINO
    # was trained, the toy CLIP's image tower short of its projection (encoders.TowerEncoder).
    dino = None
    if m.evaluator == "toyworld":
        dino = encoders.cached(encoders.TowerEncoder.toyworld, device)
    elif m.dino:
        dino = encoders.cached(encoders.DinoEncoder, e.dino["model"], _dino_weights(e.dino["pretrained"]),
                               device)
    if dino is not None:
        put("reconstruction_dino", S.reconstruction(
            [S.pair_matrix(embed(dino, train), embed(dino, c.images), exclude_self) for c in rec_cells],
            **boot))
        put("dreambench_dino", S.reconstruction(
            [S.pair_matrix(embed(dino, train), embed(dino, c.images), exclude_self) for c in edit_cells], **boot))
    oracle_cells = {}
    if m.oracle:
        oracle_cells = oracle.score_cells(plan, rec_cells, edit_cells, device, out, levels=by_level, **boot)
    out["per_prompt"] = per_prompt(plan, edit_cells, edit, oracle_cells)
    out["per_prompt"].insert(0, {"role": "reconstruction", "prompt": plan.recon.template,
                                 "generated": [t for c in rec_cells for t in drawn_texts(c)],
                                 "n": int(sum(len(c.images) for c in rec_cells)),
                                 **{k: v for k, v in out["metrics"].items() if k.startswith("reconstruction")}})
    return out


def difficulty(asked: dict) -> str:
    """A prompt's level by how many changes it asks: "d1", "d2", "d3" for three or more."""
    return f"d{min(len(asked), 3)}"


def difficulty_levels(plan, edit_cells: list) -> dict[str, list[int]]:
    """Edit cells by their prompt's difficulty, as the paper's prompts vary in it; empty where
    prompts say nothing they ask."""
    out: dict[str, list[int]] = {}
    for i, c in enumerate(edit_cells):
        asked = plan.prompts[c.prompt].attributes
        if asked:
            out.setdefault(difficulty(asked), []).append(i)
    return dict(sorted(out.items()))


def _dino_weights(pretrained) -> bool | str:
    """A local weights file as it is; anything else says whether to load timm's weights."""
    return pretrained if isinstance(pretrained, str) and pretrained.lower() not in ("true", "false") \
        else bool(pretrained)


def drawn_texts(cell) -> list[str]:
    """The distinct texts a cell's samples were drawn from (the human captions in turn: each
    caption once; tinv.harness.plan.Cell.texts)."""
    texts = getattr(cell, "texts", None)
    return list(dict.fromkeys(texts)) if texts else [cell.text]


def per_prompt(plan, edit_cells: list, edit: dict, oracle_cells: dict) -> list[dict]:
    """One entry per editability prompt, each metric averaged over its captions."""
    rows = []
    for p_i, p in enumerate(plan.prompts):
        idx = [i for i, c in enumerate(edit_cells) if c.prompt == p_i]
        row = {"role": "editability", "prompt": p.template, "text": p.edit_text,
               "generated": [t for i in idx for t in drawn_texts(edit_cells[i])], "attributes": p.attributes,
               "n": int(sum(len(edit_cells[i].images) for i in idx)),
               "editability_clip_meanemb": float(np.mean([edit["meanemb"]["cells"][i] for i in idx])),
               "editability_clip_persample": float(np.mean([edit["persample"]["cells"][i] for i in idx]))}
        for name, values in oracle_cells.items():
            row[name] = float(np.mean([values[i] for i in idx]))
        rows.append(row)
    return rows
