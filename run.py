"""tinv: one Hydra job = invert (when the method learns) -> sample -> evaluate -> one result row.

    python run.py                                              # the default job (toy world)
    python run.py method=progressive concept=blue_heart
    python run.py -m method=progressive,regularized concept=all  # one job per pair
    python run.py -m +experiment=fig10                          # a preset sweep (experiments/)
    python run.py --help                                        # groups, options, examples

Rows land in <results_root>/<sweep>/<concept>-<method>-<job_id>/result.json; see
docs/harness.md for the groups, the job folder and the row schema.
"""
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parent
# Hydra finds the tinv plugins (concept=all, the `experiment` group) in hydra_plugins/ at
# the repository root; jobs that a launcher starts in new processes must find them too.
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

from hydra_plugins.tinv_hydra.tinv_hydra import expand_all  # noqa: E402

EXIT_BAD_INPUT = 2


EXIT_INTERRUPTED = 130
# Config groups a user picks on the command line, and where their options live.
GROUPS = {"model": REPO / "conf" / "model", "method": REPO / "conf" / "method",
          "concept": REPO / "conf" / "concept", "eval": REPO / "conf" / "eval",
          "logger": REPO / "conf" / "logger", "experiment": REPO / "experiments"}


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig, packed=None) -> dict:
    """packed: a packing launcher's shares of the sweep's packed inversion (tinv.launch.packing)."""
    from hydra.core.hydra_config import HydraConfig

    from tinv.harness.job import InputError, Running, run_job
    from tinv.harness.logs import quiet_third_party
    quiet_third_party()
    choices = {k: v for k, v in HydraConfig.get().runtime.choices.items()
               if "/" not in k and v is not None}   # top-level groups only
    start = _now()
    running = Running()     # the job in progress, for the Ctrl-C line
    try:
        row = run_job(cfg, choices, running, packed)
        _point_to_row(HydraConfig.get().runtime.output_dir, row, start)
        return row
    except InputError as e:
        # one clear line instead of a traceback; nothing was written for this job
        print(f"error: {e}", file=sys.stderr)
        _drop_logs(Path(HydraConfig.get().runtime.output_dir))
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print(running.interrupted(), file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


POINTER = "tinv_job.json"   # in Hydra's job folder: which row this job is (collect.py, the sweeper)


def _now() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _point_to_row(hydra_dir: str, row: dict, start: str) -> None:
    """Hydra's job folder (logs) and the row's folder (named by content) are apart; this
    small file joins them, and says whether the job found its row done already."""
    import json
    ended = str((row.get("provenance") or {}).get("end") or "")
    note = {"job_id": row.get("job_id"), "job_dir": row.get("folder"), "status": row.get("status"),
            "done_already": bool(ended) and ended < start}
    path = Path(hydra_dir) / POINTER
    tmp = path.with_name(f".{POINTER}.tmp")
    tmp.write_text(json.dumps(note))
    os.replace(tmp, path)


def _drop_logs(hydra_dir: Path) -> None:
    """A run that made no job leaves no log folder: Hydra's (<sweep>/_hydra/<time>), then
    _hydra/ and the sweep folder themselves if that emptied them."""
    import logging
    import shutil
    logging.shutdown()          # Hydra's file handler holds <time>/run.log open
    shutil.rmtree(hydra_dir, ignore_errors=True)
    for parent in list(hydra_dir.parents)[:2]:   # _hydra/ (or multirun-<time>/), then the sweep
        try:
            parent.rmdir()      # only when empty
        except OSError:
            break


def _argv(argv: list[str]) -> list[str]:
    """`concept=all` (`objects`, `styles`) is a sweep over built-in concepts: it needs -m."""
    fans = [a for a in argv if expand_all(a) != a]
    if fans and not {"-m", "--multirun"} & set(argv):
        print(f"error: {fans[0]} runs one job per built-in concept; add -m "
              f"(python run.py -m ... {fans[0]})", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    # Hydra composes the command line before the sweeper sees it, so the rewrite happens here
    # (the tinv sweeper does the same for hydra.sweeper.params in experiment presets).
    argv = [expand_all(a) for a in argv]
    from tinv.core.errors import InputError
    from tinv.harness.overrides import check
    try:
        check(argv, REPO / "conf", GROUPS)    # Hydra's own errors, as one line each
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    return argv


if __name__ == "__main__":
    sys.argv[1:] = _argv(sys.argv[1:])
    main()
