"""W&B for one job (and one sweep): offline by default, every file inside the job folder,
always closed.

`tracking(...)` is a context manager yielding a Tracker; with `logger=none` the Tracker
does nothing. The run is finished in `finally`, with a non-zero exit code when the job
raised, so a crashed job never leaves a dangling run (or a background process).
A job's run carries its setup (`method`, `concept`, `model`, `eval`) as top-level config
keys and as tags, so W&B groups and filters runs by them; the resolved config is under
`cfg`. The sweep's own run (analysis/sweep_run.py) uses the same `tracking`.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator


class Tracker:
    """What a job reports; a no-op unless a W&B run is attached."""

    def __init__(self, run=None):
        self.run = run

    def log_losses(self, losses: list[float], name: str = "inversion/loss") -> None:
        if self.run:
            for step, loss in enumerate(losses):
                self.run.log({name: loss, "inversion/step": step})

    def log_images(self, grids: dict[str, Path]) -> None:
        if self.run:
            import wandb
            self.run.log({f"samples/{k}": wandb.Image(str(p), caption=k) for k, p in grids.items()})

    def log_table(self, rows: list[dict], name: str = "per_prompt") -> None:
        if self.run and rows:
            import wandb
            columns = list(dict.fromkeys(k for r in rows for k in r))
            self.run.log({name: wandb.Table(columns=columns,
                                            data=[[_cell(r.get(c)) for c in columns] for r in rows])})

    def summary(self, values: dict[str, Any]) -> None:
        if self.run:
            self.run.summary.update(values)


# What a job is, for W&B's "group by" and tag filters: top-level config keys and tags.
SETUP_KEYS = ("method", "concept", "model", "eval")


def job_setup(choices: dict, concept: str) -> dict[str, str]:
    """The job's setup as W&B config keys: Hydra's choices, with the concept's resolved
    name (a `folder` or `dreambench` choice would pool different concepts)."""
    return {"method": str(choices.get("method")), "concept": str(concept),
            "model": str(choices.get("model")), "eval": str(choices.get("eval"))}


def setup_tags(setup: dict[str, str]) -> list[str]:
    """`method:single_word`, `concept:red_star`, ...: W&B tags hold at most 64 characters."""
    return [f"{k}:{setup[k]}"[:64] for k in SETUP_KEYS if setup.get(k) not in (None, "None", "")]


def enabled(logger: dict) -> bool:
    return logger.get("name") == "wandb" and logger.get("mode") != "disabled"


def offline_dir(run) -> str | None:
    """The folder `wandb sync` uploads for an offline run (None online)."""
    return str(run.sync_dir) if run is not None and run.offline else None


def _cell(v):
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


def _keep_inside(folder: Path, offline: bool) -> None:
    """Point every W&B folder at the job folder: nothing lands in the home folder."""
    os.environ["WANDB_DIR"] = str(folder)
    os.environ["WANDB_CACHE_DIR"] = str(folder / "wandb-cache")
    os.environ["WANDB_DATA_DIR"] = str(folder / "wandb-data")
    if offline:  # online runs keep the user's login settings
        os.environ["WANDB_CONFIG_DIR"] = str(folder / "wandb-config")


@contextlib.contextmanager
def tracking(logger: dict, folder: Path, name: str, group: str, job_type: str,
             tags: list[str], config: dict) -> Iterator[Tracker]:
    if not enabled(logger):
        yield Tracker()
        return
    import wandb
    folder.mkdir(parents=True, exist_ok=True)
    offline = logger.get("mode", "offline") == "offline"
    _keep_inside(folder, offline)
    run = wandb.init(project=logger.get("project", "tinv"), entity=logger.get("entity"),
                     mode=logger.get("mode", "offline"), dir=str(folder), name=name, group=group,
                     job_type=job_type, tags=[t for t in tags if t], config=config,
                     settings=wandb.Settings(silent=True, console="off"), reinit="create_new")
    exit_code = 1
    try:
        yield Tracker(run)
        exit_code = 0
    finally:
        run.finish(exit_code=exit_code)
