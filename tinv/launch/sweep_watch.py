"""Watching a submitted sweep to its end: every task waited for, failed ones retried, one summary.

Submitit's own `job.results()` raises on the first task that died (a SIGKILL, an
`scancel`, a node failure), which used to abort the sweep command while the later tasks
went on with nothing watching them and nothing said about which jobs finished. Here every
task is waited for, each Hydra job ends `ok`, `failed` (with a one-line reason) or
`cancelled`, failed tasks are resubmitted up to `retries` times (a job resumes from its
inversion checkpoint, or returns its finished row), and the sweep ends with one summary
and the command that reruns just the jobs that did not end ok.

Light on purpose (no torch, no tinv imports): the launchers import it in the submitting
process only.
"""
from __future__ import annotations

import logging
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

EXIT_JOBS_FAILED = 1

OK, FAILED, CANCELLED = "ok", "failed", "cancelled"


@dataclass
class Outcome:
    """How one Hydra job of the sweep ended."""
    idx: int                        # Hydra's job number (hydra.job.num)
    overrides: list[str]            # the job's own overrides, as Hydra passed them
    status: str = FAILED
    reason: str = ""                # one line; empty when ok
    task_id: str | None = None      # the SLURM job id of the task that ran it last
    folder: str | None = None       # the job folder, from its row (ok jobs)
    attempts: int = 0               # tasks submitted for it (1 + retries used)
    value: Any = field(default=None, repr=False)   # what the launcher returns (Hydra's JobReturn)


# --- one task's end ----------------------------------------------------------------------

_STATE = re.compile(r"\(state: ([A-Z_]+)")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)\b.*)$")


