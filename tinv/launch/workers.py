"""A local sweep on every core: the packed launcher's units spread over worker processes.

On a CPU the toy model's ops are small, so two torch threads in one process buy less than
two processes of one thread each (docs/speed.md, "Both cores"). `hydra.launcher.workers`
processes each take the next unit of the sweep (a packed group, or one job) as they come
free, with `cpu_threads=auto` capped at their share of the cores. A job computes what it
computes alone: its rows are the same as from one process with one thread
(tests/harness/test_workers.py); the job store's locks keep two workers from computing one
inversion (tinv.harness.learned) and the caches are written atomically.

Workers are forked from the launcher, which has loaded no model and run no torch op yet, so
they inherit the resolved configs and the task function without pickling them. On CUDA
`auto` is one worker: the GPU is the shared resource there, and CUDA does not survive fork.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import Any, Callable, Sequence

from tinv.harness.loading import SHARE_ENV, usable_cores

AUTO_MAX = 4                   # more workers than this was never measured; memory grows with each

_RUN_UNIT: Callable[[list[int]], dict[int, Any]] | None = None   # set in the launcher, before fork


def check_workers(value: Any) -> int | str:
    """`hydra.launcher.workers`: "auto" or an int >= 1, else a ValueError naming it."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"hydra.launcher.workers={value!r} (auto, or an integer >= 1)")
    return value


def count(setting: int | str, units: int, tasks: Sequence[dict]) -> int:
    """How many processes run the sweep: never more than its units; `auto` = the usable cores
    (at most AUTO_MAX), or 1 when a job may run on CUDA."""
    if setting == "auto":
        if any(str(t.get("device", "auto")) != "cpu" for t in tasks) and _cuda_present():
            return 1
        setting = min(usable_cores(), AUTO_MAX)
    return max(1, min(int(setting), units))


def _cuda_present() -> bool:
    # NVML's count, not torch.cuda.is_available(): that one initializes CUDA in the launcher,
    # and a forked worker could not use it afterwards
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch
    return torch.cuda.is_available()


def _start(share: int) -> None:
    os.environ[SHARE_ENV] = str(share)


def _run(unit: list[int]) -> dict[int, Any]:
    assert _RUN_UNIT is not None, "tinv.launch.workers: the unit runner was not set before the fork"
    return _RUN_UNIT(unit)


def run(units: list[list[int]], run_unit: Callable[[list[int]], dict[int, Any]], workers: int) -> dict[int, Any]:
    """Every unit through `run_unit` (job index -> its return), in `workers` forked processes
    taking units in order as they come free; in this process when `workers` is 1."""
    global _RUN_UNIT
    if workers <= 1:
        return {i: r for unit in units for i, r in run_unit(unit).items()}
    _RUN_UNIT = run_unit
    share = max(1, usable_cores() // workers)
    out: dict[int, Any] = {}
    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                                    initializer=_start, initargs=(share,)) as pool:
            for done in pool.map(_run, units):
                out.update(done)
    finally:
        _RUN_UNIT = None
    return out
