"""The launchers of `hydra/launcher=slurm|local|packed` (conf/hydra/launcher/).

Hydra only instantiates launcher classes defined under the `hydra_plugins` package, so
they are declared here; what they add to hydra-submitit-launcher's lives in tinv.launch.cluster,
what `packed` adds to Hydra's basic launcher in tinv.launch.packing.
Imported by Hydra's plugin scan in every Hydra process: keep it light (no torch).
"""
import functools
import logging
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from tinv.launch.cluster import TinvLauncherMixin, check_pack, refuse
from tinv.launch.packing import check_one_batch

log = logging.getLogger(__name__)


class SlurmLauncher(TinvLauncherMixin, submitit_launcher.SlurmLauncher):
    """submitit_slurm plus the dirty-tree guard and packing."""

    guard_dirty_tree = True


class LocalLauncher(TinvLauncherMixin, submitit_launcher.LocalLauncher):
    """submitit_local (processes on this machine) plus packing."""


class PackedLauncher(BasicLauncher):
    """Hydra's basic launcher with the inversions of up to `pack` compatible learning jobs
    done together through one model (tinv.launch.packing; `one_batch`: in one UNet batch);
    each job then samples, scores and writes its own row. The units (packed groups, lone
    jobs) run in `workers` local processes (tinv.launch.workers; 1: one after another in
    this process)."""

    def __init__(self, pack: int = 8, workers: Any = 1, one_batch: Any = False) -> None:
        super().__init__()
        from tinv.launch.workers import check_workers
        bad = []
        for name, check, value in (("pack", check_pack, pack), ("workers", check_workers, workers),
                                   ("one_batch", check_one_batch, one_batch)):
            try:
                setattr(self, name, check(value))
            except (TypeError, ValueError) as e:
                bad.append(str(e))
        if bad:
            refuse("bad launcher settings: " + "; ".join(bad))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        from hydra.core.utils import configure_log, filter_overrides, run_job, setup_globals

        from tinv.launch import packing, workers

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs, tasks = packing.resolve_tasks(self, job_overrides, initial_job_idx)
        units = packing.schedule(tasks, self.pack)
        n = workers.count(self.workers, len(units), tasks)
        log.info(f"Launching {len(configs)} jobs locally, inversions packed up to {self.pack} "
                 f"at a time: {sum(len(u) > 1 for u in units)} packed groups"
                 + (f", in {n} worker processes" if n > 1 else ""))

        def run_unit(unit: list[int]) -> dict[int, Any]:
            runs = {}
            with packing.packed_inversion([tasks[i] for i in unit], self.one_batch) as shares:
                # the jobs' task function (run.py's main) takes its share from `packed`
                task = functools.partial(self.task_function, packed=shares) if len(unit) > 1 else self.task_function
                for i in unit:
                    log.info(f"\t#{initial_job_idx + i} : {' '.join(filter_overrides(job_overrides[i]))}")
                    runs[i] = run_job(hydra_context=self.hydra_context, task_function=task,
                                      config=configs[i], job_dir_key="hydra.sweep.dir",
                                      job_subdir_key="hydra.sweep.subdir")
                    configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            return runs

        runs = workers.run(units, run_unit, n)
        return [runs[i] for i in range(len(configs))]
