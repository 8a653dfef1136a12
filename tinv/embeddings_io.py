"""Learned embeddings in the formats people use, out and back in.

- diffusers `learned_embeds.safetensors`: {placeholder: [k, D]} (one placeholder per
  file; `pipeline.load_textual_inversion` expands k > 1 to "<tok>", "<tok>_1", ...).
- AUTOMATIC1111 `.pt`: {"string_to_token": {"*": 265}, "string_to_param": {"*": [k, D]},
  "name": placeholder, "step": steps}.
- the authors' `embeddings.pt`: {"string_to_token": {s: id}, "string_to_param": {s: [k, D]}}
  (no "name"; s is the placeholder string, id its token id in their tokenizer).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tinv import checkpoint
from tinv.models import Parts
from tinv.pseudo_words import PseudoWord, set_vectors

A1111_STAR_ID = 265  # CLIP's id of "*", which A1111 files record by convention


def save_diffusers(vectors: torch.Tensor, placeholder: str, path: str | os.PathLike) -> Path:
    """Write `learned_embeds.safetensors` for one placeholder (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".safetensors.tmp")
    os.close(fd)
    try:
        save_file({placeholder: _k_by_d(vectors).contiguous().cpu()}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_a1111(vectors: torch.Tensor, placeholder: str, path: str | os.PathLike, step: int = 0) -> Path:
    obj = {"string_to_token": {"*": A1111_STAR_ID}, "string_to_param": {"*": _k_by_d(vectors).cpu()},
           "name": placeholder, "step": int(step), "sd_checkpoint": None, "sd_checkpoint_name": None}
    return checkpoint.save_atomic(obj, path)


def save_authors(embeds: dict[str, torch.Tensor], token_ids: dict[str, int], path: str | os.PathLike) -> Path:
    """The authors' layout: every placeholder of a run in one file."""
    obj = {"string_to_token": {s: torch.tensor(token_ids[s]) for s in embeds},
           "string_to_param": torch.nn.ParameterDict(
               {s: torch.nn.Parameter(_k_by_d(v).cpu(), requires_grad=False) for s, v in embeds.items()})}
    return checkpoint.save_atomic(obj, path)


def export_result(result, folder: str | os.PathLike) -> dict[str, Path]:
    """All three formats of an InversionResult's main placeholder (authors' file: all tokens)."""
    folder = Path(folder)
    name = result.config.get("placeholder") or next(iter(result.embeds))
    vec = result.embeds[name]
    return {"diffusers": save_diffusers(vec, name, folder / "learned_embeds.safetensors"),
            "a1111": save_a1111(vec, name, folder / "a1111_embedding.pt", result.steps),
            "authors": save_authors(result.embeds, {s: ids[0] for s, ids in result.token_ids.items()},
                                    folder / "embeddings.pt")}


def read_embeddings(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """{placeholder: [k, D]} from any of the three formats (detected from the content)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"embedding file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        return {k: _k_by_d(v) for k, v in load_file(str(path)).items()}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"embedding file {str(path)!r} cannot be read: {e}") from e
    if isinstance(obj, dict) and "string_to_param" in obj:
        params = {k: _k_by_d(v.detach()) for k, v in obj["string_to_param"].items()}
        if "name" in obj:  # A1111: the real name is stored beside the "*" key
            return {obj["name"]: params["*"]}
        return params
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {k: _k_by_d(v) for k, v in obj.items()}  # diffusers .bin
    raise ValueError(f"embedding file {str(path)!r} is neither diffusers, A1111 nor the authors' layout")


def import_embeddings(parts: Parts, path: str | os.PathLike,
                      placeholder: str | None = None) -> list[PseudoWord]:
    """Add the file's placeholders to tokenizer and text encoder. `placeholder` renames a
    single-placeholder file (needed when its string is already a word, e.g. the authors' "*")."""
    embeds = read_embeddings(path)
    if placeholder is not None:
        if len(embeds) != 1:
            raise ValueError(f"{str(path)!r} holds {len(embeds)} placeholders; cannot rename them all "
                             f"to {placeholder!r}")
        embeds = {placeholder: next(iter(embeds.values()))}
    return [set_vectors(parts, name, vec) for name, vec in embeds.items()]


def _k_by_d(v: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(v).detach()
    return v[None] if v.dim() == 1 else v