def failure_reason(message: str, stderr: str = "", exit_code: str | None = None,
                   scheduler: str = "SLURM") -> tuple[str, str]:
    """(status, one-line reason) of a task that produced no result.

    `message`: submitit's exception text (it names SLURM's state for tasks that never wrote
    a result); `stderr`: the task's error stream, where a job's own `error:` line or the
    last exception line says more than the state does; `exit_code`: sacct's ExitCode."""
    m = _STATE.search(message)
    state = m.group(1) if m else None
    if state == "CANCELLED":
        return CANCELLED, "cancelled (scancel, or by the cluster)"
    # progress bars rewrite their line with \r: each piece is a line of its own here
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", stderr or message) if ln.strip()]
    own = [ln for ln in lines if ln.startswith("error:")]
    exc = [ln for ln in lines if _EXCEPTION.match(ln)] if any("Traceback" in ln for ln in lines) else []
    where = f" ({scheduler} state {state}{f', exit code {exit_code}' if exit_code else ''})" if state else ""
    if own:
        detail = own[-1]
    elif exc:
        detail = exc[-1]
    elif state in ("OUT_OF_MEMORY", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"):
        detail = state.lower().replace("_", " ")
    else:
        detail = "killed: the task's processes ended without a Python error (SIGKILL, out of memory, a node failure)"
    return FAILED, _one_line(detail + where)


def _is_slurm(job: Any) -> bool:
    return "slurm" in type(job).__name__.lower()


def _sacct_exit_code(job: Any) -> str | None:
    if not _is_slurm(job):
        return None
    try:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", str(job.job_id), "-o", "ExitCode"],
                             capture_output=True, text=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _stderr_of(job: Any) -> str:
    try:
        return Path(job.paths.stderr).read_text(errors="replace")[-20000:]
    except (OSError, AttributeError):
        return ""


def job_return_outcome(ret: Any) -> tuple[str, str, str | None]:
    """(status, reason, folder) of a Hydra JobReturn (a job that ran to its end in Python)."""
    from hydra.core.utils import JobStatus

    if getattr(ret, "status", None) == JobStatus.COMPLETED:
        row = ret._return_value if isinstance(getattr(ret, "_return_value", None), dict) else {}
        return OK, "", row.get("folder")
    err = getattr(ret, "_return_value", None)
    reason = f"{type(err).__name__}: {err}" if isinstance(err, BaseException) else f"job status {ret.status}"
    return FAILED, _one_line(reason), None


def collect(job: Any) -> tuple[str, str, list[Any] | None]:
    """Wait for one submitted task; (status, reason, its JobReturns or None)."""
    try:
        value = job.results()[0]
    except Exception as e:  # noqa: BLE001 - submitit's UncompletedJobError / FailedJobError
        status, reason = failure_reason(str(e), _stderr_of(job), _sacct_exit_code(job),
                                        "SLURM" if _is_slurm(job) else "submitit")
        return status, reason, None
    return OK, "", value if isinstance(value, list) else [value]


# --- the sweep ---------------------------------------------------------------------------

def watch(submit: Callable[[list[int]], list[Any]], units: list[list[int]], job_overrides: Sequence[Sequence[str]],
          initial_job_idx: int, retries: int = 0) -> list[Outcome]:
    """Submit every unit (a task: one Hydra job, or a pack of them), wait for ALL of them,
    resubmit the units with a failed job up to `retries` times, and return each job's outcome.

    submit(unit_indices) -> submitit jobs, one per unit, in order (one array per call)."""
    outcomes = {i: Outcome(initial_job_idx + i, list(job_overrides[i])) for u in units for i in u}
    pending = list(range(len(units)))
    for attempt in range(retries + 1):
        jobs = submit(pending)
        try:
            for u, job in zip(pending, jobs):
                status, reason, values = collect(job)
                for k, i in enumerate(units[u]):
                    o = outcomes[i]
                    o.attempts += 1
                    o.task_id = str(job.job_id)
                    if values is None:
                        o.status, o.reason, o.folder, o.value = status, reason, None, None
                    else:
                        o.value = values[k]
                        o.status, o.reason, o.folder = job_return_outcome(values[k])
        except KeyboardInterrupt:
            waiting = [str(j.job_id) for j in jobs if not _done(j)]
            print(f"interrupted: stopped watching; {len(waiting)} task(s) still queued or running "
                  f"on the cluster ({', '.join(waiting[:8])}{' ...' if len(waiting) > 8 else ''}); "
                  f"`scancel {' '.join(sorted({w.split('_')[0] for w in waiting}))}` stops them",
                  file=sys.stderr)
            raise SystemExit(130) from None
        pending = [u for u in pending if any(outcomes[i].status == FAILED for i in units[u])]
        if not pending or attempt == retries:
            break
        names = ", ".join(f"#{outcomes[i].idx}" for u in pending for i in units[u])
        log.warning(f"retrying {len(pending)} failed task(s) ({names}): retry {attempt + 1} of {retries}; "
                    "each job resumes from its checkpoint or returns its finished row")
    return [outcomes[i] for i in sorted(outcomes)]


def _done(job: Any) -> bool:
    try:
        return bool(job.done())
    except Exception:  # noqa: BLE001
        return False


# --- the report --------------------------------------------------------------------------

def resubmit_commands(outcomes: list[Outcome], hydra_overrides: Sequence[str], script: str = "run.py",
                      sweeper_params: bool = False) -> list[str]:
    """Commands that run again just the jobs that did not end ok.

    Jobs whose overrides differ in one position only share one command (a comma list).
    The sweep folder is left to Hydra (a fresh one per submission; see docs/cluster.md),
    and a preset's own sweep (hydra.sweeper.params) is switched off so that only the
    named jobs run."""
    todo = [o for o in outcomes if o.status != OK]
    if not todo:
        return []
    keep = [h for h in hydra_overrides if not h.startswith(("hydra.sweep.dir=", "hydra.mode="))]
    if sweeper_params:
        keep.append("hydra.sweeper.params=null")
    groups: list[list[Outcome]] = []
    for o in todo:
        for g in groups:
            if _mergeable(g[0].overrides, o.overrides) and _varying(g + [o]) <= 1:
                g.append(o)
                break
        else:
            groups.append([o])
    cmds = []
    for g in groups:
        args = []
        for pos, item in enumerate(g[0].overrides):
            values = list(dict.fromkeys(_split(o.overrides[pos])[1] for o in g))
            key = _split(item)[0]
            args.append(f"{key}={','.join(values)}" if key is not None else item)
        cmds.append(" ".join(["python", script, "-m", *map(shlex.quote, keep), *map(shlex.quote, args)]))
    return cmds


def _split(item: str) -> tuple[str | None, str]:
    key, sep, value = item.partition("=")
    return (key, value) if sep else (None, item)


def _mergeable(a: Sequence[str], b: Sequence[str]) -> bool:
    return len(a) == len(b) and all(_split(x)[0] == _split(y)[0] for x, y in zip(a, b))


def _varying(group: list[Outcome]) -> int:
    return sum(len({o.overrides[p] for o in group}) > 1 for p in range(len(group[0].overrides)))


def summary(outcomes: list[Outcome], commands: list[str], retries: int = 0) -> str:
    """The one block printed at the end of a sweep."""
    counts = {s: sum(o.status == s for o in outcomes) for s in (OK, FAILED, CANCELLED)}
    retried = sum(o.attempts > 1 for o in outcomes)
    head = (f"sweep summary: {len(outcomes)} jobs: {counts[OK]} ok, {counts[FAILED]} failed, "
            f"{counts[CANCELLED]} cancelled" + (f" ({retried} retried, retries={retries})" if retried else ""))
    lines = [head]
    labels = _labels(outcomes)
    width = max(len(v) for v in labels.values())
    for o in outcomes:
        where = f"task {o.task_id}" if o.task_id else "not submitted"
        tail = o.folder if o.status == OK and o.folder else o.reason
        tries = f", {o.attempts} tasks" if o.attempts > 1 else ""
        lines.append(f"  {o.status:<9} {labels[o.idx]:<{width}}  ({where}{tries})  {tail}".rstrip())
    if commands:
        lines.append("rerun just the failed and cancelled jobs (each resumes from its checkpoint):")
        lines += [f"  {c}" for c in commands]
    return "\n".join(lines)


def _labels(outcomes: list[Outcome]) -> dict[int, str]:
    """"#3 concept=red_star method=two_word": each job by the overrides that vary in the sweep."""
    varying = set(range(max(len(o.overrides) for o in outcomes)))
    if len(outcomes) > 1 and len({len(o.overrides) for o in outcomes}) == 1:
        varying = {p for p in varying if len({o.overrides[p] for o in outcomes}) > 1}
    return {o.idx: " ".join([f"#{o.idx}"] + [x for p, x in enumerate(o.overrides) if p in varying])
            for o in outcomes}
