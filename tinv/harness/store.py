"""The job store and the sweeps' views of it.

A job lives where its content says, not where the sweep that asked for it says:
`<results_root>/jobs/<concept>-<method>-<job_id>/` (tinv.harness.results.job_folder). Two sweeps
that name the same job (fig10 and lr_sweep both run single-word on every concept) find
the same folder, the same lock and the same row, so the job is computed once.

A sweep's folder `<results_root>/<sweep>/` is a view: one relative symlink per job,
`<name> -> ../jobs/<name>`, made when the job's folder is made (so a running job shows
in its sweep, and a cluster test can watch its checkpoint there) or when the job is
found done. Anything that reads `<sweep>/*/result.json` (analysis/collect.py, the report,
the sweep summary, a person with `ls`) reads the view as it read the old layout, and a
runs folder copied whole (`cp -a`, `rsync -a`) keeps its views, the links being relative.

Old runs folders (before the store) hold real job folders inside the sweep folder: they
are read as they are, and a job that has its folder there keeps it (`legacy_folder`,
used by tinv.harness.plan.job_location): a finished row there is done, an interrupted job
resumes from its checkpoint there, a failed one runs again there.
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

log = logging.getLogger(__name__)


def view_path(results_root: str | os.PathLike, sweep: str, folder: Path) -> Path:
    """Where the job in store folder `folder` shows in the sweep's folder."""
    return Path(results_root) / str(sweep) / Path(folder).name


def link(results_root: str | os.PathLike, sweep: str, folder: Path) -> Path | None:
    """Show the job in store folder `folder` in the sweep's folder (idempotent; safe when
    several processes of one sweep link at once). Returns the view's path, or None where
    the sweep folder is the store itself (`sweep=jobs`)."""
    folder = Path(folder)
    view = view_path(results_root, sweep, folder)
    if os.path.abspath(view.parent) == os.path.abspath(folder.parent):
        return None
    target = os.path.relpath(folder, view.parent)
    view.parent.mkdir(parents=True, exist_ok=True)
    if view.is_symlink():
        if os.readlink(view) == target:
            return view
        # a link made under another spelling of the store (an absolute path, a moved root):
        # replaced by an atomic rename, so no reader sees the view without the job
        tmp = view.with_name(f".{view.name}.{uuid.uuid4().hex[:8]}.link")
        os.symlink(target, tmp, target_is_directory=True)
        os.replace(tmp, view)
        return view
    try:
        os.symlink(target, view, target_is_directory=True)
    except FileExistsError:
        # another process linked it meanwhile, or an old runs folder holds the job's own
        # folder here: either way the view shows the job
        pass
    except OSError as e:
        # a filesystem without links must not fail the job: its row is in the store
        log.warning("cannot link %s -> %s (%s): the job is in the store; collect %s instead of %s",
                    view, target, e, folder.parent.parent, view.parent)
        return None
    return view


def legacy_folder(results_root: str | os.PathLike, sweep: str, folder: Path) -> Path | None:
    """The job's folder in an old runs folder (a real folder, not a link, in the sweep's
    folder), if any."""
    old = view_path(results_root, sweep, folder)
    return old if old.is_dir() and not old.is_symlink() else None
