"""A finished sweep as one W&B run of its own, beside its jobs' runs in the sweep's group.

    python analysis/sweep_run.py runs/<sweep> [--mode offline|online] [--project tinv]

The tinv sweeper (hydra_plugins/tinv_hydra) calls `log_sweep` at the end of every sweep
whose logger is W&B: local, packed or SLURM, with failed jobs, and after a rerun that
computed nothing. The command above does the same for a sweep folder that has none (one
run with `logger=none`, say). It
  1. collects the sweep's rows (collect.py) into <sweep>/results.csv (+ results.jobs.json);
  2. writes the report (report.py) to <sweep>/report.html and the claims (claims.py) to
     <sweep>/claims.md, each figure drawn and each claim decided once for both;
  3. logs one run, named `sweep:<sweep>`, job type `sweep`, in the sweep's group:
       rows                        a Table, one line per job: config columns and metrics;
                                   `status` marks failed jobs, and jobs without a row
                                   (failed in their logs, or missing) are lines too
       claims/table, claims/text   the claims as a Table and as claims.md's text
       figures/...                 the report's figures (forest plot, trade-offs, ...)
       time/rows, time/this_sweep  where the time went per setup (tinv/harness/time_report.py):
                                   computing the sweep's rows, and this command's jobs
       summary                     job counts, verdict counts (verdicts/<verdict>), the report's and table's paths
  4. writes <sweep>/_wandb/run.json, where the run is: report.py and the sweep's closing
     lines read it.
The run's files stay in <sweep>/_wandb (offline: <sweep>/_wandb/wandb/offline-run-*, which
`wandb sync` uploads). A later sweep run of the same folder replaces the offline one: the
folder holds one, its latest findings.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from analysis import claims, collect, protocol, report  # noqa: E402
from analysis.table import N_BOOT, atomic_write_text, fail, load_results  # noqa: E402
from tinv.harness import time_report  # noqa: E402
from tinv.harness.wandb_log import enabled, offline_dir, tracking  # noqa: E402

FOLDER = "_wandb"           # <sweep>/_wandb: the sweep run's files, beside Hydra's _hydra
POINTER = "run.json"
TABLE, REPORT, CLAIMS = "results.csv", "report.html", "claims.md"
JOB_TYPE = "sweep"
# Left out of the rows Table, as out of the report's table of all rows: per-sample lists,
# provenance, JSON blobs (the CSV has them).
_HIDDEN_PREFIXES = ("scores.", "provenance.", "_")
_HIDDEN = ("per_prompt", "artifacts")


# ----------------------------------------------------------------------------- the run
def log_sweep(sweep_dir: str | os.PathLike, logger: Mapping, ran: Iterable[Mapping] = (), done: int = 0,
              wall_s: float | None = None, n_boot: int = N_BOOT, galleries: bool = True) -> list[str]:
    """Collect, report and log the sweep in `sweep_dir` as one W&B run (`logger`: the sweep's
    logger config); returns the lines that say what was written and where the run is.
    `ran`, `done`, `wall_s`: the rows this command's jobs returned, the jobs it found done,
    its wall time (the time table of the sweep's summary). Nothing with a logger that is
    not W&B."""
    if not enabled(dict(logger)):
        return []
    sweep_dir = Path(sweep_dir)
    name = sweep_dir.name
    t0 = time.perf_counter()
    df, issues = collect.collect([sweep_dir])
    csv = sweep_dir / TABLE
    collect.write_outputs(df, issues, csv)
    table = pd.read_csv(csv)            # what the report and the claims read: one type per column
    ok = load_results(csv)
    previous = read_pointer(sweep_dir)
    keep = report.Kept()
    config = {"sweep": name, "sweep_dir": str(sweep_dir.resolve()), "jobs": len(table),
              "methods": sorted(map(str, table["method"].dropna().unique())) if "method" in table else [],
              "concepts": sorted(map(str, table["concept"].dropna().unique())) if "concept" in table else []}
    with tracking(dict(logger), sweep_dir / FOLDER, name=f"sweep:{name}", group=name, job_type=JOB_TYPE,
                  tags=[JOB_TYPE], config=config) as tracker:
        run = tracker.run
        info = _run_info(run, sweep_dir)
        where = _where(info, sweep_dir)
        report.write_reports(csv, sweep_dir / REPORT, sweep=_sweep_in(table, name), n_boot=n_boot,
                             galleries=galleries, keep=keep, wandb=where)
        text = _claims_text(ok, keep, csv, n_boot)
        atomic_write_text(sweep_dir / CLAIMS, text)
        _log(run, table, issues, keep, text, ran, done, wall_s)
        counts = {"jobs/ok": int((table.get("status") == "ok").sum()) if "status" in table else 0,
                  "jobs/failed": sum(i.kind == "failed" for i in issues),
                  "jobs/missing": sum(i.kind == "missing" for i in issues)}
        verdicts = [x.verdict for _, decided, _ in keep.claims for x in decided]
        run.summary.update({**counts, **{f"verdicts/{v}": verdicts.count(v) for v in dict.fromkeys(verdicts)},
                            "report": str((sweep_dir / REPORT).resolve()), "table": str(csv.resolve()),
                            "claims_file": str((sweep_dir / CLAIMS).resolve())})
    write_pointer(sweep_dir, info)
    _drop_replaced(sweep_dir, previous, info)
    took = time.perf_counter() - t0
    return ([f"the sweep's findings ({took:.1f} s; analysis/sweep_run.py):",
             f"  table   {csv} (+ {csv.stem}.jobs.json)",
             f"  report  {sweep_dir / REPORT}",
             f"  claims  {sweep_dir / CLAIMS}"]
            + [f"  {'W&B' if i == 0 else '':<8}{line}" for i, line in enumerate(where)])


def _sweep_in(table: pd.DataFrame, name: str) -> str | None:
    """The sweep name the table's rows carry (the folder's, through its view of the store;
    None lets the report take the one the table holds)."""
    names = set(table["sweep"].dropna().astype(str)) if "sweep" in table else set()
    return name if name in names else None


def _claims_text(ok: pd.DataFrame, keep: report.Kept, csv: Path, n_boot: int) -> str:
    if ok.empty:
        return "# The paper's claims\n\nNo job of this sweep finished with status ok: nothing to decide.\n"
    decided = [d for _, d, _ in keep.claims]
    command = f"python analysis/claims.py {csv} -o {csv.with_name(CLAIMS)}"
    # the report decided every group's claims already; a table it split otherwise is decided anew
    n_groups = len(protocol.comparable_groups(ok, ignore=protocol.SWEPT))
    return claims.to_markdown(ok, csv.name, command, n_boot, decided=decided if len(decided) == n_groups else None)


def _log(run, table: pd.DataFrame, issues: list, keep: report.Kept, claims_text: str,
         ran: Iterable[Mapping], done: int, wall_s: float | None) -> None:
    import html

    import wandb
    from PIL import Image

    logged = {"rows": _wandb_table(rows_frame(table, issues)),
              "claims/table": _wandb_table(claims_frame(keep)),
              "claims/text": wandb.Html(f"<pre>{html.escape(claims_text)}</pre>"),
              "time/rows": _wandb_table(time_frame(table_timings(table)))}
    ran = list(ran)
    if ran or done:
        logged["time/this_sweep"] = _wandb_table(time_frame(ran))
        logged["time/this_sweep_text"] = wandb.Html(
            f"<pre>{html.escape(time_report.table(ran, done, wall_s))}</pre>")
    groups = list(dict.fromkeys(g for g, _, _ in keep.figures))
    for group, title, png in keep.figures:
        key = f"figures/{_slug(title)}" if len(groups) == 1 else f"figures/{groups.index(group) + 1}/{_slug(title)}"
        logged[key] = wandb.Image(Image.open(io.BytesIO(png)), caption=f"{title}: {group}")
    run.log(logged)


def _wandb_table(frame: pd.DataFrame):
    import wandb
    records = json.loads(frame.to_json(orient="records", double_precision=15))   # NaN -> None, numpy -> Python
    cols = list(frame.columns)
    # a column may hold numbers in some rows and words in others (cpu_threads: auto or 2)
    return wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in records], allow_mixed_types=True)


def rows_frame(table: pd.DataFrame, issues: list) -> pd.DataFrame:
    """The rows Table: one line per job, config columns and metrics; `status` failed or
    missing for the jobs without a usable row (their reason in `error`, folder in job_dir)."""
    cols = [c for c in table.columns if not c.startswith(_HIDDEN_PREFIXES) and c not in _HIDDEN]
    frame = table[cols]
    rowless = [{"status": i.kind, "error": f"{i.reason}: {i.detail}".rstrip(": "), "job_dir": i.where}
               for i in issues if not i.reason.startswith("status=")]
    if rowless:
        frame = pd.concat([frame, pd.DataFrame(rowless)], ignore_index=True)
    return frame


def claims_frame(keep: report.Kept) -> pd.DataFrame:
    """One line per claim and comparable group: the paper's words, each part's effect and
    interval, the verdict (claims.md's table)."""
    lines = []
    for group, decided, rows in keep.claims:
        for x in decided:
            c = x.claim
            lines.append({"group": group, "id": c.id, "claim": c.text,
                          "paper": f"{c.quote} ({f'{c.paper}, ' if c.paper else ''}{c.section})",
                          "parts": "\n".join(claims.result_text(r, rows) for r in x.results),
                          "verdict": x.verdict})
    return pd.DataFrame(lines, columns=["group", "id", "claim", "paper", "parts", "verdict"])


def table_timings(table: pd.DataFrame) -> list[dict]:
    """The ok rows' `timings` sections again, from the table's timings.* columns (lists
    travel as JSON there), in the shape tinv.harness.time_report reads."""
    cols = [c for c in table.columns if c.startswith("timings.")]
    out = []
    ok = table[table["status"] == "ok"] if "status" in table else table
    for _, r in ok.iterrows():
        t = {}
        for c in cols:
            v = r[c]
            if isinstance(v, str) and v[:1] == "[":
                v = json.loads(v)
            elif pd.isna(v):
                continue
            t[c.partition(".")[2]] = v
        out.append({"choices": {"method": r.get("method")}, "timings": t})
    return out


def time_frame(rows: Iterable[Mapping]) -> pd.DataFrame:
    """time_report's breakdown, one line per setup (seconds)."""
    per = time_report.breakdown(rows)
    return pd.DataFrame([{"setup": s, **b} for s, b in per.items()],
                        columns=["setup", "jobs", "reused", *time_report.COLUMNS])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60]


