"""Hydra plugins for tinv: `concept=all` in sweeps, and experiments/ as the group `experiment`.

Hydra discovers these because `hydra_plugins` is a namespace package (no __init__.py at
its top) and the repository root is on sys.path when `python run.py` runs (run.py also
puts it on PYTHONPATH, so launcher jobs in new processes find it too).
This module is imported by Hydra's plugin scan in every Hydra process: keep it light.
"""

import fnmatch
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult
from hydra.plugins.search_path_plugin import SearchPathPlugin

from tinv.harness.identity import NON_IDENTITY_KEYS

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
EXPERIMENT_GROUP = "experiment"

# Concept options that are not built-in concepts: they need a path from the user.
NOT_BUILT_IN = ("folder", "dreambench*")
CONCEPT_DIR = REPO_ROOT / "conf" / "concept"


def _glob_without(names) -> str:
    return "glob(*,exclude=[" + ",".join((*NOT_BUILT_IN, *names)) + "])"


def _kinds() -> dict:
    """{built-in concept: its config's `kind:`} (a line read, not a YAML parse: this module
    loads in every Hydra process)."""
    kinds = {}
    for path in sorted(CONCEPT_DIR.glob("*.yaml")):
        if any(fnmatch.fnmatch(path.stem, pattern) for pattern in NOT_BUILT_IN):
            continue
        found = re.search(r"^kind:\s*(\w+)", path.read_text(), re.M)
        kinds[path.stem] = found.group(1) if found else None
    return kinds


ALL_CONCEPTS = _glob_without(())
# `concept=objects` / `concept=styles`: every built-in concept of one kind, as a glob that
# leaves the other kind out (so a new concept file joins its kind's sweeps by itself).
_KIND = _kinds()
CONCEPT_SETS = {"all": ALL_CONCEPTS,
                "objects": _glob_without(n for n, k in _KIND.items() if k != "object"),
                "styles": _glob_without(n for n, k in _KIND.items() if k != "style")}


