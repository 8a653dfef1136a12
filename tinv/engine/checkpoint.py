"""Checkpoint files (written through tinv.core.atomic) and the process-wide RNG states they carry."""
from __future__ import annotations

import os
import random
from typing import Any

from pathlib import Path

import numpy as np
import torch



# Where an inversion checkpoints: `<ckpt_dir>/inversion_checkpoint.pt`; a job's ckpt_dir is
# `<job folder>/checkpoint`, a packed group's `<results_root>/jobs/_packed/<hash>` (tinv.launch.packing).
INVERSION_FILE = "inversion_checkpoint.pt"


def inversion_file(ckpt_dir: str | os.PathLike) -> Path:
    return Path(ckpt_dir) / INVERSION_FILE


def job_dir(job_folder: str | os.PathLike) -> Path:
    """The folder a job's own inversion checkpoints to."""
    return Path(job_folder) / "checkpoint"


def global_rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_global_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def load(path: str | os.PathLike) -> dict[str, Any]:
    try:
        # Our own files: they hold numpy/python RNG states, which need full unpickling.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - re-raised naming the file
        raise ValueError(f"checkpoint {str(path)!r} cannot be read ({e}); delete it to start over") from e
