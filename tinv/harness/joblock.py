"""One computation per job: a lock file beside the job folder.

`<results_root>/jobs/.<job folder name>.lock` (beside the job's folder in the job store,
so every sweep that names the job meets the same lock; tinv.harness.learned locks its stored
inversions the same way) is created with O_EXCL (atomic on local disks and NFS) and
holds the owner's host, pid, start time and SLURM job id. While the owner runs, a
thread touches the file every HEARTBEAT_S. A second process on the same job
logs where the job runs and waits for the lock; the caller then finds the owner's row.
A lock is stale, and is broken, when its owner is gone: on the same host its pid no
longer exists; from any host its heartbeat is older than STALE_S; or it belongs to an
earlier attempt of this very SLURM job (SLURM runs one attempt at a time). Breaking is
itself exclusive (a `.break` file), so two waiters never both break and both run.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from tinv.harness.results import now, slurm_provenance

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_S = 300.0          # ten missed heartbeats: the owner's host is gone or cut off
POLL_S = 1.0
_TOKEN = uuid.uuid4().hex      # marks this process's locks


def lock_path(folder: Path) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        return True
    return True


def stale_reason(path: Path, owner: dict | None) -> str | None:
    """Why the lock at `path` no longer holds, or None while its owner runs."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    if owner is None:        # unreadable: a writer died between create and write
        return "unreadable lock file" if age > POLL_S * 5 else None
    if owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1))):
        return f"its owner (pid {owner.get('pid')}) is gone"
    mine = slurm_provenance()
    if mine["slurm_job_id"] and owner.get("slurm_job_id") == mine["slurm_job_id"] \
            and (owner.get("slurm_attempt") or 0) < mine["slurm_attempt"]:
        return f"it belongs to an earlier attempt of SLURM job {mine['slurm_job_id']}"
    if age > STALE_S:
        return f"its heartbeat stopped {age:.0f} s ago"
    return None


def held_elsewhere(folder: Path) -> bool:
    """Is the lock of `folder` held right now by a live owner other than this process? (A
    packed inversion leaves such a job out: its owner computes it, and the job, when its
    turn comes, waits for that owner and finds the result.)"""
    path = lock_path(folder)
    owner = _read(path)
    return path.exists() and owner is not None and owner.get("token") != _TOKEN \
        and stale_reason(path, owner) is None


def _try_create(path: Path, info: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    return True


def _break(path: Path, owner: dict | None, why: str) -> None:
    """Remove the stale lock, unless another waiter is doing it or it changed meanwhile."""
    guard = path.with_name(path.name + ".break")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        with contextlib.suppress(FileNotFoundError):   # a breaker that died mid-break
            if time.time() - guard.stat().st_mtime > STALE_S:
                guard.unlink()
        return
    os.close(fd)
    try:
        if _read(path) == owner:
            log.warning("breaking the lock %s: %s", path, why)
            path.unlink(missing_ok=True)
    finally:
        guard.unlink(missing_ok=True)


@contextlib.contextmanager
def hold(folder: Path, job_id: str, on_beat: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the job's lock for the block; yields True if another process held it first
    (the caller should then look for its row before computing)."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"host": socket.gethostname(), "pid": os.getpid(), "start": now(), "job_id": job_id,
            **slurm_provenance(), "token": _TOKEN}
    waited, said = False, None
    while not _try_create(path, info):
        owner = _read(path)
        why = stale_reason(path, owner)
        if why:
            _break(path, owner, why)
            continue
        if owner != said:
            where = f"{owner.get('host')} pid {owner.get('pid')} since {owner.get('start')}" if owner else "?"
            slurm = f" (SLURM job {owner['slurm_job_id']})" if owner and owner.get("slurm_job_id") else ""
            log.info("job %s is running in another process: %s%s; waiting for it (lock %s)",
                     job_id, where, slurm, path)
            said = owner
        waited = True
        time.sleep(POLL_S)
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(path)
            if on_beat:
                with contextlib.suppress(Exception):
                    on_beat()

    thread = threading.Thread(target=beat, name=f"tinv-lock-{job_id}", daemon=True)
    thread.start()
    try:
        yield waited
    finally:
        stop.set()
        thread.join(timeout=5)
        if _read(path) == info:       # still ours (not broken and retaken meanwhile)
            path.unlink(missing_ok=True)
