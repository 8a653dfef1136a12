"""Helpers for the harness tests: run `python run.py ...` in a subprocess, read rows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def toy_weights_ready() -> bool:
    try:
        from tinv.toyworld import MODEL_DIR
        from tinv.toyworld.evaluator import WEIGHTS_FILE
        from tinv.toyworld.oracle import WEIGHTS_DIR
    except ImportError:
        return False
    return ((Path(MODEL_DIR) / "model_index.json").exists() and Path(WEIGHTS_FILE).exists()
            and (Path(WEIGHTS_DIR) / "oracle.safetensors").exists())


# The toy world is the harness's default model; until its shipped weights exist the
# end-to-end tests run the same code path on a tiny random Stable Diffusion + tiny CLIP.
TOY = toy_weights_ready()
MODEL = (["model=toyworld"] if TOY else
         ["model=tiny_sd", "eval.clip.model=tinv-tiny-clip", "eval.clip.pretrained=null",
          "model.dino=false"])
# fast eval, a few inversion steps, no tracker: seconds per job
FAST = MODEL + ["eval=fast", "eval.steps=2", "logger=none", "model.inversion.steps=3", "progress=false"]


def run_cli(args: list[str], runs: Path, tmp_home: Path | None = None, timeout: int = 900,
            env: dict[str, str | None] | None = None):
    """`python run.py ARGS` with results under `runs` and HOME in a temp folder; `env`
    sets (or, with None, removes) environment variables."""
    env = {**os.environ, "TINV_RUNS": str(runs), "HYDRA_FULL_ERROR": "0", **(env or {})}
    env = {k: v for k, v in env.items() if v is not None}
    if tmp_home is not None:
        env["HOME"] = str(tmp_home)
    return subprocess.run([sys.executable, str(REPO / "run.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def default_sigint() -> None:
    """Runs in a child between fork and exec. A shell starts a background job with SIGINT
    ignored, the ignore is inherited, and Python then installs no KeyboardInterrupt handler:
    a child meant to be Ctrl-C'd must get SIGINT's default back whatever the runner got."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(args: list[str], runs: Path, **popen) -> subprocess.Popen:
    """`python run.py ARGS` started, not awaited, with SIGINT as at a terminal (default_sigint)."""
    env = {**os.environ, "TINV_RUNS": str(runs)}
    return subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], cwd=REPO, env=env,
                            preexec_fn=default_sigint, **popen)


def catches_sigint(pid: int) -> bool:
    """Whether a live process has a handler for SIGINT (Linux /proc; True elsewhere)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    caught = int(next(x for x in status.splitlines() if x.startswith("SigCgt:")).split()[1], 16)
    return bool(caught >> (signal.SIGINT - 1) & 1)


def rows(runs: Path, sweep: str = "default") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((runs / sweep).glob("*/result.json"))]


def sweep_name(proc: subprocess.CompletedProcess) -> str:
    """The folder a -m sweep says it wrote to (the sweeper's closing "rows in ..." line)."""
    import re
    return Path(re.search(r"^rows in (.+)$", proc.stderr, re.M).group(1)).name


@pytest.fixture
def runs(tmp_path) -> Path:
    return tmp_path / "runs"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def job_folders(runs: Path, sweep: str = "default") -> list[Path]:
    """Job folders under the sweep (Hydra's own _hydra logs are not one)."""
    folder = runs / sweep
    return [p for p in folder.iterdir() if p.is_dir() and p.name != "_hydra"] if folder.is_dir() else []


def one_error(res, runs: Path) -> str:
    """The one `error:` line of a run refused at once: exit 2, no traceback, no job, no row."""
    assert res.returncode == 2, res.stderr[-3000:]
    [line] = error_lines(res.stderr)
    assert "Traceback" not in res.stderr
    assert not job_folders(runs) and not list(runs.rglob("result.json"))
    return line


@pytest.fixture
def identity_encoder(monkeypatch):
    """CLIP replaced by the identity: an image's embedding is its flattened pixels, every text
    embeds to ones (so a metric's arithmetic can be checked by hand)."""
    import numpy as np

    from tinv.metrics import encoders

    class Identity:
        def images(self, x):
            return np.asarray(x, dtype=float).reshape(len(x), -1)

        def texts(self, texts):
            return np.ones((len(texts), 3))

    monkeypatch.setattr(encoders, "cached", lambda *a, **k: Identity())
