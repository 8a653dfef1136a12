"""A job's attempts: every run of it, in `attempts.json` in its folder, so that a resumed
job says so (a log line) and its row lists every attempt with its own timings.

An attempt's entry is written when it starts, refreshed by the lock's heartbeat (the
stages it finished, `alive_s`) and closed with its status. An attempt that was killed
keeps its last refresh: how long it ran and what it finished. `resumed_from_step` is
the inversion step of the checkpoint the attempt found.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from tinv.core.atomic import write_json
from tinv.harness.results import now, slurm_provenance

log = logging.getLogger(__name__)

FILE = "attempts.json"


def checkpoint_step(folder: Path) -> int | None:
    """The inversion step the job's checkpoint holds (None: no checkpoint)."""
    from tinv.engine import checkpoint
    path = checkpoint.inversion_file(checkpoint.job_dir(folder))
    if not path.is_file():
        return None
    try:
        return int(min(s["step"] for s in checkpoint.load(path)["sets"]))
    except (ValueError, KeyError, TypeError):
        return None


def read(folder: Path) -> list[dict]:
    try:
        data = json.loads((Path(folder) / FILE).read_text())
        return data if isinstance(data, list) else []
    except (OSError, ValueError):
        return []


class Attempts:
    """This attempt, appended to the ones before it."""

    def __init__(self, folder: Path, job_id: str, timings: dict, steps: int | None):
        self.folder, self.timings, self.t0 = Path(folder), timings, time.perf_counter()
        self.all = read(folder)
        step = checkpoint_step(folder)
        self.mine = {"attempt": len(self.all) + 1, "start": now(), "end": None, "status": "running",
                     "host": socket.gethostname(), "pid": os.getpid(), **slurm_provenance(),
                     "resumed_from_step": step, "alive_s": 0.0, "timings": timings}
        self.all.append(self.mine)
        if len(self.all) > 1 or step:
            before = self.all[-2] if len(self.all) > 1 else None
            was = (f"attempt {before['attempt']} started {before['start']} on {before['host']}, "
                   f"{before['status'] if before['status'] != 'running' else 'ended without a row'}"
                   if before else "no earlier attempt recorded")
            what = (f"resuming the inversion from its checkpoint at step {step}"
                    + (f" of {steps}" if steps else "") if step else "no inversion checkpoint: starting over")
            log.info("job %s: attempt %d (%s); %s", job_id, self.mine["attempt"], was, what)
        self.save()

    def save(self) -> None:
        self.mine["alive_s"] = round(time.perf_counter() - self.t0, 3)
        write_json(self.folder / FILE, self.all)

    def close(self, status: str) -> list[dict]:
        self.mine.update(status=status, end=now(), timings=dict(self.timings))
        self.save()
        return self.all
