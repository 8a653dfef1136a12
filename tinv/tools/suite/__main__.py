"""Run the suite's parts one after another, each in its own process under its own timeout,
and write OUT/suite.json + OUT/suite.md after every part (so a kill loses only what runs).

    python -m tinv.tools.suite [--quick] [--out DIR] [--parts a,b] [--timeout part=S] [--budget S]

The output folder holds at most six files, so that a GPU lease's $OUT (8 files) returns
all of them: suite.json, suite.md, suite.log (every part's output), bench.json,
profile.txt, details.tar.gz (the job rows, Hydra configs and part logs). The results
roots live in OUT/work while the suite runs and are packed into details.tar.gz after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from tinv.core.atomic import replacing, write_json, write_text
from tinv.tools.suite import COMMON, PARTS, PHYSICAL_LIMIT_S_PER_CONCEPT_STEP, SECTIONS, TARGETS, run_killable
from tinv.tools.suite.report import markdown

REPO = Path(__file__).resolve().parents[3]
# Seconds per part on a GPU, and the whole suite's: 8 minutes of a lease with room for the
# wheel install and the machine's own start. The quickstart grid runs last on what is left.
# quickstart's rows project its wall time when it is cut short: it gives the successors' 70 s
TIMEOUTS = {"bench": 240, "profile": 75, "harness": 100, "pretrain": 45, "successors": 70, "dryrun": 180,
            "quickstart": 170}
BUDGET_S = 540      # the device call's 600 s limit, less the wheel install and the parts' start
QUICK_TIMEOUTS = {p: 240 for p in PARTS}   # a busy 2-core CI machine
QUICK_BUDGET_S = 900
MIN_PART_S = 20                 # a part is not started with less than this left
PACKED_SUFFIXES = {".json", ".yaml", ".log", ".txt", ".csv"}
VERSIONS = ("torch", "diffusers", "transformers", "huggingface-hub", "hydra-core", "omegaconf",
            "open_clip_torch", "timm", "numpy")


class BadInput(ValueError):
    pass


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tinv.tools.suite", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU, tiny models, few steps (CI)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "runs/suite"),
                   help="output folder (default: $OUT if set, else runs/suite)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--timeout", action="append", default=[], metavar="PART=S",
                   help="seconds for one part (repeatable)")
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds for the whole suite (default {BUDGET_S}; --quick {QUICK_BUDGET_S})")
    p.add_argument("--keep-work", action="store_true", help="keep OUT/work (results roots) unpacked")
    a = p.parse_args(argv)
    a.parts = [x.strip() for x in a.parts.split(",") if x.strip()]
    unknown = [x for x in a.parts if x not in PARTS]
    if unknown or not a.parts:
        raise BadInput(f"--parts {','.join(unknown) or '(empty)'}: choose from {','.join(PARTS)}")
    a.timeouts = dict(QUICK_TIMEOUTS if a.quick else TIMEOUTS)
    for item in a.timeout:
        name, _, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if name not in PARTS or seconds <= 0:
            raise BadInput(f"--timeout {item!r}: give PART=SECONDS with PART in {','.join(PARTS)}")
        a.timeouts[name] = seconds
    a.budget = a.budget if a.budget is not None else (QUICK_BUDGET_S if a.quick else BUDGET_S)
    if a.budget <= 0:
        raise BadInput(f"--budget {a.budget}: give seconds > 0")
    return a


def machine() -> dict:
    """Where the suite ran, read without importing torch (no CUDA context in this process)."""
    gpu = None
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                            "--format=csv,noheader"], capture_output=True, text=True)
        gpu = q.stdout.strip().splitlines()[0] if q.returncode == 0 and q.stdout.strip() else None
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"host": platform.node(), "python": platform.python_version(),
            "cpus_available": len(os.sched_getaffinity(0)), "gpu": gpu,
            "load_avg_start": os.getloadavg()[0], "versions": versions}


def skeleton(a: argparse.Namespace, argv: list[str]) -> dict:
    suite = {"schema": 1, "quick": a.quick, "command": " ".join(["python -m tinv.tools.suite"] + argv),
             "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "finished": None,
             "wall_s": None, "budget_s": a.budget, "machine": machine(), "parts": list(PARTS)}
    for name in PARTS:
        suite[name] = {k: None for k in COMMON + SECTIONS[name]}
        suite[name].update(status="not run", reason="the suite stopped before this part")
    suite["targets"] = targets(suite)
    return suite


def targets(suite: dict) -> dict:
    """Issue 7's targets against the bench's ratios, judged only on the model they are for."""
    b = suite["bench"]
    if suite["quick"]:
        reason = "--quick: a tiny model on the CPU; the targets are for SD-1.5 at 512 px, bf16, on a GPU"
    elif b["status"] != "ok":
        reason = f"bench {b['status']}: {b['reason']}"
    elif b["model"] != "sd15-random" or b["device"] != "cuda":
        reason = f"bench ran {b['model']} on {b['device']}, not sd15-random on cuda"
    else:
        reason = None
    applies = reason is None
    out: dict = {"applies": applies, "reason": reason}
    for key, t in TARGETS.items():
        v = b[t["ratio"]]
        judge = applies and v is not None
        out[key] = {"what": t["what"], "target": t["target"], "goal": t["goal"], "measured": v,
                    "meets_target": v >= t["target"] if judge else None,
                    "meets_goal": v >= t["goal"] if judge else None}
    m = b["tinv_packed_s_per_concept_step"]
    out["physical_limit"] = {"limit_s_per_concept_step": PHYSICAL_LIMIT_S_PER_CONCEPT_STEP,
                             "measured_s_per_concept_step": m,
                             "limit_over_measured": PHYSICAL_LIMIT_S_PER_CONCEPT_STEP / m if applies and m else None}
    return out


def last_error(log: Path) -> str:
    """The line of a part's log that best says why it failed."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
    for ln in reversed(lines):
        if re.match(r"^([\w.]+(Error|Exception|Interrupt)\b|error:)", ln):
            return ln[:400]
    return (lines[-1][:400] if lines else "no output")


