"""Sweeps on SLURM: the launchers behind `hydra/launcher=slurm|local`, and a job's SLURM provenance.

The launchers are hydra-submitit-launcher's, with two additions:

* a dirty-tree guard (SLURM only): jobs recompose their config from the checkout when
  they start, so a file edited while jobs wait in the queue silently changes what runs.
  A sweep from a tree with uncommitted changes is refused unless
  `hydra.launcher.allow_dirty=true`.
* packing: `hydra.launcher.pack=K` runs K Hydra jobs in one SLURM task, so one large GPU
  holds several (method, concept) pairs at once: side by side, one process each, or with
  `hydra.launcher.pack_mode=batch` in one process with their inversions through one model
  (each job's UNet passes in its own batch, so rows equal the lone job's bit for bit;
  `hydra.launcher.one_batch=true`: in one UNet batch, faster, equal to float error).

Preemption and time limits need no glue here: submitit catches the signal, the launcher's
`checkpoint()` resubmits the same job, and the job resumes from the inversion checkpoint
in its content-addressed job folder (or returns its finished row at once).
"""
from __future__ import annotations

import concurrent.futures
import copy
import functools
import logging
import multiprocessing
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import cloudpickle

from tinv.launch.packing import check_pack
from tinv.harness.results import slurm_provenance  # noqa: F401  (a job's SLURM identity; tests import it here)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ALLOW_DIRTY_OVERRIDE = "hydra.launcher.allow_dirty=true"


class DirtyTreeError(RuntimeError):
    """A SLURM sweep was submitted from a checkout with uncommitted changes."""


# --- dirty-tree guard ------------------------------------------------------------------