# ----------------------------------------------------------------------------- where it is
def _run_info(run, sweep_dir: Path) -> dict:
    sync = offline_dir(run)
    return {"name": run.name, "id": run.id, "project": run.project, "entity": run.entity or None,
            "group": run.group, "job_type": JOB_TYPE, "mode": "offline" if sync else "online",
            # relative: a runs folder copied elsewhere still finds its run
            "dir": os.path.relpath(sync, sweep_dir) if sync else None,
            "url": None if sync else run.url,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _where(info: dict, sweep_dir: Path) -> list[str]:
    """Where the run is, and (offline) the commands that upload it and the jobs' runs."""
    kind = f"job type {info.get('job_type', JOB_TYPE)} in group {info.get('group')}"
    if info.get("mode") == "offline" and info.get("dir"):
        path = sweep_dir / info["dir"]
        return [f"the sweep's own W&B run, offline ({kind}): {path}",
                f"upload it: wandb sync {path}",
                f"it and its jobs' runs: wandb sync {sweep_dir}/*/wandb/offline-run-*"]
    return [f"the sweep's own W&B run ({kind}): {info.get('url')}"]


def read_pointer(sweep_dir: str | os.PathLike) -> dict | None:
    try:
        info = json.loads((Path(sweep_dir) / FOLDER / POINTER).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def write_pointer(sweep_dir: Path, info: dict) -> None:
    atomic_write_text(sweep_dir / FOLDER / POINTER, json.dumps(info, indent=1))


def where_lines(sweep_dir: str | os.PathLike) -> list[str]:
    """Where the sweep's own W&B run is and how to upload it; [] when it has none."""
    info = read_pointer(sweep_dir)
    return _where(info, Path(sweep_dir)) if info else []


def _drop_replaced(sweep_dir: Path, previous: dict | None, info: dict) -> None:
    """The previous offline sweep run of this folder: the new one supersedes it."""
    if not previous or not previous.get("dir") or previous.get("dir") == info.get("dir"):
        return
    old = (sweep_dir / previous["dir"]).resolve()
    if (sweep_dir / FOLDER).resolve() in old.parents and old.name.startswith("offline-run-"):
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Log a sweep folder as one W&B run of its own "
                                             "(and write its results.csv, report.html, claims.md).")
    ap.add_argument("sweep", help="the sweep folder, <results_root>/<sweep>")
    ap.add_argument("--mode", choices=["offline", "online"], default="offline",
                    help="offline (default: no account; `wandb sync` uploads later) or online (needs `wandb login`)")
    ap.add_argument("--project", default="tinv")
    ap.add_argument("--entity", default=None)
    ap.add_argument("--no-galleries", action="store_true", help="the report without sample galleries")
    ap.add_argument("--n-boot", type=int, default=N_BOOT)
    args = ap.parse_args(argv)
    folder = Path(args.sweep)
    if not folder.is_dir():
        return fail(f"sweep folder {folder} does not exist")
    logger = {"name": "wandb", "mode": args.mode, "project": args.project, "entity": args.entity}
    try:
        lines = log_sweep(folder, logger, n_boot=args.n_boot, galleries=not args.no_galleries)
    except (FileNotFoundError, ValueError) as e:
        return fail(e)
    print("\n".join(lines), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
