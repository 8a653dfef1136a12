"""Learned embeddings in the formats people use, out and back in.

Each export loads in its tool and means there what it means in tinv (tests/engine/
test_embeddings_io.py loads them the way each tool does):

- diffusers `learned_embeds.safetensors`: {token: [k, D]}; `pipeline.load_textual_inversion`
  adds "token", "token_1", ... and expands "token" in a prompt to all k. Its prompt
  expansion looks tokens up AFTER the CLIP tokenizer lower-cases the prompt, so the token is
  the placeholder in that normalised form (`<S*>` is exported as `<s*>`): a user writes
  "a photo of <s*>".
- AUTOMATIC1111 `<trigger>.pt`: {"string_to_token": {"*": 265}, "string_to_param": {"*": [k, D]},
  "name": trigger, "step": steps}. A1111 takes the trigger word from the FILE NAME and
  replaces that word's tokens in a prompt by the k vectors; diffusers reads this layout too,
  with "name" as its token. The trigger is the job folder's name, lower-cased
  (`red_star-single_word-<id>.pt`: "a photo of red_star-single_word-<id>").
- the authors' `embeddings.pt`: {"string_to_token": {s: id}, "string_to_param": {s: [k, D]}}.
  Their embedding manager finds a word by token id in the prompt as their STOCK tokenizer
  reads it, so s is one token of the stock vocabulary stored with its real id: "*" for the
  main word (their default), their per-image letters (or other single rare tokens the
  tokenizer has) for per-image tokens. "tinv_names" (ignored by their loader) maps each s
  back to tinv's placeholder: "a photo of * with א" there is "a photo of <S*> with <S*-img0>".
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tinv.core import atomic
from tinv.engine.models import Parts
from tinv.engine.pseudo_words import PseudoWord, set_vectors

log = logging.getLogger(__name__)

A1111_STAR_ID = 265  # CLIP's id of "*", which A1111 files record by convention
DIFFUSERS_FILE = "learned_embeds.safetensors"
AUTHORS_FILE = "embeddings.pt"
# The authors' placeholder and per-image token strings (ldm/modules/embedding_manager.py,
# ldm/data/personalized.py of their public code).
AUTHORS_PLACEHOLDER = "*"
AUTHORS_IMAGE_TOKENS = tuple("אבגדהוזחטיכלמנסעפצקרשת")
# Where a tokenizer splits those (CLIP's BPE reads each Hebrew letter as two tokens): rare
# single characters, none of which a prompt normally holds.
_FALLBACK_TOKENS = tuple("¡¢£¤¥¦§¨©ª«¬®¯°±²³µ¶¸¹º»¼½¾¿×÷") + tuple("#$%&+<=>@^_|~")


def diffusers_token(placeholder: str) -> str:
    """The placeholder as diffusers' prompt expansion sees it after CLIP's normalisation."""
    return " ".join(placeholder.lower().split())


def a1111_trigger(folder: str | os.PathLike) -> str:
    """A1111's trigger word (its file name) for an export into `folder`: the job folder's
    name (`<job>/embeddings` -> `<job>`), lower-cased, in characters every file system takes."""
    folder = Path(folder)
    name = folder.parent.name if folder.name == "embeddings" and folder.parent.name else folder.name
    name = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return name or "tinv-embedding"


def authors_tokens(tokenizer, n_images: int = 0) -> dict[str, int]:
    """The stock-vocabulary stand-ins the authors' file uses: {string: id}, the main word's
    first ("*"), then one per image. Each string is ONE token of `tokenizer` that is neither
    an added token, a special token nor unknown; fewer than 1 + n_images when the vocabulary
    runs out (then the authors' file holds only the words that have one)."""
    added = set(tokenizer.get_added_vocab().values())
    special = set(tokenizer.all_special_ids)
    chosen: dict[str, int] = {}
    want = 1 + n_images
    for s in (AUTHORS_PLACEHOLDER, *AUTHORS_IMAGE_TOKENS, *_FALLBACK_TOKENS):
        if len(chosen) == want:
            break
        ids = tokenizer(s, add_special_tokens=False).input_ids
        if len(ids) == 1 and ids[0] not in added | special | set(chosen.values()):
            chosen[s] = int(ids[0])
    return chosen


def save_diffusers(vectors: torch.Tensor, placeholder: str, path: str | os.PathLike) -> Path:
    """Write `learned_embeds.safetensors` for one placeholder (atomically)."""
    with atomic.replacing(path) as tmp:
        save_file({placeholder: _k_by_d(vectors).contiguous().cpu()}, tmp)
    return Path(path)


def save_a1111(vectors: torch.Tensor, placeholder: str, path: str | os.PathLike, step: int = 0) -> Path:
    obj = {"string_to_token": {"*": A1111_STAR_ID}, "string_to_param": {"*": _k_by_d(vectors).cpu()},
           "name": placeholder, "step": int(step), "sd_checkpoint": None, "sd_checkpoint_name": None}
    return atomic.save_torch(path, obj)


def save_authors(embeds: dict[str, torch.Tensor], token_ids: dict[str, int], path: str | os.PathLike,
                 names: dict[str, str] | None = None) -> Path:
    """The authors' layout: every placeholder of a run in one file. `names`: {string: tinv's
    placeholder}, stored as "tinv_names" (their loader reads only the two dicts)."""
    obj = {"string_to_token": {s: torch.tensor(token_ids[s]) for s in embeds},
           "string_to_param": torch.nn.ParameterDict(
               {s: torch.nn.Parameter(_k_by_d(v).cpu(), requires_grad=False) for s, v in embeds.items()})}
    if names:
        obj["tinv_names"] = dict(names)
    return atomic.save_torch(path, obj)


def export_result(result, folder: str | os.PathLike, family: str = "sd") -> dict[str, Path]:
    """The formats of an InversionResult that can load it (module docstring): the main
    placeholder in the diffusers and A1111 files, every placeholder in the authors' file.
    An LDM-BERT word gets the authors' file only: diffusers' loader and A1111 are CLIP
    (Stable Diffusion) tools, and their files would record a CLIP token id."""
    folder = Path(folder)
    name = main_placeholder(result)
    vec = result.embeds[name]
    out = {}
    if family == "sd":
        trigger = a1111_trigger(folder)
        out["diffusers"] = save_diffusers(vec, diffusers_token(name), folder / DIFFUSERS_FILE)
        out["a1111"] = save_a1111(vec, trigger, folder / f"{trigger}.pt", result.steps)
    out["authors"] = _save_authors_result(result, name, folder / AUTHORS_FILE)
    return out


def main_placeholder(result) -> str:
    return result.config.get("placeholder") or next(iter(result.embeds))


def triggers(result, exported: dict[str, Path]) -> dict[str, str]:
    """What a prompt writes for the word in each export: diffusers' lower-cased placeholder,
    A1111's file name, the authors' stock token ("*")."""
    out = {}
    if "diffusers" in exported:
        out["diffusers"] = diffusers_token(main_placeholder(result))
    if "a1111" in exported:
        out["a1111"] = Path(exported["a1111"]).stem
    stand_ins = list((result.notes or {}).get("authors_tokens", {}))
    if "authors" in exported and stand_ins:
        out["authors"] = stand_ins[0]
    return out


def _save_authors_result(result, main: str, path: Path) -> Path:
    stand_ins = list((result.notes or {}).get("authors_tokens", {}).items())
    if not stand_ins:
        raise ValueError("the inversion result names no stock-vocabulary token for the authors' "
                         "format (notes['authors_tokens']); results of tinv.engine.inversion.invert have one")
    order = [main] + [p for p in result.embeds if p != main]
    if len(order) > len(stand_ins):
        log.warning("the tokenizer has single tokens for only %d of %d words: the authors' file "
                    "leaves out %s", len(stand_ins), len(order), ", ".join(order[len(stand_ins):]))
    pairs = list(zip(order, stand_ins))
    return save_authors({s: result.embeds[p] for p, (s, _) in pairs}, {s: i for _, (s, i) in pairs},
                        path, names={s: p for p, (s, _) in pairs})


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
        names = obj.get("tinv_names") or {}   # the authors' layout as tinv writes it
        return {names.get(k, k): v for k, v in params.items()}
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
