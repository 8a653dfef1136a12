"""Hydra plugins for tinv: `concept=all` in sweeps, and experiments/ as the group `experiment`.

Hydra discovers these because `hydra_plugins` is a namespace package (no __init__.py at
its top) and the repository root is on sys.path when `python run.py` runs (run.py also
puts it on PYTHONPATH, so launcher jobs in new processes find it too).
This module is imported by Hydra's plugin scan in every Hydra process: keep it light.
"""

import os
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

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
EXPERIMENT_GROUP = "experiment"

# Concept options that are not built-in concepts: they need a path from the user.
NOT_BUILT_IN = ("folder", "dreambench*")
ALL_CONCEPTS = "glob(*,exclude=[" + ",".join(NOT_BUILT_IN) + "])"


def expand_all(override: str) -> str:
    """`concept=all` -> Hydra's glob over every built-in concept; anything else unchanged."""
    key, sep, value = override.partition("=")
    if sep and key.lstrip("+~") == "concept" and value.strip() == "all":
        return f"{key}={ALL_CONCEPTS}"
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
        return super().sweep([expand_all(a) for a in arguments])


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
