"""Preflight: every weight a job will read is on this machine, or can be fetched, before
the job folder exists.

A job needs its model's parts, the CLIP evaluator, DINO (models with `dino: true`) and
the toy world's oracle (`oracle: true`). Each is a local file or folder, a hub entry
already in the local cache, or a hub entry to download. Downloads need the hub: it is
taken as unreachable when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE say so, or when one
short connection attempt fails; then the hub clients are put in offline mode for the
rest of the process, so that cached entries load without retries. Everything missing
is reported at once, in one InputError, each piece with the override that gives a
local copy (docs/harness.md, "Running a real model offline").
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import socket
import sys
import types
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from tinv.core.errors import InputError
from tinv.harness.loading import model_path
from tinv.metrics import TINY_CLIP

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 1.5
DOCS = "docs/harness.md#running-a-real-model-offline"
# owner/name as the hub spells repositories; anything else is a local path
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = {"1", "true", "yes", "on"}
_ONLINE: bool | None = None     # probed once per process
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def hub_reachable() -> bool:
    """False when the environment says offline or the hub does not answer within
    PROBE_TIMEOUT_S; the answer is kept for the process."""
    global _ONLINE
    if _ONLINE is None:
        if any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
            _ONLINE = False
        else:
            url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
            port = url.port or (80 if url.scheme == "http" else 443)
            try:
                socket.create_connection((url.hostname, port), timeout=PROBE_TIMEOUT_S).close()
                _ONLINE = True
            except OSError as e:
                log.info("the hub (%s) is unreachable (%s): offline mode", url.hostname, e)
                _ONLINE = False
        if not _ONLINE:
            go_offline()
    return _ONLINE


def go_offline() -> None:
    """Hub clients read their offline flag at import; set it in the environment (for
    libraries imported later) and in huggingface_hub (for those imported already)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants
        constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass


