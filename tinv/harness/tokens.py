"""The job's words against the model's tokenizer, before the model loads.

Loading a model takes seconds (the toy world) to minutes (Stable Diffusion); its tokenizer
alone takes a fraction of a second and answers everything words can get wrong: the
pipeline is of the family the config says, the initializer is one known token, and the
placeholder's tokens are new in every case-folding they will meet (as given, for tinv's
own tokenizer; lower-cased, as CLIP's normalisation and diffusers' prompt expansion see
it, and as LDM-BERT reads everything) and tokenize to themselves once added.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from tinv.core.errors import InputError
from tinv.harness.loading import model_path
from tinv.engine.pseudo_words import token_names
from tinv.harness.validate import override

# Placeholders offered when the configured one is taken: the shape of the paper's S*.
CANDIDATES = tuple(f"<{c}*>" for c in "STVWXYZ") + ("<tinv-word>", "<tinv-concept>")
FAMILY_NAMES = {"sd": "a Stable Diffusion pipeline (text_encoder/tokenizer/unet/vae)",
                "ldm": "an LDM pipeline (bert/tokenizer/unet/vqvae)"}
FAMILY_MODELS = {"sd": "model=sd15 (or model=sd21 for SD 2.x)", "ldm": "model=ldm14"}


def _model_index(path: str) -> dict | None:
    """The pipeline's model_index.json, or None where it cannot be read (the load says why)."""
    folder = Path(path).expanduser()
    try:
        if folder.is_dir():
            return json.loads((folder / "model_index.json").read_text())
        from huggingface_hub import hf_hub_download
        return json.loads(Path(hf_hub_download(path, "model_index.json")).read_text())
    except Exception:  # noqa: BLE001 - preflight named missing weights; anything else is the load's to say
        return None


def pipeline_family(index: Mapping[str, Any]) -> str | None:
    """As tinv.engine.models.detect_family decides it, without importing diffusers."""
    if {"text_encoder", "tokenizer", "unet"} <= set(index):
        return "sd"
    if {"bert", "vqvae"} <= set(index):
        return "ldm"
    return None


def check_family(m: Mapping[str, Any]) -> str | None:
    """The pipeline's family; an InputError when it is not the one the model config loads."""
    path = model_path(m)
    if path.startswith("tiny:"):
        return path[5:]
    index = _model_index(path)
    found = pipeline_family(index) if index else None
    want = m.get("family")
    if found and want and found != want:
        where = f"model.path={path}" if m.get("path") else f"the model {m.get('name')}"
        raise InputError(f"{where} is {FAMILY_NAMES[found]}, but model={m.get('name')} loads "
                         f"{FAMILY_NAMES[want].split(' (')[0]}: use {FAMILY_MODELS[found]} "
                         f"{override('model.path', path)}")
    return found or want


def load_tokenizer(m: Mapping[str, Any], family: str | None):
    """The tokenizer the model will load with (tinv.engine.models.load_parts), alone."""
    path = model_path(m)
    if path.startswith("tiny:"):
        from tinv.engine import models
        return models.tiny_bert_tokenizer() if family == "ldm" else models.tiny_clip_tokenizer()
    from transformers import BertTokenizer, CLIPTokenizer
    cls = BertTokenizer if family == "ldm" else CLIPTokenizer
    try:
        return cls.from_pretrained(path, subfolder="tokenizer")
    except (OSError, ValueError):
        return None     # the model load reports a pipeline without a readable tokenizer


def foldings(name: str) -> list[str]:
    return list(dict.fromkeys([name, name.lower()]))


def taken(tokenizer, name: str) -> list[str]:
    """The forms of `name` the tokenizer has already: an entry of its vocabulary (added
    tokens included), or a word it reads as one known token."""
    vocab = tokenizer.get_vocab()
    out = []
    for form in foldings(name):
        ids = tokenizer(form, add_special_tokens=False).input_ids
        if form in vocab or (len(ids) == 1 and ids[0] != tokenizer.unk_token_id):
            out.append(form)
    return out


def placeholder_names(placeholder: str, num_vectors: int, n_image_words: int) -> list[str]:
    """Every token a job adds: the placeholder's k, and one per image for per-image tokens
    (tinv.engine.inversion names them <base-img{i}>)."""
    base = placeholder.strip("<>")
    return token_names(placeholder, num_vectors) + [f"<{base}-img{i}>" for i in range(n_image_words)]


def suggest(tokenizer, num_vectors: int, n_image_words: int) -> str | None:
    for candidate in CANDIDATES:
        names = placeholder_names(candidate, num_vectors, n_image_words)
        if not any(taken(tokenizer, n) for n in names):
            return candidate
    return None


def check_placeholder(tokenizer, placeholder: str, num_vectors: int, n_image_words: int) -> None:
    """The placeholder's tokens are new to `tokenizer` in every folding and tokenize to
    themselves once added. Adds them: give a tokenizer of its own."""
    names = placeholder_names(placeholder, num_vectors, n_image_words)
    clash = [f for n in names for f in taken(tokenizer, n)]
    if not clash:
        tokenizer.add_tokens(names)
        ids = tokenizer.convert_tokens_to_ids(names)
        got = tokenizer(" ".join(names), add_special_tokens=False).input_ids
        if list(got) == list(ids):
            return
        pieces = tokenizer.convert_ids_to_tokens(got)
        problem = f"this model's tokenizer does not read its tokens {names} as themselves (it reads {pieces})"
    else:
        problem = (f"this model's tokenizer holds {clash} already (a pipeline saved with an embedding loaded, "
                   "or a word of its vocabulary)")
    better = suggest(tokenizer, num_vectors, n_image_words)
    fix = f"choose another, e.g. {override('concept.placeholder', better)}" if better else \
        "choose another with concept.placeholder=..."
    raise InputError(f"concept.placeholder={placeholder!r}: {problem}; {fix}")


def check(plan, n_images: int) -> None:
    """Family, initializer and placeholder against the model's tokenizer (see the module)."""
    from tinv.harness.plan import check_initializer
    m = plan.cfg["model"]
    family = check_family(m)
    tokenizer = load_tokenizer(m, family)
    if tokenizer is None or plan.icfg is None:
        return
    check_initializer(plan, tokenizer)
    icfg = plan.icfg
    check_placeholder(tokenizer, icfg.placeholder, icfg.num_vectors, n_images if icfg.per_image_tokens else 0)
