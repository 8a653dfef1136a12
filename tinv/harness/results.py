"""Result rows: job identity, the job folder, atomic JSON, provenance.

A job's identity is a hash of its resolved config minus the keys that say where and how
it runs rather than what it computes (tinv.harness.identity has the whole policy). So the job folder is a pure
function of the experiment: a rerun finds its row and does nothing, a requeued job finds
its checkpoint and resumes, and two sweeps naming the same job share its one folder in
the job store (<results_root>/jobs/), so the job is computed once (tinv.harness.store keeps
each sweep's view of it).
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from tinv.harness.identity import digest

SCHEMA = 1
ROW_NAME = "result.json"
PACKAGES = ("tinv", "torch", "diffusers", "transformers", "open_clip_torch", "timm", "hydra-core",
            "omegaconf", "wandb", "numpy")


def identity(config: dict) -> str:
    """12 hex digits naming `config` (tinv.harness.identity.digest)."""
    return digest(config)


# The job store: every job's folder, whichever sweep asked for it (a sweep's folder only
# links to its jobs there). Not a sweep: `sweep=jobs` makes the store itself the view.
STORE = "jobs"


def job_folder(results_root: str | os.PathLike, concept: str, method: str, job_id: str) -> Path:
    """<results_root>/jobs/<concept>-<method>-<job_id>: readable, unique by the hash, and
    the same for every sweep that names the job."""
    return Path(results_root) / STORE / f"{concept}-{method}-{job_id}"


def read_row(folder: str | os.PathLike) -> dict | None:
    """The job's row, or None when there is none (or it is unreadable: the job runs again)."""
    try:
        return json.loads((Path(folder) / ROW_NAME).read_text())
    except (OSError, ValueError):
        return None


def git_state(repo: Path | None = None) -> dict:
    """{'sha': ..., 'dirty': bool} of the code's git checkout; nulls outside one."""
    repo = repo or Path(__file__).resolve().parents[2]
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=20, check=True).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        # untracked source files count (as in tinv.launch.cluster); run folders are git-ignored
        dirty = bool(git("status", "--porcelain", "--untracked-files=normal"))
        return {"sha": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def versions() -> dict:
    import tinv
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["tinv"] = out["tinv"] or tinv.__version__   # a checkout that was never pip-installed
    return out


def device_name(device: str) -> str:
    import torch
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name where Linux says it (platform.processor() gives only the ISA there):
    rows from two CPUs may differ in the last float bits (docs/speed.md, "Exact or one batch")."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.partition(':')[2].strip()}, {platform.machine()}"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slurm_provenance(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """SLURM identity of the running job, for the result row's `provenance`.

    `slurm_job_id` is the array form `<array job>_<task>` when the job is an array task
    (what squeue/sacct show), else the plain job id; None outside SLURM.
    `slurm_attempt` counts runs of this job: 1 for the first, 2 after one requeue
    (preemption or timeout), ... (SLURM_RESTART_COUNT + 1); None outside SLURM.
    """
    env = os.environ if env is None else env
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        return {"slurm_job_id": None, "slurm_attempt": None}
    array_job, array_task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        job_id = f"{array_job}_{array_task}"
    return {"slurm_job_id": job_id, "slurm_attempt": int(env.get("SLURM_RESTART_COUNT") or 0) + 1}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def provenance(device: str, start: str, weights: str | None = None) -> dict:
    return {**git_state(), "versions": versions(), "device": device_name(device), "weights": weights,
            "host": socket.gethostname(), **slurm_provenance(), "start": start, "end": now()}