def _cached(repo: str, *filenames: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    return any(isinstance(try_to_load_from_cache(repo, f), str) for f in filenames)


def _hub_cache() -> str:
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


class _OpenClipTables:
    """open_clip's model names and pretrained-weights table. Importing open_clip pulls in
    transformers and timm (8 s of CPU on the dev VM), so unless it is loaded already its
    table module is read alone, under a private package name."""

    def __init__(self):
        if "open_clip" in sys.modules:
            import open_clip
            self.pretrained, self._models = open_clip, set(open_clip.list_models())
            return
        spec = importlib.util.find_spec("open_clip")
        if spec is None or not spec.submodule_search_locations:
            raise InputError("open_clip is not installed (pip install open_clip_torch)")
        folder = Path(list(spec.submodule_search_locations)[0])
        try:
            shadow = types.ModuleType("_tinv_open_clip_tables")
            shadow.__path__ = [str(folder)]
            sys.modules.setdefault(shadow.__name__, shadow)
            self.pretrained = importlib.import_module(f"{shadow.__name__}.pretrained")
        except Exception:  # noqa: BLE001 - another open_clip layout: ask the package itself
            import open_clip
            self.pretrained = open_clip
        self._models = {p.stem for p in (folder / "model_configs").glob("*.json")}

    def known_model(self, name: str) -> bool:
        return name in self._models

    def get_pretrained_cfg(self, name: str, tag: str) -> dict:
        return self.pretrained.get_pretrained_cfg(name, tag)

    def list_pretrained_tags_by_model(self, name: str) -> list[str]:
        return self.pretrained.list_pretrained_tags_by_model(name)


_TABLES: _OpenClipTables | None = None


def _open_clip_tables() -> _OpenClipTables:
    global _TABLES
    if _TABLES is None:
        _TABLES = _OpenClipTables()
    return _TABLES


# ----------------------------------------------------------------------------- each piece
def model_problem(m: Mapping[str, Any]) -> str | None:
    path = model_path(m)
    if path.startswith("tiny:"):
        return None
    folder = Path(path).expanduser()
    if not m.get("path"):       # the toy world's shipped weights
        if not (folder / "model_index.json").is_file():
            return (f"the toy world's model weights are missing from {str(folder)!r}: regenerate them "
                    "with python -m tinv.tools.pretrain --out runs/toyworld --seed 0 --ship")
        return None
    if folder.is_dir():
        if not (folder / "model_index.json").is_file():
            return (f"model.path={path!r} is not a diffusers pipeline folder (no model_index.json); "
                    "give the folder that holds model_index.json, unet/, vae/, ...")
        return None
    if not HUB_ID.match(path):
        return (f"model.path={path!r} does not exist; give a local diffusers pipeline folder "
                "(the one with model_index.json)")
    if _cached(path, "model_index.json") or hub_reachable():
        return None
    name = m.get("name") or "model"
    return (f"model {name!r}: the hub id {path!r} is not in the Hugging Face cache ({_hub_cache()}) and the "
            f"hub ({_endpoint()}) is unreachable; use a mirror that can be reached (HF_ENDPOINT=https://<mirror> "
            f"before the command), or download it where the hub can be reached (hf download {path} "
            f"--local-dir /models/{name}), copy that folder here and pass model.path=/models/{name}")


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def clip_problem(cfg: Mapping[str, Any]) -> str | None:
    m, clip = cfg["model"], cfg["eval"]["clip"]
    if m.get("evaluator") == "toyworld":
        from tinv.toyworld.evaluator import WEIGHTS_FILE
        if not Path(WEIGHTS_FILE).is_file():
            return (f"the toy world's CLIP evaluator is missing ({str(WEIGHTS_FILE)!r}): regenerate it with "
                    "python -m tinv.tools.pretrain --out runs/toyworld --seed 0 --ship")
        return None
    name, pretrained = str(clip["model"]), clip.get("pretrained")
    if name == TINY_CLIP:
        return None
    oc = _open_clip_tables()
    if name.startswith("hf-hub:"):
        repo = name[len("hf-hub:"):]
        if _cached(repo, *OPEN_CLIP_FILES) or hub_reachable():
            return None
        return (f"the CLIP evaluator {name} is not in the local cache and the hub is unreachable; get it "
                f"elsewhere (hf download {repo}) and pass eval.clip.model=<its architecture> "
                "eval.clip.pretrained=/path/to/open_clip_model.safetensors")
    if not oc.known_model(name):
        return None     # not a weights question: open_clip names the unknown model when it loads
    if not pretrained:
        return None
    if _looks_like_file(pretrained):
        return None if Path(str(pretrained)).expanduser().is_file() else \
            f"eval.clip.pretrained={pretrained!r} does not exist; give an open_clip checkpoint file"
    source = oc.get_pretrained_cfg(name, str(pretrained))
    if not source:
        tags = oc.list_pretrained_tags_by_model(name)
        return f"eval.clip.pretrained={pretrained!r} is not a tag of open_clip's {name}; its tags: {tags}"
    # "org/model/" (default file name) or "org/model/file", as open_clip reads it
    repo, filename = os.path.split(source["hf_hub"]) if source.get("hf_hub") else ("", "")
    if repo and _cached(repo, *(filter(None, [filename, *OPEN_CLIP_FILES]))):
        return None
    if hub_reachable():
        return None
    # A file loaded by path skips the tag's settings; OpenAI's weights need QuickGELU.
    model = f"{name}-quickgelu" if source.get("quick_gelu") and not name.endswith("-quickgelu") else name
    where = f"hf download {repo} open_clip_model.safetensors" if repo else source.get("url", "")
    return (f"the CLIP evaluator {name}/{pretrained} is not in the local cache and the hub is unreachable; "
            f"get its weights elsewhere ({where}) and pass eval.clip.model={model} "
            "eval.clip.pretrained=/path/to/open_clip_model.safetensors")


def dino_problem(cfg: Mapping[str, Any]) -> str | None:
    if not cfg["model"].get("dino"):
        return None
    d = cfg["eval"]["dino"]
    name, pretrained = str(d["model"]), d.get("pretrained")
    if not pretrained:
        return None
    if _looks_like_file(pretrained):
        return None if Path(str(pretrained)).expanduser().is_file() else \
            f"eval.dino.pretrained={pretrained!r} does not exist; give the timm weights file of {name}"
    # timm hosts its pretrained weights as timm/<model name>.<tag>; importing timm to ask
    # would cost seconds on the path that only has to say what is missing.
    repo = name if "/" in name else f"timm/{name}"
    if _cached(repo, "model.safetensors", "pytorch_model.bin"):
        return None
    if hub_reachable():
        return None
    return (f"DINO {name} is not in the local cache and the hub is unreachable; get its weights elsewhere "
            f"(hf download {repo} model.safetensors) and pass eval.dino.pretrained=/path/to/model.safetensors "
            "(or model.dino=false to skip reconstruction_dino)")


def oracle_problem(cfg: Mapping[str, Any]) -> str | None:
    if not cfg["model"].get("oracle"):
        return None
    from tinv.toyworld import WEIGHTS_DIR
    f = Path(WEIGHTS_DIR) / "oracle" / "oracle.safetensors"
    if not f.is_file():
        return (f"the toy world's attribute oracle is missing ({str(f)!r}): regenerate it with "
                "python -m tinv.tools.pretrain --out runs/toyworld --seed 0 --ship (or model.oracle=false)")
    return None


def _looks_like_file(value: Any) -> bool:
    s = str(value)
    return isinstance(value, str) and ("/" in s or os.sep in s or s.endswith((".pt", ".pth", ".bin", ".safetensors")))


def check(cfg: Mapping[str, Any]) -> None:
    """Raise one InputError naming every weight the job needs and cannot get."""
    problems = [p for p in (model_problem(cfg["model"]), clip_problem(cfg), dino_problem(cfg),
                            oracle_problem(cfg)) if p]
    if problems:
        numbered = problems[0] if len(problems) == 1 else \
            " ".join(f"({i}) {p};" for i, p in enumerate(problems, 1)).rstrip(";")
        raise InputError(f"missing weights, nothing was run: {numbered} (see {DOCS})")
