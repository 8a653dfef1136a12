"""Gather every result row of one or more sweeps into one CSV table.

    python analysis/collect.py FOLDER... -o results.csv

FOLDER: a runs root, a sweep folder (runs/<sweep>) or a Hydra multirun folder
(runs/<sweep>/_hydra/multirun-*: the rows of its own jobs, from the sweep folder above).
One line per job. A sweep folder is a view of the job store (runs/jobs/, tinv/harness/store.py):
its jobs are links there, read as the sweep's own (`sweep` and `job_dir` name the sweep,
whichever sweep computed the job); old sweep folders holding the job folders themselves
are read as they are. Columns (see docs/analysis.md):
  job_id, status, error, sweep, job_dir         the row's identity (job_dir relative to the
                                                runs root, named in <out>.jobs.json)
  method, concept, model, eval, ...             Hydra choices (bare group names); `concept`
                                                is the resolved name (choice in choice.concept)
  seed, method.inversion.lr, eval.guidance, ... the resolved config, flattened with dots
  reconstruction_clip, editability_oracle, ...  metrics (absent ones are empty)
  ci.<metric>.lo, ci.<metric>.hi                the job's own interval
  scores.<metric>                               per-sample scores as a JSON list, so the
                                                plots can re-bootstrap from the CSV alone
  per_prompt, artifacts                         JSON
  timings.<k>, provenance.<k>, training.<k>,    the row's other sections, flattened (a config
  concept.n_images, ...                         column of the same name wins)

Missing and failed jobs (the rule, also in docs/analysis.md):
  * failed  = a row with status "failed", or a Hydra job folder (one holding `.hydra/`)
              without a row whose logs hold a Python traceback or an error line;
  * missing = a Hydra job folder without a row and without an error ("incomplete":
              killed, timed out, still running), or a job that the sweep's
              `multirun.yaml` expands to and that no job folder or row matches
              ("never started").
Both are listed on stderr and in `<out>.jobs.json`; the table is written regardless.

`<out>.jobs.json` also says what made the rows: the git commits they were computed at (each
row's provenance: sha, dirty, how many rows), the command line of every Hydra run in the
folders read (from Hydra's own multirun.yaml / hydra.yaml) and the collect command itself.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import yaml
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.table import atomic_file, atomic_write_text  # noqa: E402

ROW_FILE = "result.json"
STORE = "jobs"   # tinv.harness.results.STORE: the job store under the runs root
# A log line that says a job died; plain "error" words in config dumps must not count.
# Hydra's log format is "[time][logger][LEVEL] - message".
_ERROR_LINE = re.compile(r"^(Traceback \(most recent call last\)|\S*(Error|Exception)\b.*:|.*\bCUDA out of memory"
                         r"|\[[^\]]*\]\[[^\]]*\]\[(ERROR|CRITICAL)\])", re.MULTILINE)
_LOG_SUFFIXES = (".log", ".err", ".out", ".txt")
# Choice values that the tinv sweeper expands itself (`concept=all`, `objects`, `styles`:
# its CONCEPT_SETS, which tests/harness/test_config.py holds this equal to); Hydra's basic
# expansion keeps them as one job, so they match any value here.
WILDCARD_VALUES = {"all", "objects", "styles"}


LEADING_COLUMNS = ("job_id", "status", "sweep", "method", "concept", "model", "eval", "seed")
METRIC_PREFIXES = ("reconstruction_", "editability_")
# Row keys read above; `traceback` (long) and `folder` (= job_dir) stay out of the table.
_KNOWN_KEYS = {"schema", "job_id", "status", "error", "sweep", "choices", "config", "metrics", "metrics_ci",
               "scores", "timings", "provenance", "per_prompt", "artifacts", "traceback", "folder"}


@dataclass
class JobIssue:
    """A job without a usable row: what went wrong and where to look."""
    kind: str           # "failed" | "missing"
    where: str          # job folder, or the sweep folder for a never-started job
    reason: str         # "status=failed", "unreadable row", "error in log", "incomplete", "never started"
    detail: str = ""    # the error message or the overrides of the job


# ---------------------------------------------------------------- rows -> flat records
def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": leaf}; lists stay leaves (they go out as JSON)."""
    if not isinstance(d, dict):
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def runs_root_of(job_dir: Path, sweep: str | None, scanned: Path) -> Path:
    """The folder job_dir is stored relative to: the harness shows a job as
    <runs root>/<sweep>/<job> (a link into the store, or an old runs folder's own folder)
    and keeps it in <runs root>/jobs/<job>, so the folder above those; else the folder
    above the one collect was given (a table moves with its runs folder, not with this
    machine). Links are not resolved: a job read through a sweep's view is that sweep's."""
    job_dir = Path(os.path.abspath(job_dir))
    if job_dir.parent.name in {sweep, STORE} - {None}:
        return job_dir.parent.parent
    scanned = Path(os.path.abspath(scanned))
    return scanned.parent if scanned in job_dir.parents else job_dir.parent


