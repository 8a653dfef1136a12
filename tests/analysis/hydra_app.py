"""A stand-in for run.py: a real Hydra app whose jobs succeed, fail or stall on purpose,
so that collect.py meets the folders Hydra really writes (multirun.yaml, .hydra/).

    python tests/analysis/hydra_app.py -m +method=single_word,oom,crash,stall +concept=red_star \
        +rows=DIR hydra.sweep.dir=DIR/_hydra/multirun

Rows go to <rows>/<concept>-<method>/result.json, apart from Hydra's folders, as the
harness's conf/config.yaml does.
"""
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import hydra  # noqa: E402

from tests.analysis.conftest import make_row, write_row  # noqa: E402

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg) -> None:
    job = Path(cfg.rows) / f"{cfg.concept}-{cfg.method}"
    if cfg.method == "stall":  # killed before it wrote anything
        return
    if cfg.method == "crash":  # an exception the job logs and re-raises
        try:
            raise ValueError(f"concept folder {cfg.concept} has no images")
        except ValueError:
            log.exception("job failed")
            raise
    if cfg.method == "oom":  # the harness caught it and wrote a failed row
        write_row(job, make_row("oom", cfg.concept, status="failed"))
        return
    write_row(job, make_row(cfg.method, cfg.concept))


if __name__ == "__main__":
    main()