def concept_names(value: str) -> List[str]:
    """The concept options a sweep value names (`all`, `objects`, `red_star,blue_heart`,
    `glob(...)`), resolved as Hydra's sweeper resolves them against conf/concept/."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    override = OverridesParser.create().parse_override(expand_all(f"concept={value}"))
    options = sorted(p.stem for p in CONCEPT_DIR.glob("*.yaml"))
    if isinstance(override.value(), Glob):
        return list(override.value().filter(options))
    return list(override.sweep_string_iterator()) if override.is_sweep_override() else [str(override.value())]


def expand_all(override: str) -> str:
    """`concept=all|objects|styles` -> Hydra's glob over those built-in concepts; anything
    else unchanged."""
    key, sep, value = override.partition("=")
    if sep and key.lstrip("+~") == "concept" and value.strip() in CONCEPT_SETS:
        return f"{key}={CONCEPT_SETS[value.strip()]}"
    return override


@dataclass
class TinvSweeperConf:
    _target_: str = "hydra_plugins.tinv_hydra.tinv_hydra.TinvSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Any] = None


ConfigStore.instance().store(group="hydra/sweeper", name="tinv", node=TinvSweeperConf,
                             provider="tinv")


class TinvSweeper(BasicSweeper):
    """Hydra's BasicSweeper, with `concept=all` meaning every built-in concept.

    A `conf/concept/all.yaml` cannot do this: a config option is one job, and the fan-out
    has to happen where the sweep is expanded. Works on the command line and in
    `hydra.sweeper.params` of an experiment preset alike.
    """

    def sweep(self, arguments: List[str]) -> Any:
        self.params = {k: expand_all(f"{k}={v}").partition("=")[2]
                       for k, v in (self.params or {}).items()}
        arguments = list(arguments)
        name = own_sweep_name(self.config, arguments, self.params)
        if name:
            # The sweep folder is named before Hydra writes multirun.yaml into it; each job
            # gets the same name through its overrides.
            from omegaconf import open_dict
            with open_dict(self.config):
                self.config.sweep = name
            arguments.append(f"sweep='{name}'")
        returns: List[Any] = []
        launch = self.launcher.launch

        def launch_and_keep(batch, initial_job_idx):
            out = launch(batch, initial_job_idx=initial_job_idx)
            returns.extend(out)
            return out
        self.launcher.launch = launch_and_keep
        # A sweep whose jobs failed ends in the launcher's own summary (tinv.launch.sweep_watch: which
        # failed, why, and the command that reruns them) and exits there, or (basic and packed
        # launchers) in Hydra re-raising the first job's error; this summary is for the sweep
        # that got through, so it is printed only then. The sweep's own W&B run is logged
        # either way: its table marks the failed jobs.
        t0 = time.perf_counter()
        folder = os.path.join(str(self.config.results_root), str(self.config.sweep))
        logger = _logger(self.config)
        try:
            out = super().sweep([expand_all(a) for a in arguments])
        except SystemExit as e:
            from tinv.launch.sweep_watch import EXIT_JOBS_FAILED
            if e.code == EXIT_JOBS_FAILED:      # every task ended, some not ok
                sweep_findings(folder, logger, [], time.perf_counter() - t0)
            raise
        except Exception:   # a job's error, which Hydra raises after the batch ran
            sweep_findings(folder, logger, returns, time.perf_counter() - t0)
            raise
        wall_s = time.perf_counter() - t0
        print(sweep_summary(returns, len(returns), str(self.config.results_root), str(self.config.sweep),
                            wall_s=wall_s, next_steps=not _tracked(logger)), file=sys.stderr)
        sweep_findings(folder, logger, returns, wall_s)
        return out


def _logger(config: Any) -> dict:
    """The sweep's logger config (the command's `logger=`; a swept logger is not one)."""
    from omegaconf import OmegaConf
    try:
        return dict(OmegaConf.to_container(config.logger, resolve=True))
    except Exception:   # noqa: BLE001 - no logger group in this config: nothing to log
        return {}


def _tracked(logger: dict) -> bool:
    from tinv.harness.wandb_log import enabled
    return enabled(logger)


def sweep_findings(folder: str, logger: dict, returns: List[Any], wall_s: float) -> None:
    """With a W&B logger: the sweep's table, report and claims, and its own W&B run
    (analysis/sweep_run.py), then where they are. A failure here loses no job: it is said
    in one line, with the command that does it again."""
    if not _tracked(logger) or not os.path.isdir(folder):
        return
    _, _, done, ran = tally(returns)
    try:
        from analysis import sweep_run   # the repository's analysis/ (run.py puts its root on sys.path)
        lines = sweep_run.log_sweep(folder, logger, ran, done, wall_s)
    except Exception as e:  # noqa: BLE001
        print(f"warning: the sweep's W&B run was not written ({type(e).__name__}: {e}); "
              f"`python analysis/sweep_run.py {folder}` writes it", file=sys.stderr)
        return
    print("\n".join(lines), file=sys.stderr)


# Overrides that stay out of a sweep's name: how a job runs, not what it computes
# (tinv.harness.identity.NON_IDENTITY_KEYS; `sweep` and `hydra.*` are handled on their own), and the
# device, which a sweep moved to a GPU keeps its name through.
HOUSEKEEPING = (*(k for k in NON_IDENTITY_KEYS if k not in ("sweep", "hydra")), "device")
# The config's `sweep` when nothing names one (conf/config.yaml).
DEFAULT_SWEEP = "default"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def own_sweep_name(config: Any, arguments: List[str], params: dict) -> Optional[str]:
    """A folder name for a sweep that names none: the experiment preset's name, else its
    overrides ("method-progressive+regularized__concept-all__eval-fast": no `=` or `,`,
    which a shell or Hydra's override grammar would read). None when the command line,
    the preset or the sweeper's params set `sweep`."""
    if str(config.get("sweep")) != DEFAULT_SWEEP or "sweep" in params:
        return None
    overrides = [a for a in list(arguments) + [f"{k}={v}" for k, v in params.items()]
                 if not a.lstrip("+~").startswith(("hydra.", "hydra/"))
                 and a.lstrip("+~").partition("=")[0].partition(".")[0] not in HOUSEKEEPING]
    keys = {a.lstrip("+~").partition("=")[0]: a.partition("=")[2] for a in overrides}
    if "sweep" in keys:
        return None
    if "experiment" in keys:
        return _UNSAFE.sub("-", keys["experiment"])
    parts = []
    for a in overrides:
        key, _, value = a.lstrip("+~").partition("=")
        value = "+".join(_UNSAFE.sub("-", v.strip()) for v in _readable(value).split(","))
        parts.append(f"{_UNSAFE.sub('-', key.replace('/', '-'))}-{value}")
    text = "__".join(parts) or "multirun"
    if len(text) > 80:  # long sweeps: a readable head and a hash that keeps names apart
        text = text[:71] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return text


def _readable(value: str) -> str:
    return next((name for name, glob in CONCEPT_SETS.items() if value.strip() == glob), value.strip())


def sweep_summary(returns: List[Any], n: int, results_root: str, sweep: str,
                  wall_s: Optional[float] = None, next_steps: bool = True) -> str:
    """What a person wants at the end of a sweep: how it went, where the time went (per
    setup: tinv.harness.time_report), where the rows are, and what to run next (left out
    when the sweep's own W&B run does it: sweep_findings). Counts come from the jobs'
    returns and run.py's tinv_job.json."""
    from tinv.harness.time_report import table

    ok, failed, done, ran = tally(returns)
    folder = os.path.join(results_root, sweep)
    csv = os.path.join(folder, "results.csv")
    lines = [f"sweep {sweep}: {n} jobs: {ok} ok, {failed} failed, {done} done already",
             table(ran, done, wall_s),
             f"rows in {folder}"]
    if next_steps:
        lines += [
            "next:",
            f"  python analysis/collect.py {folder} -o {csv}",
            f"  python analysis/report.py {csv} -o {os.path.join(folder, 'report.html')}",
            f"  python analysis/claims.py {csv} -o {os.path.join(folder, 'claims.md')}",
            f"  python analysis/plot_tradeoff.py {csv} -o {os.path.join(folder, 'tradeoff.png')}",
        ]
    return "\n".join(lines)


def tally(returns: List[Any]) -> tuple:
    """(ok, failed, done already, rows of the jobs this sweep ran) from the jobs' returns."""
    ok = failed = done = 0
    ran = []        # rows of the jobs this sweep ran (failed ones too: their time was spent)
    for r in returns:
        status = getattr(getattr(r, "status", None), "name", "")
        if status != "COMPLETED":
            failed += 1
            continue
        row = getattr(r, "_return_value", None)
        if isinstance(row, dict) and row.get("status") not in (None, "ok"):
            failed += 1
            ran.append(row)
        elif _done_already(r):
            done += 1
        else:
            ok += 1
            if isinstance(row, dict):
                ran.append(row)
    return ok, failed, done, ran


def _done_already(job_return: Any) -> bool:
    try:
        out = job_return.hydra_cfg.hydra.runtime.output_dir
        with open(os.path.join(str(out), "tinv_job.json")) as f:
            return bool(json.load(f).get("done_already"))
    except (AttributeError, OSError, ValueError, TypeError):
        return False


class ExperimentsConfigSource(FileConfigSource):
    """The repository's experiments/ folder seen as the config group `experiment`.

    Presets live at the top of the repository (experiments/*.yaml, `# @package _global_`)
    rather than in conf/, yet `+experiment=fig10` must find them: this source answers
    for `experiment/<name>` and for nothing else.
    """

    @staticmethod
    def scheme() -> str:
        return "tinvexp"

    @staticmethod
    def _inner(config_path: str) -> Optional[str]:
        head, _, rest = config_path.strip("/").partition("/")
        return rest if head == EXPERIMENT_GROUP else None

    def load_config(self, config_path: str) -> ConfigResult:
        inner = self._inner(config_path)
        if not inner:
            raise ConfigLoadError(f"Config not found : {config_path}")
        return super().load_config(inner)

    def available(self) -> bool:
        return os.path.isdir(self.path)

    def is_group(self, config_path: str) -> bool:
        if config_path.strip("/") == "":
            return True
        inner = self._inner(config_path)
        return inner is not None and super().is_group(inner)

    def is_config(self, config_path: str) -> bool:
        inner = self._inner(config_path)
        return bool(inner) and super().is_config(inner)

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        if config_path.strip("/") == "":
            return [EXPERIMENT_GROUP] if results_filter in (None, ObjectType.GROUP) else []
        inner = self._inner(config_path)
        if inner is None or not super().is_group(inner):
            return []
        files: List[str] = []
        for name in os.listdir(os.path.join(self.path, inner)):
            self._list_add_result(files=files, file_path=f"{config_path.rstrip('/')}/{name}",
                                  file_name=name, results_filter=results_filter)
        return sorted(set(files))


class TinvSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if EXPERIMENTS_DIR.is_dir():
            search_path.append(provider="tinv-experiments",
                               path=f"{ExperimentsConfigSource.scheme()}://{EXPERIMENTS_DIR}")