def row_to_record(row: dict, job_dir: Path, runs_root: Path | None = None) -> dict[str, Any]:
    """One result row -> one flat table record (column names as in the module doc).
    job_dir is written relative to `runs_root` (absolute when none is given), links kept
    as they are (a sweep's view of the job store names the job under the sweep)."""
    where = Path(os.path.abspath(job_dir))
    if runs_root is not None:
        where = Path(os.path.relpath(where, os.path.abspath(runs_root)))
    rec: dict[str, Any] = {
        "job_id": row.get("job_id"), "status": row.get("status"),
        "error": row.get("error"), "sweep": row.get("sweep"), "job_dir": where.as_posix(),
    }
    choices = {k: v for k, v in (row.get("choices") or {}).items() if not str(k).startswith("hydra")}
    rec.update(choices)
    for key, value in flatten(row.get("config") or {}).items():
        if key.startswith("hydra."):
            continue
        # A scalar config key named like a choice (rare) must not overwrite the choice.
        rec["config." + key if key in choices else key] = value
    rec.update(row.get("metrics") or {})
    for name, ci in (row.get("metrics_ci") or {}).items():
        if ci is not None and len(ci) == 2:
            rec[f"ci.{name}.lo"], rec[f"ci.{name}.hi"] = ci
    for name, values in (row.get("scores") or {}).items():
        rec[f"scores.{name}"] = values
    for section in ("timings", "provenance"):
        for key, value in flatten(row.get(section) or {}).items():
            rec[f"{section}.{key}"] = value
    rec["per_prompt"] = row.get("per_prompt")
    rec["artifacts"] = row.get("artifacts")
    # Other sections the harness adds (training, concept with n_images, eval_protocol):
    # flattened, never overriding a config column of the same name.
    for section, value in row.items():
        if section in _KNOWN_KEYS:
            continue
        for key, leaf in (flatten(value, section) if isinstance(value, dict) else {section: value}).items():
            rec.setdefault(key, leaf)
    # `concept` names the concept itself: a generic choice (folder, dreambench) would
    # pool different concepts, so the resolved name wins and the choice is kept beside it.
    resolved = (row.get("concept") or {}).get("name") if isinstance(row.get("concept"), dict) else None
    resolved = resolved or ((row.get("config") or {}).get("concept") or {}).get("name")
    if resolved and resolved != rec.get("concept"):
        rec["choice.concept"], rec["concept"] = rec.get("concept"), resolved
    # Lists and dicts travel as JSON so that pandas writes one cell and reads it back.
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in rec.items()}


# ---------------------------------------------------------------- walking a sweep
def _read_row(path: Path) -> dict | None:
    try:
        row = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"collect: cannot read {path}: {e}; counted as failed", file=sys.stderr)
        return None
    if not isinstance(row, dict):
        print(f"collect: {path} holds no JSON object; counted as failed", file=sys.stderr)
        return None
    return row


def _error_in_logs(job_dir: Path) -> str:
    """The first error line of any log in the job folder (recursive), or ''."""
    for log in sorted(job_dir.rglob("*")):
        if log.is_file() and log.suffix in _LOG_SUFFIXES:
            text = log.read_text(errors="replace")
            m = _ERROR_LINE.search(text)
            if m:
                # Prefer the last line of a traceback: it names the exception.
                tail = [l for l in text[m.start():].splitlines() if l.strip()]
                last = next((l for l in reversed(tail) if _ERROR_LINE.match(l)), tail[0])
                return f"{log.name}: {last.strip()[:300]}"
    return ""


