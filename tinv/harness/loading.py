"""Model loading: the device, torch's CPU threads, the model's parts, and the fingerprint
of the weights a job runs on."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tinv.core.errors import InputError

if TYPE_CHECKING:
    import torch
# torch is imported where it is used: the cluster launcher imports this module (through
# tinv.launch.packing) during Hydra's plugin scan, which every `python run.py` pays for.


# A sweep worker's share of the cores (tinv.launch.workers sets it; "auto" threads stay under it)
SHARE_ENV = "TINV_CPU_SHARE"


# ----------------------------------------------------------------------------- model
def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def choose_device(device: str) -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _within_share(cores: int) -> int:
    """`cores`, at most a sweep worker's share of them (SHARE_ENV) when this process is one."""
    share = os.environ.get(SHARE_ENV)
    return min(cores, max(1, int(share))) if share else cores


def set_cpu_threads(setting, device: str) -> int:
    """Torch's CPU threads: an int, or "auto" = the cores no one else is using (>= 1).

    On a shared machine this matters more than anything else: the toy model's many small
    ops each end in a thread barrier, and with one of two cores busy elsewhere a 2-thread
    forward pass measured 2.5 s where 1 thread took 9 ms.
    """
    import torch
    if device.startswith("cuda") or setting in (None, "none"):
        return torch.get_num_threads()
    if setting == "auto":
        setting = _within_share(max(1, usable_cores() - int(os.getloadavg()[0] + 0.5)))
    torch.set_num_threads(int(setting))
    return int(setting)


def set_sample_streams(setting, device: str) -> int:
    """Sampling batches computed at once (tinv.engine.sampling.set_streams): an int, or
    "auto" = this process's cores (a sweep worker's share) over torch's threads, 1 on CUDA.

    Unlike torch's threads, streams never change a row (each batch is computed as alone),
    and Python threads that wait do not spin, so "auto" looks at the cores, not the load.
    """
    import torch

    from tinv.engine import sampling
    if device.startswith("cuda") or setting in (None, "none"):
        return sampling.set_streams(1)
    if setting == "auto":
        setting = max(1, _within_share(usable_cores()) // torch.get_num_threads())
    return sampling.set_streams(int(setting))


def _dtype(name: str, device: str) -> torch.dtype:
    import torch
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() \
            else torch.float32
    return getattr(torch, name)


def model_path(m: Mapping[str, Any]) -> str:
    """The folder or hub id to load: `path`; null is the shipped toy world, and
    "toyworld:<folder>" another pipeline folder shipped beside it (tinv/toyworld/weights/)."""
    path = m.get("path")
    if path and str(path).startswith("toyworld:"):
        from tinv.toyworld import WEIGHTS_DIR
        return str(WEIGHTS_DIR / str(path)[len("toyworld:"):])
    if path:
        return str(path)
    from tinv.toyworld import MODEL_DIR
    return str(MODEL_DIR)


def load_model(m: Mapping[str, Any], device: str):
    """Parts for the model config: a hub id / folder, or "tiny:sd" / "tiny:ldm" for tests."""
    from tinv.engine import models
    path = model_path(m)
    if path.startswith("tiny:"):
        build = {"sd": models.tiny_sd_parts, "ldm": models.tiny_ldm_parts}.get(path[5:])
        if build is None:
            raise InputError(f"model.path={path!r}: tiny models are tiny:sd and tiny:ldm")
        return build(device=device)
    try:
        return models.load_parts(path, family=m.get("family"), device=device,
                                 dtype=_dtype(m.get("dtype", "float32"), device))
    except ValueError as e:
        raise InputError(f"model {m.get('name')!r}: {e}") from e


_FINGERPRINTS: dict[str, str] = {}


def model_fingerprint(m: Mapping[str, Any]) -> str:
    """Names the weights a job runs on: a hub id as it is, a local folder by the sha256 of its
    weight and config files (so retrained toy weights never reuse old rows or samples, and a
    fresh clone of the same weights finds the same job ids). Hashed once per process."""
    path = model_path(m)
    folder = Path(path)
    if not folder.is_dir():
        return path
    files = sorted(f for f in folder.rglob("*") if f.suffix in (".safetensors", ".bin", ".json")
                   and f.name != "training.json")
    stamp = path + "|" + ";".join(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    if stamp not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes())
        _FINGERPRINTS[stamp] = "sha256:" + h.hexdigest()[:16]
    return _FINGERPRINTS[stamp]
