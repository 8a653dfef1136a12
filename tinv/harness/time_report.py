"""Where a sweep's time went, per setup: for the sweep summary.

From the rows the sweep's jobs returned (their `timings`) and the sweep's wall time, in
seconds of wall time per setup (method):
  reused     jobs whose word another job learned (tinv.harness.learned): `invert_reused_from`,
             or pivotal tuning from a stored word (`invert_word_from`)
  invert     sum of invert_s: a packed job's holds its even share of the group's inversion,
             a job that reused another job's inversion (tinv.harness.learned) has 0, pivotal
             tuning from a stored word its tuning's time
  sample     sum of sample_s
  evaluate   sum of evaluate_s
  other      sum of total_s - (invert_s + sample_s + evaluate_s): loading the model and the
             images, exporting the word, writing the row
  pack wait  sum of even shares of packed_prep_s: a packed group's time before its
             inversion (loading the model and images once for the group), which is in no
             job's total_s
Jobs found done (in the job store or an old runs folder) cost this sweep nothing and are
counted apart. The sweep's wall time beyond the jobs (Hydra composing and launching,
finished jobs looked up, a cluster's queue) is one more line.

Light (no torch, no tinv imports): the Hydra plugin imports it at the end of every sweep.
"""
from __future__ import annotations

from typing import Iterable, Mapping

STAGES = ("invert_s", "sample_s", "evaluate_s")
COLUMNS = ("invert", "sample", "evaluate", "other", "pack wait", "total")


def pack_wait_s(timings: Mapping) -> float:
    """A packed row's even share of its group's wait before the inversion; 0 otherwise."""
    if "packed_with" not in timings:
        return 0.0
    return float(timings.get("packed_prep_s") or 0.0) / (len(timings["packed_with"]) + 1)


def breakdown(rows: Iterable[Mapping]) -> dict[str, dict[str, float]]:
    """setup -> {jobs, reused, invert, sample, evaluate, other, pack wait, total} (seconds),
    setups in the order they first come."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        t = row.get("timings") or {}
        setup = str((row.get("choices") or {}).get("method") or "?")
        b = out.setdefault(setup, {"jobs": 0, "reused": 0, **{c: 0.0 for c in COLUMNS}})
        stages = [float(t.get(k) or 0.0) for k in STAGES]
        total = float(t["total_s"]) if t.get("total_s") is not None else sum(stages)
        wait = pack_wait_s(t)
        b["jobs"] += 1
        b["reused"] += "invert_reused_from" in t or "invert_word_from" in t
        for column, value in zip(("invert", "sample", "evaluate"), stages):
            b[column] += value
        b["other"] += max(0.0, total - sum(stages))
        b["pack wait"] += wait
        b["total"] += max(total, sum(stages)) + wait
    return out


def table(rows: Iterable[Mapping], done: int = 0, wall_s: float | None = None) -> str:
    """The summary's block: one line per setup, one for all, and the rest of the wall time."""
    per = breakdown(rows)
    n = sum(int(b["jobs"]) for b in per.values())
    head = (f"where the time went, seconds of wall time ({n} jobs run here"
            + (f"; {done} finished before this sweep, not counted" if done else "") + "):")
    if not per:
        return head + " nothing ran"
    every = {"jobs": n, "reused": sum(int(b["reused"]) for b in per.values()),
             **{c: sum(b[c] for b in per.values()) for c in COLUMNS}}
    width = max(len("setup"), *map(len, per))
    names = ("jobs", "reused", *COLUMNS)
    lines = [head, f"  {'setup':<{width}}" + "".join(f"{c:>10}" for c in names)]
    for setup, b in [*per.items(), ("all", every)]:
        lines.append(f"  {setup:<{width}}" + f"{int(b['jobs']):>10}{int(b['reused']):>10}"
                     + "".join(f"{b[c]:>10.1f}" for c in COLUMNS))
    if wall_s is not None:
        rest = wall_s - every["total"]
        if rest >= 0:
            lines.append(f"  sweep wall {wall_s:.1f} s: {rest:.1f} s outside the jobs (imports, Hydra composing "
                         "and launching, grouping packs, finished jobs looked up, a cluster's queue)")
        else:
            lines.append(f"  sweep wall {wall_s:.1f} s: the jobs ran side by side ({every['total']:.1f} s of "
                         "job time)")
    return "\n".join(lines)
