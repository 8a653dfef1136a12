"""W&B for one job: offline by default, every file inside the job folder, always closed.

`tracking(...)` is a context manager yielding a Tracker; with `logger=none` the Tracker
does nothing. The run is finished in `finally`, with a non-zero exit code when the job
raised, so a crashed job never leaves a dangling run (or a background process).
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
    if logger.get("name") != "wandb" or logger.get("mode") == "disabled":
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
