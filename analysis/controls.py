"""Positive controls of the successors (issue 29): each port as its authors run it must beat
prompt-only (the prompts with S* deleted) on oracle reconstruction on EVERY object concept.
A port that fails on some concept has not learned that concept, and its verdicts on the
claims would compare nothing.

    python analysis/controls.py analysis/examples/successors.csv [-o controls.md]

prints a table: per method, its oracle reconstruction per concept minus prompt-only's on the
same concept and seeds, the smallest margin, and "passes" / "FAILS on <concepts>". Exit 1
when a method fails (so a sweep script can stop on it); exit 2 for bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository's root on the path, as the other scripts do
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

METRIC = "reconstruction_oracle"
REFERENCES = ("prompt_only", "image_only")


def margins(df: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """Per (method, concept): the method's metric minus prompt-only's on the same concept and
    model, object concepts only; references left out. Columns: method, concept, margin."""
    missing = [c for c in ("method", "concept", "concept.kind", metric) if c not in df.columns]
    if missing:
        raise ValueError(f"rows lack column(s) {missing}: collect them with analysis/collect.py")
    rows = df[(df["concept.kind"] == "object") & (df.get("status", "ok") == "ok")]
    keys = ["concept"] + (["model.name"] if "model.name" in rows.columns else [])
    ref = rows[rows["method"] == "prompt_only"].set_index(keys)[metric]
    if ref.empty:
        raise ValueError("no prompt_only rows on object concepts: the control needs its reference")
    out = []
    for _, r in rows[~rows["method"].isin(REFERENCES)].iterrows():
        k = tuple(r[c] for c in keys) if len(keys) > 1 else r["concept"]
        if k in ref.index:
            out.append({"method": _label(r), "concept": r["concept"], "margin": float(r[metric]) - float(ref.loc[k])})
    return pd.DataFrame(out, columns=["method", "concept", "margin"])


def _label(row) -> str:
    """The method, with NeTI's inference truncation when the row was sampled truncated."""
    t = row.get("eval.neti_truncation")
    return row["method"] if t is None or pd.isna(t) else f"{row['method']} (truncated to {int(t)})"


def verdicts(m: pd.DataFrame) -> pd.DataFrame:
    """Per method: n concepts, the smallest margin, passes (every margin > 0), failed concepts."""
    rows = []
    for method, g in m.groupby("method", sort=True):
        failed = sorted(g.loc[g["margin"] <= 0, "concept"])
        rows.append({"method": method, "n": len(g), "min_margin": g["margin"].min(),
                     "mean_margin": g["margin"].mean(), "passes": not failed, "failed": ", ".join(failed)})
    return pd.DataFrame(rows)


def render(v: pd.DataFrame, metric: str = METRIC) -> str:
    lines = [f"Positive controls: {metric} minus prompt-only's, per object concept (same seeds)", "",
             "| method | concepts | smallest margin | mean margin | verdict |", "| --- | ---: | ---: | ---: | --- |"]
    for _, r in v.iterrows():
        verdict = "passes" if r["passes"] else f"FAILS on {r['failed']}"
        lines.append(f"| {r['method']} | {r['n']} | {r['min_margin']:+.3f} | {r['mean_margin']:+.3f} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", type=Path, nargs="+", help="tables from analysis/collect.py")
    p.add_argument("-o", "--out", type=Path, help="also write the table here (markdown)")
    a = p.parse_args(argv)
    for f in a.csv:
        if not f.is_file():
            print(f"error: no such table: {f}", file=sys.stderr)
            return 2
    try:
        v = verdicts(margins(pd.concat([pd.read_csv(f) for f in a.csv], ignore_index=True)))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = render(v)
    print(text, end="")
    if a.out:
        from tinv.core.atomic import write_text
        write_text(a.out, text)
    return 0 if bool(v["passes"].all()) else 1


if __name__ == "__main__":
    sys.exit(main())