def _git(folder: str | Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def uncommitted_changes(checkout: str | Path) -> list[str] | None:
    """`git status --porcelain` lines of `checkout` (untracked files included, ignored ones
    not); None when it is not in a git checkout or git is missing."""
    out = _git(checkout, "status", "--porcelain", "--untracked-files=normal")
    return None if out is None else [line for line in out.splitlines() if line.strip()]


def check_clean_tree(allow_dirty: bool = False, folders: Sequence[str | Path] = (REPO_ROOT,)) -> None:
    """Refuse to submit from a dirty checkout (see the module docstring for why).

    `folders`: the code and the config a queued job will read (the tinv checkout and the
    primary config folder). Raises DirtyTreeError naming the changed files and the
    override; logs a warning and returns when `allow_dirty`. A folder outside any git
    checkout (an installed package) passes: there is no tree to drift.
    """
    # One check per checkout: the code and the config usually share one.
    checkouts = [(_git(f, "rev-parse", "--show-toplevel") or "").strip() for f in folders]
    for folder in dict.fromkeys(c for c in checkouts if c):
        changes = uncommitted_changes(folder)
        if not changes:
            continue
        if allow_dirty:
            log.warning("submitting from a dirty tree (%s: %d changed paths) because allow_dirty is set",
                        folder, len(changes))
            continue
        shown = ", ".join(c[3:] if len(c) > 3 else c for c in changes[:5])
        more = f" and {len(changes) - 5} more" if len(changes) > 5 else ""
        raise DirtyTreeError(
            f"refusing to submit a SLURM sweep: the checkout {folder} has uncommitted changes "
            f"({shown}{more}); queued jobs read the config and code when they start, so later edits "
            f"would change what runs: commit (or stash) first, or pass {ALLOW_DIRTY_OVERRIDE}")


def primary_config_dir(config: Any) -> str | None:
    """The folder of the app's own config (hydra.runtime.config_sources, provider 'main')."""
    for source in config.hydra.runtime.get("config_sources", []):
        if source.provider == "main" and source.schema == "file":
            return source.path
    return None


# --- packing ---------------------------------------------------------------------------
PACK_MODES = ("processes", "batch")


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """Consecutive groups of `size` (the last may be shorter)."""
    size = check_pack(size)
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _ignore_preemption_signals() -> None:
    # The pack's parent process owns checkpoint-and-requeue; a child dying on the same
    # signal first would turn a preemption into a failed job.
    for sig in (signal.SIGTERM, signal.SIGUSR2, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def _run_pickled(blob: bytes) -> bytes:
    """Worker side of a pack: run one Hydra job in this fresh process."""
    launcher, args = cloudpickle.loads(blob)
    return cloudpickle.dumps(launcher(*args))


class PackedJobs:
    """One SLURM task running several Hydra jobs: one process each (`pack_mode=processes`),
    or, given their resolved configs (`pack_mode=batch`), one after another in this process
    with their inversions done together through one model (tinv.launch.packing; `one_batch`:
    in one UNet batch).

    Picklable and checkpointable like the launcher itself: on preemption or timeout
    submitit requeues the whole pack, and each job resumes (or returns its row); a batch
    pack resumes its shared inversion from the group's checkpoint.
    """

    def __init__(self, launcher: Any, job_args: list[tuple], tasks: list[dict] | None = None,
                 one_batch: bool = False):
        self.launcher, self.job_args, self.tasks, self.one_batch = launcher, job_args, tasks, one_batch

    def __call__(self) -> list[Any]:
        if self.tasks is not None:
            from tinv.launch import packing
            with packing.packed_inversion(self.tasks, self.one_batch) as shares:
                # a copy of the launcher whose task function (run.py's main) gets the shares
                launcher = copy.copy(self.launcher)
                launcher.task_function = functools.partial(self.launcher.task_function, packed=shares)
                return [launcher(*args) for args in self.job_args]
        # cloudpickle: the task function lives in run.py's __main__, which plain pickle
        # (what multiprocessing uses) cannot send to a spawned process.
        blobs = [cloudpickle.dumps((self.launcher, args)) for args in self.job_args]
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(len(blobs), mp_context=ctx,
                                                    initializer=_ignore_preemption_signals) as pool:
            return [cloudpickle.loads(r) for r in pool.map(_run_pickled, blobs)]

    def checkpoint(self) -> Any:
        import submitit  # lazy, as in the launcher: keeps Hydra's plugin scan fast

        return submitit.helpers.DelayedSubmission(PackedJobs(self.launcher, self.job_args, self.tasks,
                                                             self.one_batch))


# --- the launchers ---------------------------------------------------------------------

class LauncherSettingsError(ValueError):
    """A launcher setting that cannot work; the message names each bad key."""


def refuse(message: str) -> None:
    """Stop the sweep before anything exists: one `error:` line, exit code 2.

    SystemExit rather than an exception: Hydra prints any exception raised while it sets
    up a launcher with a traceback, and the point is one line the user can act on."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_REFUSED)


EXIT_REFUSED = 2
TINV_KEYS = ("allow_dirty", "pack", "pack_mode", "one_batch", "retries")
# submitit keys that count things: None (not passed) or an int of at least this much
_COUNTS = {"timeout_min": 1, "nodes": 1, "tasks_per_node": 1, "array_parallelism": 1, "cpus_per_task": 1,
           "gpus_per_node": 0, "mem_gb": 0, "signal_delay_s": 0, "max_num_timeout": 0, "cpus_per_gpu": 1,
           "gpus_per_task": 0}


def check_launcher_settings(executor: str, params: Mapping[str, Any], pack: Any = 1,
                            pack_mode: Any = "processes", retries: Any = 0, allow_dirty: Any = False,
                            one_batch: Any = False) -> None:
    """Every bad `hydra.launcher.*` value at once, before the sweep folder exists."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

    # the preset's keys, plus any other parameter submitit's executor takes (e.g. srun_args)
    known = set(vars(SlurmQueueConf() if executor == "slurm" else LocalQueueConf())) - {"_target_"}
    known |= (submitit.SlurmExecutor if executor == "slurm" else submitit.LocalExecutor)._valid_parameters()
    bad = [f"unknown key hydra.launcher.{k} (known: {', '.join(sorted(known | set(TINV_KEYS)))})"
           for k in params if k not in known]
    for key, least in _COUNTS.items():
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            bad.append(f"hydra.launcher.{key}={value!r} (an integer >= {least})")
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        bad.append(f"hydra.launcher.pack={pack!r} (an integer >= 1)")
    if pack_mode not in PACK_MODES:
        bad.append(f"hydra.launcher.pack_mode={pack_mode!r} (one of {', '.join(PACK_MODES)})")
    if not isinstance(one_batch, bool):
        bad.append(f"hydra.launcher.one_batch={one_batch!r} (true or false)")
    elif one_batch and pack_mode != "batch":
        bad.append(f"hydra.launcher.one_batch=true needs hydra.launcher.pack_mode=batch (got {pack_mode!r})")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        bad.append(f"hydra.launcher.retries={retries!r} (an integer >= 0: how often a failed task is resubmitted)")
    if not isinstance(allow_dirty, bool):
        bad.append(f"hydra.launcher.allow_dirty={allow_dirty!r} (true or false)")
    if bad:
        raise LauncherSettingsError("bad launcher settings: " + "; ".join(bad))


class TinvLauncherMixin:
    """What tinv adds to a submitit launcher (the classes are in hydra_plugins/tinv_cluster,
    where Hydra requires launchers to live). Takes tinv's own keys out of the launcher
    config before submitit sees them; refuses bad settings and (SLURM) a dirty checkout
    before the sweep folder exists; waits for every task, retries failed ones
    (`retries`), and ends with one summary (tinv.launch.sweep_watch)."""

    guard_dirty_tree = False

    def __init__(self, allow_dirty: bool = False, pack: int = 1, pack_mode: str = "processes",
                 retries: int = 0, one_batch: bool = False, **params: Any) -> None:
        try:
            check_launcher_settings(self._EXECUTOR, params, pack, pack_mode, retries, allow_dirty, one_batch)
        except LauncherSettingsError as e:
            refuse(str(e))
        super().__init__(**params)
        self.allow_dirty, self.pack, self.pack_mode = bool(allow_dirty), check_pack(pack), str(pack_mode)
        self.retries, self.one_batch = int(retries), bool(one_batch)

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        # Hydra sets the launcher up before the sweeper makes the sweep folder: refusing
        # here leaves nothing behind.
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if self.guard_dirty_tree:
            config_dir = primary_config_dir(config)
            try:
                check_clean_tree(self.allow_dirty, ([config_dir] if config_dir else []) + [REPO_ROOT])
            except DirtyTreeError as e:
                refuse(str(e))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides

        from tinv.launch import sweep_watch

        executor = self._executor()
        state = Singleton.get_state()
        job_args = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_args.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", state))
        if self.pack == 1:
            units = [[i] for i in range(len(job_args))]
            calls = [(self, job_args[i]) for i in range(len(job_args))]
        elif self.pack_mode == "batch":
            from tinv.launch import packing
            tasks = packing.resolve_tasks(self, job_overrides, initial_job_idx)[1]
            units = packing.schedule(tasks, self.pack)
            calls = [(PackedJobs(self, [job_args[i] for i in u], [tasks[i] for i in u], self.one_batch), ())
                     for u in units]
        else:
            units = chunks(range(len(job_args)), self.pack)
            calls = [(PackedJobs(self, [job_args[i] for i in u]), ()) for u in units]
        if self.pack > 1:
            log.info(f"{len(job_args)} jobs packed up to {self.pack} per task ({self.pack_mode}) "
                     f"into {len(units)} tasks")

        def submit(which: list[int]) -> list[Any]:
            with executor.batch():
                return [executor.submit(calls[u][0], *calls[u][1]) for u in which]

        outcomes = sweep_watch.watch(submit, units, job_overrides, initial_job_idx, self.retries)
        commands = sweep_watch.resubmit_commands(
            outcomes, list(self.config.hydra.overrides.hydra), _script(),
            sweeper_params=bool(self.config.hydra.sweeper.get("params")))
        print(sweep_watch.summary(outcomes, commands, self.retries), flush=True)
        if any(o.status != sweep_watch.OK for o in outcomes):
            # after the summary, not a traceback of the first failure
            raise SystemExit(sweep_watch.EXIT_JOBS_FAILED)
        return [o.value for o in outcomes]

    def _executor(self) -> Any:
        """The executor the base launcher would build (same folder, resources, timeouts)."""
        import submitit
        from omegaconf import OmegaConf
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        params = dict(self.params)
        folder = params.pop("submitit_folder")
        init = {f"{self._EXECUTOR}_max_num_timeout": params.pop("max_num_timeout")} \
            if "max_num_timeout" in params else {}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=folder, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        return executor


def _script() -> str:
    """How the user started the sweep (`run.py` when run from its folder), for the rerun command."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("run.py")
    try:
        return str(argv0.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(argv0)
