"""The real SLURM the cluster tests submit to, and helpers to run sweeps through it.

Start one with `bash scripts/slurm/up.sh DIR` and `export SLURM_CONF=DIR/slurm.conf`
(.ci/run does both). Without it the SLURM tests skip, saying so; with
TINV_REQUIRE_SLURM=1 (CI) they fail instead.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UP = "bash scripts/slurm/up.sh DIR && export SLURM_CONF=DIR/slurm.conf"


def slurm_missing() -> str | None:
    """Why the test SLURM cannot be used, or None when it answers."""
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        return f"SLURM_CONF is not set; start the test SLURM with `{UP}`"
    if not Path(conf).is_file():
        return f"SLURM_CONF={conf} does not exist; start the test SLURM with `{UP}`"
    if not shutil.which("sbatch"):
        return "sbatch is not installed (apt-get install slurm-client slurmctld slurmd ...)"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                                timeout=20, env=job_env()).stdout.split()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed ({e}); is the test SLURM of {conf} up?"
    if not {"idle", "mix", "alloc"} & set(states):
        return f"the test SLURM of {conf} has no node that takes jobs (sinfo: {states})"
    return None


@pytest.fixture(scope="session")
def slurm() -> str:
    """SLURM_CONF of a live test cluster; skips (or fails under TINV_REQUIRE_SLURM=1)."""
    reason = slurm_missing()
    if reason:
        if os.environ.get("TINV_REQUIRE_SLURM") == "1":
            pytest.fail(f"TINV_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    return os.environ["SLURM_CONF"]


def job_env() -> dict[str, str]:
    """The environment to submit from: no inherited SLURM_* allocation variables (they
    break sbatch inside an allocation), SLURM_CONF kept, the checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_py(*overrides: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """`python run.py -m OVERRIDES` from the repository root, as a user types it."""
    proc = subprocess.run([sys.executable, "run.py", "-m", *overrides], cwd=REPO, env=job_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.py -m {' '.join(overrides)} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def start_run_py(*overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "run.py", "-m", *overrides], cwd=REPO, env=job_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def rows(results_root: Path, sweep: str) -> dict[str, dict]:
    """{job folder name: row} of one sweep."""
    return {p.parent.name: json.loads(p.read_text())
            for p in sorted((results_root / sweep).glob("*/result.json"))}


def submitit_tasks(sweep_dir: Path) -> list[Path]:
    """The submitit folders (one per SLURM job or array task) of one Hydra sweep; an
    array's own folder holds only its sbatch script."""
    return sorted(p for p in (sweep_dir / ".submitit").iterdir() if any(p.glob("*_submitted.pkl")))


def task_log(task_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(task_dir.glob("*_log.*")))


def sacct_times(job_ids: list[str]) -> dict[str, dict[str, float]]:
    """{job id: {"wait_s": start - submit, "run_s": end - start}} of finished jobs."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o",
                          "JobID,Submit,Start,End,State"], capture_output=True, text=True,
                         env=job_env(), timeout=30, check=True).stdout
    parse = lambda s: time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%S"))  # noqa: E731
    times = {}
    for line in out.splitlines():
        jid, submit, start, end, state = line.split("|")
        if state == "COMPLETED":
            times[jid] = {"wait_s": parse(start) - parse(submit), "run_s": parse(end) - parse(start)}
    return times


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def committed_conf(tmp_path: Path) -> Path:
    """A copy of conf/ in a checkout of its own with everything committed: edit a file in it
    to make the tree a sweep refuses as dirty."""
    conf = tmp_path / "checkout" / "conf"
    shutil.copytree(REPO / "conf", conf)
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "conf"]):
        subprocess.run(["git", "-C", str(conf.parent), *args], check=True, capture_output=True)
    return conf


def first_step_after_last_start(log: str, total: int) -> int:
    """The inversion step the LAST attempt started at: the job's own line ("resuming the
    inversion from its checkpoint at step k of total"), or a tqdm bar's `k/total` (a task
    log is no terminal, so the job logs plain progress lines, not a bar)."""
    last = log.split("Starting with JobEnvironment")[-1]
    m = (re.search(rf"resuming the inversion from its checkpoint at step (\d+) of {total}\b", last)
         or re.search(rf"invert[^\n\r|]*\|[^|]*\|\s*(\d+)/{total}\b", last))
    if m is None:
        if re.search(rf"invert[^\n]*: step \d+/{total}\b", last):
            return 0    # progress from the start, no resume line: it started over
        raise AssertionError(f"no inversion progress in the last attempt's log:\n{last[-2000:]}")
    return int(m.group(1))