def run_part(name: str, a: argparse.Namespace, timeout: float, work: Path, env: dict) -> dict:
    """One part in its own process group; returns its section's values, status and reason."""
    result, log = work / "parts" / f"{name}.json", work / "logs" / f"{name}.log"
    result.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tinv.tools.suite.parts", name, "--result", str(result), "--out", str(a.out),
           "--work", str(work), "--timeout", str(timeout)] + (["--quick"] if a.quick else [])
    t0 = time.perf_counter()
    code = run_killable(cmd, log, timeout, cwd=REPO, env=env)
    out = {"wall_s": time.perf_counter() - t0, "timeout_s": timeout}
    data = json.loads(result.read_text()) if result.exists() else {}
    out.update({k: data.get(k) for k in SECTIONS[name]})   # a killed part may have left some
    if code is None:
        out.update(status="timeout", reason=f"killed at its {timeout:.0f} s limit"
                   + ("; the values are those it had written" if data else ""))
    elif code != 0 or not data:
        out.update(status="failed", reason=f"exit {code}: {last_error(log)}")
    else:
        out.update(status=data.get("status", "ok"), reason=data.get("reason"))
    with (a.out / "suite.log").open("a") as f:
        f.write(f"\n===== {name}: {out['status']} in {out['wall_s']:.1f} s =====\n")
        f.write(log.read_text(errors="replace") if log.exists() else "")
    return out


def write(suite: dict, out: Path) -> None:
    suite["targets"] = targets(suite)
    write_json(out / "suite.json", suite)
    write_text(out / "suite.md", markdown(suite))


def pack(work: Path, out: Path) -> None:
    """Rows, configs and logs of OUT/work into OUT/details.tar.gz; samples and weights stay out."""
    with replacing(out / "details.tar.gz") as tmp, tarfile.open(tmp, "w:gz") as tar:
        for f in sorted(work.rglob("*")):
            if f.is_file() and f.suffix in PACKED_SUFFIXES and f.stat().st_size < 4 * 2 ** 20:
                tar.add(f, arcname=str(f.relative_to(work)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        a = parse(argv)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    a.out = a.out.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    work = a.out / "work"
    shutil.rmtree(work, ignore_errors=True)   # an old results root would make every job "done already"
    for stale in ("suite.json", "suite.md", "suite.log", "bench.json", "profile.txt", "details.tar.gz"):
        (a.out / stale).unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    suite = skeleton(a, argv)
    write(suite, a.out)
    t0 = time.perf_counter()
    for name in PARTS:
        if name not in a.parts:
            suite[name].update(status="skipped", reason="not in --parts")
            continue
        left = a.budget - (time.perf_counter() - t0) - 5   # 5 s to write and pack at the end
        timeout = min(a.timeouts[name], left)
        if left < MIN_PART_S:
            suite[name].update(status="skipped", reason=f"the suite's {a.budget:.0f} s budget was spent")
            continue
        print(f"tinv.tools.suite: {name} (up to {timeout:.0f} s)", file=sys.stderr, flush=True)
        suite[name].update(run_part(name, a, timeout, work, env))
        print(f"tinv.tools.suite: {name} {suite[name]['status']} in {suite[name]['wall_s']:.1f} s"
              + (f": {suite[name]['reason']}" if suite[name]["reason"] else ""), file=sys.stderr, flush=True)
        write(suite, a.out)
    suite.update(finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 wall_s=time.perf_counter() - t0)
    suite["machine"]["load_avg_end"] = os.getloadavg()[0]
    if work.exists():
        pack(work, a.out)
        if not a.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    write(suite, a.out)
    print((a.out / "suite.md").read_text())
    print(f"wrote {a.out / 'suite.json'}", file=sys.stderr)
    return 0 if all(suite[p]["status"] == "ok" for p in a.parts) else 1


if __name__ == "__main__":
    sys.exit(main())