def _job_overrides(job_dir: Path) -> list[str] | None:
    f = job_dir / ".hydra" / "overrides.yaml"
    if not f.is_file():
        return None
    return list(yaml.safe_load(f.read_text()) or [])


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The override lists that the sweep's multirun.yaml expands to (Hydra's basic sweeper
    rule: `hydra.sweeper.params` then the command-line task overrides, Cartesian product).
    None when there is no multirun.yaml or it cannot be parsed. Choice sweeps that only the
    config repo can expand (glob(...), the tinv sweeper's `all`) stay one wildcard job."""
    f = sweep_dir / "multirun.yaml"
    if not f.is_file():
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra_cfg = (yaml.safe_load(f.read_text()) or {}).get("hydra", {})
    params = (hydra_cfg.get("sweeper") or {}).get("params") or {}
    overrides = [f"{k}={v}" for k, v in params.items()]
    overrides += list((hydra_cfg.get("overrides") or {}).get("task") or [])
    # glob(...) needs the config repo to expand: treat it like `all`, a wildcard.
    overrides = [re.sub(r"=\s*glob\(.*\)\s*$", "=all", o) for o in overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    except Exception as e:  # glob() needs the config loader; say so and skip the check
        print(f"collect: cannot expand {f} ({e}); missing-job check limited to job folders",
              file=sys.stderr)
        return None
    return [job for batch in batches for job in batch]


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.lstrip("+~").partition("=")
    return key, value


def _same_job(expected: list[str], folder: list[str]) -> bool:
    """An expected override list equals a job folder's, wildcards matching any value."""
    have = dict(_split(o) for o in folder)
    return len(have) == len(expected) and all(
        k in have and (v in WILDCARD_VALUES or have[k] == v) for k, v in map(_split, expected))


def _override_matches_record(override: str, rec: dict) -> bool | None:
    """Does a row agree with one `key=value` override? None if the row lacks the key
    or the value is a wildcard."""
    key, value = _split(override)
    if key.startswith("hydra.") or key.startswith("hydra/") or value in WILDCARD_VALUES:
        return None
    key = key.replace("/", ".") if key not in rec else key
    if key not in rec or rec[key] is None:
        return None
    have = rec[key]
    if str(have) == value or str(rec.get("choice." + key)) == value:
        return True
    try:
        return yaml.safe_load(value) == (json.loads(have) if isinstance(have, str) and have[:1] in "[{" else have)
    except (yaml.YAMLError, json.JSONDecodeError):
        return False


def _matches(overrides: list[str], rec: dict) -> bool:
    votes = [_override_matches_record(o, rec) for o in overrides]
    known = [v for v in votes if v is not None]
    return bool(known) and all(known)


POINTER = "tinv_job.json"  # run.py writes it into Hydra's job folder: the row it made or found


def _pointed_row(job_dir: Path) -> Path | None:
    """The row folder a Hydra job folder's tinv_job.json names, if that row exists."""
    try:
        target = json.loads((job_dir / POINTER).read_text()).get("job_dir")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(target).resolve() if target and (Path(target) / ROW_FILE).is_file() else None


def _job_choices(job_dir: Path) -> list[str]:
    """Hydra's runtime choices of a job as `group=option` overrides: a run with no
    command-line overrides (`python run.py`) is still recognised by them."""
    f = job_dir / ".hydra" / "hydra.yaml"
    try:
        choices = ((yaml.safe_load(f.read_text()) or {}).get("hydra") or {}).get("runtime", {}).get("choices") or {}
    except (OSError, yaml.YAMLError):
        return []
    return [f"{k}={v}" for k, v in choices.items() if "/" not in k and v is not None and k != "experiment"]


def row_files(folder: Path) -> list[Path]:
    """Every result.json under `folder`, once per job: in real folders (an old sweep
    folder, the job store) and behind the links of a sweep's view of the store. A job
    found both ways (a runs root holds the store and the views) is listed by its real
    folder: one line per job, under the sweep that computed it."""
    found: dict[Path, Path] = {}
    links: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):   # does not follow links
        here = Path(dirpath)
        if ROW_FILE in filenames:
            found.setdefault((here / ROW_FILE).resolve(), here / ROW_FILE)
        links += [here / d / ROW_FILE for d in dirnames if (here / d).is_symlink()]
    for path in links:
        if path.is_file():
            found.setdefault(path.resolve(), path)
    return sorted(found.values())


def _hydra_job_dirs(folder: Path) -> list[Path]:
    return sorted(h.parent for h in folder.rglob(".hydra") if h.is_dir())


def scan_sweep(sweep_dir: Path) -> tuple[list[dict], list[JobIssue]]:
    """All rows under one folder (a sweep folder, a runs root, or a Hydra multirun folder
    `<sweep>/_hydra/multirun-*`), as flat records, plus the failed and missing jobs.
    A multirun folder gives the rows of its own jobs only, found in its sweep folder."""
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
    multirun = (sweep_dir / "multirun.yaml").is_file() and not any(sweep_dir.rglob(ROW_FILE))
    rows_dir = sweep_dir.parent.parent if multirun and sweep_dir.parent.name == "_hydra" else sweep_dir
    if multirun and rows_dir == sweep_dir:
        print(f"collect: {sweep_dir} is a Hydra multirun folder outside <sweep>/_hydra; "
              "its rows are found through the jobs' tinv_job.json only", file=sys.stderr)
    records: list[dict] = []
    row_dirs: dict[Path, dict] = {}
    issues: list[JobIssue] = []
    for path in tqdm(row_files(rows_dir), desc=f"rows in {rows_dir}", unit="row",
                     disable=None, leave=False):
        row = _read_row(path)
        row_dirs[path.parent.resolve()] = {"row": row, "path": path}
    job_dirs = _hydra_job_dirs(sweep_dir)
    # Which rows the Hydra job folders name: their pointer, else their overrides + choices.
    named: set[Path] = set()
    unmatched: list[tuple[Path, list[str]]] = []
    folder_overrides: list[list[str]] = []
    for job_dir in job_dirs:
        ov = _job_overrides(job_dir)
        if ov is None:
            continue
        folder_overrides.append(ov)
        target = _pointed_row(job_dir)
        if target is not None and target in row_dirs:
            named.add(target)
            continue
        if target is None and job_dir.resolve() in row_dirs:  # rows kept inside Hydra's folder
            named.add(job_dir.resolve())
            continue
        unmatched.append((job_dir, ov))
    runs_root_hint = rows_dir
    by_dir = {}
    for d, info in row_dirs.items():
        row = info["row"]
        if multirun and d not in named and not _row_matches_any(row, d, unmatched):
            continue  # a row of another sweep of the same folder
        by_dir[d] = info
        if row is None:
            issues.append(JobIssue("failed", str(info["path"].parent), "unreadable row"))
            continue
        # a job read through a sweep's view is that sweep's row, whichever sweep computed it
        sweep = info["path"].parent.parent.name if info["path"].parent.is_symlink() else row.get("sweep")
        root = runs_root_of(info["path"].parent, sweep, runs_root_hint)
        rec = row_to_record(row, info["path"].parent, root)
        rec["sweep"] = sweep
        rec["_dir"], rec["_root"] = d, str(root)
        records.append(rec)
        if row.get("status") != "ok":
            issues.append(JobIssue("failed", str(info["path"].parent), f"status={row.get('status')}",
                                   str(row.get("error") or "")[:300]))
    for job_dir, ov in unmatched:
        if any(d == job_dir.resolve() or job_dir.resolve() in d.parents for d in by_dir):
            continue
        choices = _job_choices(job_dir)
        if any(_matches(ov + choices, rec) for rec in records):
            continue
        err = _error_in_logs(job_dir)
        what = " ".join(ov or []) or " ".join(choices)
        if err:
            issues.append(JobIssue("failed", str(job_dir), "error in log", f"{what}: {err}"))
        else:
            issues.append(JobIssue("missing", str(job_dir), "incomplete",
                                   f"{what}: no result.json and no error in its logs"))
    # Hydra keeps its multirun folders inside the sweep (conf/config.yaml: _hydra/multirun-*).
    for mr in sorted(sweep_dir.rglob("multirun.yaml")):
        for job in expected_jobs(mr.parent) or []:
            if any(_same_job(job, ov) for ov in folder_overrides) or any(_matches(job, rec) for rec in records):
                continue
            issues.append(JobIssue("missing", str(mr.parent), "never started", " ".join(job)))
    for rec in records:
        rec.pop("_dir", None)
    return records, issues


def _row_matches_any(row: dict | None, row_dir: Path, jobs: list[tuple[Path, list[str]]]) -> bool:
    """Is this row one of these Hydra jobs' (by their overrides and choices)?"""
    if row is None:
        return False
    rec = row_to_record(row, row_dir)
    return any(_matches(ov + _job_choices(d), rec) for d, ov in jobs)


# ---------------------------------------------------------------- the table
def once_per_job(records: list[dict]) -> list[dict]:
    """A job that two of the folders show (one store job linked into two sweeps: NeTI's
    untruncated rows in successors and neti_truncation) is one row, the first folder's: a
    second copy would count its concept twice in every paired effect."""
    seen: set = set()
    kept = []
    for rec in records:
        jid = rec.get("job_id")
        if jid is not None and rec.get("status") == "ok":
            if jid in seen:
                continue
            seen.add(jid)
        kept.append(rec)
    if len(kept) < len(records):
        print(f"collect: {len(records) - len(kept)} jobs appear in more than one folder; each is one row, "
              "from the first folder that holds it", file=sys.stderr)
    return kept


STEPS, CURVE, LOSS = "training.steps_to_reference_loss", "training.fixed_batch_curve", "training.eval_loss_after"
FILLED = "training.steps_to_reference_loss_from"


def fill_convergence(df: pd.DataFrame) -> pd.DataFrame:
    """A row written before its single word finished has a null `steps_to_reference_loss`
    and its fixed-batch curve (tinv.harness.convergence): fill it here from the single word's
    row of the same model, concept, seed and training images in the table, and say so in
    `training.steps_to_reference_loss_from` ("collect" here, "job" when the job wrote it)."""
    if STEPS not in df.columns or CURVE not in df.columns or LOSS not in df.columns:
        return df
    from tinv.harness.convergence import PAIRED_BY, REFERENCE, steps_to_reach
    keys = [k for k in PAIRED_BY if k in df.columns]
    key = df[keys].astype(object).map(str).agg("|".join, axis=1)   # str: a null train_images pairs with null
    ref = df[(df["method"] == REFERENCE) & (df["status"] == "ok") & df[LOSS].notna()]
    target = dict(zip(key[ref.index][::-1], ref[LOSS][::-1]))   # the first row wins, as in the store
    df[FILLED] = [("job" if pd.notna(v) else None) for v in df[STEPS]]
    for i in df.index[df[STEPS].isna() & df[CURVE].notna()]:
        if key[i] not in target:
            continue
        curve = json.loads(df.at[i, CURVE]) if isinstance(df.at[i, CURVE], str) else df.at[i, CURVE]
        step = steps_to_reach(curve or [], float(target[key[i]]))
        if step is not None:
            df.at[i, STEPS], df.at[i, FILLED] = step, "collect"
    return df


def collect(sweep_dirs: Iterable[str | os.PathLike]) -> tuple[pd.DataFrame, list[JobIssue]]:
    """Rows of all sweeps -> DataFrame (one line per job) and the list of job issues."""
    records, issues = [], []
    for d in sweep_dirs:
        r, i = scan_sweep(Path(d))
        records += r
        issues += i
    records = once_per_job(records)
    roots = pd.Series([rec.pop("_root") for rec in records], dtype=object)
    df = pd.DataFrame.from_records(records)
    # Where the relative job_dir column starts: the gallery needs it to find the images.
    df.attrs["runs_root"] = roots.mode().iloc[0] if len(roots) else None
    if df.empty:
        df = pd.DataFrame(columns=list(LEADING_COLUMNS))
    df = fill_convergence(df)
    # What a person looks for first: identity, the setup, the scores; then the rest.
    metrics = [c for c in df.columns if c.startswith(METRIC_PREFIXES) and "." not in c]
    first = [c for c in LEADING_COLUMNS if c in df.columns] + metrics
    return df[first + [c for c in df.columns if c not in first]], issues


# ---------------------------------------------------------------- what made the rows
def hydra_command(hydra_cfg: dict) -> str:
    """The command line of one Hydra run, from Hydra's record of it (its `hydra:` config):
    `python run.py [-m] HYDRA_OVERRIDES TASK_OVERRIDES`, each quoted for a shell."""
    over = hydra_cfg.get("overrides") or {}
    hydra_over = [o for o in over.get("hydra") or [] if not o.startswith("hydra.mode=")]
    multirun = "hydra.mode=MULTIRUN" in (over.get("hydra") or []) or hydra_cfg.get("mode") == "MULTIRUN"
    script = f"{(hydra_cfg.get('job') or {}).get('name') or 'run'}.py"     # run.py's Hydra job is "run"
    words = ["python", script, *(["-m"] if multirun else []), *hydra_over, *(over.get("task") or [])]
    return " ".join(shlex.quote(w) for w in words)


def sweep_commands(folders: Iterable[str | os.PathLike]) -> list[dict]:
    """Every Hydra run recorded under the folders read (a sweep's `_hydra/multirun-*/multirun.yaml`,
    a single run's `_hydra/<time>/.hydra/hydra.yaml`): its command line and its folder, oldest first."""
    found = {}
    for folder in folders:
        folder = Path(folder)
        for f in [*folder.rglob("multirun.yaml"), *folder.rglob(".hydra/hydra.yaml")]:
            if STORE in f.relative_to(folder).parts[:1]:
                continue        # the job store's own folders: not a run of these sweeps
            if f.name == "hydra.yaml" and (f.parent.parent.parent / "multirun.yaml").is_file():
                continue        # one job of a multirun: the multirun's command says it
            try:
                cfg = (yaml.safe_load(f.read_text()) or {}).get("hydra") or {}
            except (OSError, yaml.YAMLError):
                continue
            run_dir = f.parent if f.name == "multirun.yaml" else f.parent.parent
            found[run_dir.resolve()] = {"command": hydra_command(cfg), "folder": str(run_dir)}
    return sorted(found.values(), key=lambda r: Path(r["folder"]).name)


def commits(df: pd.DataFrame) -> list[dict]:
    """The checkouts the rows were computed in (each row's provenance): sha, dirty, how many rows.
    More than one, or a dirty one, means the table is not one commit's output."""
    if "provenance.sha" not in df or df.empty:
        return []
    plain = lambda v: None if pd.isna(v) else v    # noqa: E731
    dirty = df["provenance.dirty"] if "provenance.dirty" in df else pd.Series([None] * len(df))
    counts = Counter((plain(sha), None if pd.isna(d) else str(d).lower() == "true")
                     for sha, d in zip(df["provenance.sha"], dirty))
    return [{"sha": sha, "dirty": d, "rows": n} for (sha, d), n in counts.items()]


def write_outputs(df: pd.DataFrame, issues: list[JobIssue], out: Path, folders: Iterable = ()) -> Path:
    """Table to `out` and the job issues to `<out stem>.jobs.json`, both atomically. The
    sidecar also says what made the rows: the commits they were computed at (`commits`), the
    command line of every Hydra run in the folders read (`commands`) and how the table was
    collected (`collect`), so a committed example states how to make it again."""
    if out.suffix == ".gz":     # a large example is stored gzipped; pandas reads it by its name
        with atomic_file(out) as tmp:
            df.to_csv(tmp, index=False, compression={"method": "gzip", "mtime": 0})
    else:
        atomic_write_text(out, df.to_csv(index=False))
    jobs = out.with_name(Path(out.name.removesuffix(".gz")).stem + ".jobs.json")
    n_ok = int((df["status"] == "ok").sum()) if "status" in df else 0
    root = df.attrs.get("runs_root")
    folders = [str(f) for f in folders]
    atomic_write_text(jobs, json.dumps({
        # job_dir is relative to this folder, itself given relative to the table's folder
        "runs_root": os.path.relpath(root, out.resolve().parent) if root else None,
        "ok": n_ok,
        "commits": commits(df),
        "commands": sweep_commands(folders),
        "collect": " ".join(shlex.quote(w) for w in ["python", "analysis/collect.py", *folders, "-o", str(out)]),
        "failed": [asdict(i) for i in issues if i.kind == "failed"],
        "missing": [asdict(i) for i in issues if i.kind == "missing"],
    }, indent=1))
    return jobs


def summary_text(df: pd.DataFrame, issues: list[JobIssue]) -> str:
    n_ok = int((df["status"] == "ok").sum()) if len(df) else 0
    failed = [i for i in issues if i.kind == "failed"]
    missing = [i for i in issues if i.kind == "missing"]
    lines = [f"{len(df)} rows ({n_ok} ok), {len(failed)} failed, {len(missing)} missing"]
    for i in failed + missing:
        lines.append(f"  {i.kind.upper():7s} {i.reason:14s} {i.where}  {i.detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweeps", nargs="+", help="a runs root, sweep folders (runs/<sweep>) or Hydra multirun "
                                              "folders (runs/<sweep>/_hydra/multirun-*)")
    ap.add_argument("-o", "--out", required=True, help="CSV to write")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any job failed or is missing")
    args = ap.parse_args(argv)
    try:
        df, issues = collect(args.sweeps)
    except FileNotFoundError as e:
        ap.error(str(e))
    out = Path(args.out)
    jobs = write_outputs(df, issues, out, args.sweeps)
    print(summary_text(df, issues), file=sys.stderr)
    print(f"wrote {out} and {jobs}", file=sys.stderr)
    return 1 if args.strict and issues else 0


if __name__ == "__main__":
    sys.exit(main())
