"""One self-contained HTML report per sweep: table, figures and galleries, no server.

    python analysis/report.py results.csv -o report.html          # the table holds one sweep
    python analysis/report.py results.csv -o reports/             # report-<sweep>.html each

Every image is inlined as base64 PNG, so the file opens anywhere. The failed and missing
jobs come from `<csv stem>.jobs.json`, which collect.py writes next to the table. Where the
sweep has a W&B run of its own (analysis/sweep_run.py), the page says where it is and how
to upload an offline one.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import claims, effects, gallery, plot_guidance, plot_setsize, plot_tradeoff, protocol, style  # noqa: E402
from analysis import rulebook as rb  # noqa: E402
from analysis.table import (AXIS_LABELS, N_BOOT, SETUP_COLUMN, atomic_write_text, fail, load_results,  # noqa: E402
                            summarize)

# The figures a report tries, in order: (title, swept, function(df, n_boot) -> figure).
# A figure gets the group's rows at the main value of every swept column (SWEPT) except
# those it sweeps itself: Figure 10 the grid at one guidance and set size, Figure 12 all
# set sizes at the main guidance, Figure 11 all guidance scales at the main set size.
# A figure whose data the group lacks is skipped with a note, not an error.
FIGURES = [
    ("Figure 10(a): trade-off, CLIP, editability = mean embedding (paper)", (),
     lambda df, nb: plot_tradeoff.plot_tradeoff(df, "meanemb", "clip", nb)[0]),
    ("Figure 10(a): trade-off, CLIP, editability = per-sample mean (public code)", (),
     lambda df, nb: plot_tradeoff.plot_tradeoff(df, "persample", "clip", nb)[0]),
    ("Trade-off, DINO reconstruction", (), lambda df, nb: plot_tradeoff.plot_tradeoff(df, "meanemb", "dino", nb)[0]),
    ("Trade-off, oracle (toy world ground truth)", (),
     lambda df, nb: plot_tradeoff.plot_tradeoff(df, "meanemb", "oracle", nb)[0]),
    ("Figure 12: training-set size", ("train_images", "concept.n_images"), lambda df, nb: plot_setsize.plot_setsize(df, n_boot=nb)[0]),
    ("Figure 11: guidance scale", (protocol.GUIDANCE,), lambda df, nb: plot_guidance.plot_guidance(df, n_boot=nb)[0]),
]
SWEPT = protocol.SWEPT

_CSS = """body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}img{max-width:100%}
.note{color:#777}.bad{color:#b00}figure{margin:1em 0}figcaption{font-weight:bold}
table.claims td{text-align:left;vertical-align:top}.holds{color:#060;font-weight:bold}
.contradicted{color:#b00;font-weight:bold}.undecided,.not,.negligible{color:#777;font-weight:bold}"""
# Lets a headless browser (and a person) see that every image decoded and no script failed.
_CHECK_JS = """window.addEventListener('error',e=>{document.body.dataset.jsError=String(e.message)});
window.addEventListener('load',()=>{const imgs=[...document.images];
document.body.dataset.images=imgs.length;
document.body.dataset.imagesOk=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;
const plots=[...document.querySelectorAll('img.plot')];
document.body.dataset.plotMinWidth=Math.min(...plots.map(i=>i.getBoundingClientRect().width));
const top=q=>{const e=document.querySelector(q);return e?Math.round(e.getBoundingClientRect().top+window.scrollY):-1};
document.body.dataset.forestTop=top('img.forest');document.body.dataset.claimsTop=top('table.claims');
document.body.dataset.claimsRows=document.querySelectorAll('table.claims tr').length-1;});"""


@dataclass
class Kept:
    """What a report drew, kept for the sweep's W&B run (analysis/sweep_run.py), so the
    figures and claims are computed once for both: each figure as PNG bytes and each
    comparable group's decided claims, with the group's title."""
    figures: list = field(default_factory=list)    # (group title, figure title, PNG bytes)
    claims: list = field(default_factory=list)     # (group title, [claims.Decided], claims.Rows)


def figure_bytes(fig, fmt: str = "png") -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def data_uri(fig, fmt: str = "png") -> str:
    """The figure inlined; galleries go as JPEG (photos compress 5-10x better than PNG)."""
    return _uri(figure_bytes(fig, fmt), fmt)


def _uri(data: bytes, fmt: str = "png") -> str:
    return f"data:image/{fmt};base64," + base64.b64encode(data).decode()


def summary_table(df: pd.DataFrame, n_boot: int) -> str:
    """Per setup: concepts, and each metric as mean [95% lo, hi]."""
    metrics = [m for m in effects.METRICS if m in df.columns and df[m].notna().any()]
    s = summarize(df, metrics, by=(SETUP_COLUMN,), n_boot=n_boot)
    s = s.set_index(SETUP_COLUMN).loc[style.order(s[SETUP_COLUMN])]
    out = pd.DataFrame(index=[style.style(n).label for n in s.index])
    out["jobs"] = df.groupby(SETUP_COLUMN).size().reindex(s.index).to_numpy()
    for m in metrics:
        out[m] = [f"{r[m]:.3f} [{r[m + '.lo']:.3f}, {r[m + '.hi']:.3f}]" if pd.notna(r[m]) else ""
                  for _, r in s.iterrows()]
    return out.to_html(escape=True)


def per_concept_table(df: pd.DataFrame) -> str:
    """Setups x concepts for the paper's pair of metrics: where does a setup win or lose?"""
    out = []
    for m in ("reconstruction_clip", "editability_clip_meanemb"):
        if m in df.columns and df[m].notna().any():
            t = df.pivot_table(index=SETUP_COLUMN, columns="concept", values=m, aggfunc="mean")
            t = t.loc[style.order(t.index)].rename(index=lambda n: style.style(n).label)
            out.append(f"<h3>{html.escape(AXIS_LABELS[m])}</h3>" + t.to_html(float_format=lambda v: f"{v:.3f}", na_rep=""))
    return "".join(out)


def jobs_section(jobs: dict | None) -> str:
    if jobs is None:
        return '<p class="note">No job list found (collect.py writes &lt;csv stem&gt;.jobs.json).</p>'
    items = [f"<li class=bad>{html.escape(i['kind'])} ({html.escape(i['reason'])}): "
             f"{html.escape(i['where'])} {html.escape(i.get('detail', ''))}</li>"
             for i in jobs.get("failed", []) + jobs.get("missing", [])]
    head = (f"<p>{jobs.get('ok', 0)} ok, {len(jobs.get('failed', []))} failed, "
            f"{len(jobs.get('missing', []))} missing.</p>")
    return head + (f"<ul>{''.join(items)}</ul>" if items else "")


def grid_rows(df: pd.DataFrame, keep=()) -> tuple[pd.DataFrame, str]:
    """The group's rows at its most common value of each swept column but those in
    `keep` (the Figure-10 grid when none), and a note naming what was kept."""
    notes = []
    for col in SWEPT:
        if col in keep:
            continue
        if col in df.columns and df[col].nunique(dropna=False) > 1:
            main = df[col].value_counts(dropna=False).index[0]
            at_main = df[col].isna() if pd.isna(main) else df[col] == main
            notes.append(f"{col} = {main:g}" if isinstance(main, float) else f"{col} = {main}")
            df = df[at_main]
    note = ("Rows at " + ", ".join(notes) + " (the other values feed the sweep figures below).") if notes else ""
    return df, note


def claims_section(df: pd.DataFrame, n_boot: int, keep: Kept | None = None, group: str = "") -> str:
    """The claims table of one comparable group (its grid and its sweeps): one row per
    claim, each part's effect and interval, the verdict (claims.md has the same)."""
    decided = claims.decide(df, n_boot=n_boot)
    rows, at = [], claims.Rows(df)
    if keep is not None:
        keep.claims.append((group, decided, at))
    for x in decided:
        c = x.claim
        cells = "<br>".join(html.escape(claims.result_text(r, at)) for r in x.results)
        # holds, holds (small) -> holds; against the paper (reversed, contradicted (small), ...) -> contradicted
        css = "contradicted" if x.verdict in rb.AGAINST else x.verdict.split()[0]
        css = css if css in ("holds", "contradicted", "undecided", "negligible", "not") else "undecided"
        what = ("positive control (built into the toy world), " if x.control else "") + x.verdict
        rows.append(f"<tr><td>{html.escape(c.id)}</td><td>{html.escape(c.text)}</td>"
                    f"<td>“{html.escape(c.quote)}” ({html.escape(c.section)})</td>"
                    f"<td>{cells}</td><td class={css}>{html.escape(what)}</td></tr>")
    return ("<table class=claims><tr><th>#</th><th>claim</th><th>the paper</th>"
            "<th>effect [95% paired interval] per part</th><th>verdict</th></tr>" + "".join(rows) + "</table>"
            "<p class=note>Rulebook: analysis/rulebook.py, docs/analysis.md (The claims). Effects: setup − "
            "reference over the same concepts and seeds.</p>")


def _figure(title: str, fig, cls: str = "plot", keep: Kept | None = None, group: str = "") -> str:
    png = figure_bytes(fig)
    if keep is not None:
        keep.figures.append((group, title, png))
    return (f"<figure><figcaption>{html.escape(title)}</figcaption>"
            f"<img class='{cls}' alt='{html.escape(title)}' src='{_uri(png)}'></figure>")


def group_section(df: pd.DataFrame, n_boot: int, galleries: bool, keep: Kept | None = None,
                  group: str = "") -> list[str]:
    """One comparable group: paired effects first, then claims, scores, figures, galleries.
    `keep` collects the figures and claims drawn (titled `group`)."""
    grid, note = grid_rows(df)
    parts = [f"<p class=note>{len(df)} rows. {html.escape(note)}</p>" if note else
             f"<p class=note>{len(df)} rows.</p>"]
    parts.append(f"<h3>Paired effects vs {html.escape(style.style(effects.REFERENCE).label)}</h3>")
    try:
        fig, eff = effects.plot_forest(grid, n_boot=n_boot)
        parts.append(_figure("Paired effects (forest plot)", fig, "plot forest", keep, group))
    except ValueError as e:
        parts.append(f"<p class=note>Paired effects: skipped ({html.escape(str(e))})</p>")
    parts += ["<h3>The paper's claims</h3>", claims_section(df, n_boot, keep, group),
              "<h3>Scores per setup</h3>", summary_table(grid, n_boot),
              "<details><summary>per concept (mean over the concept's jobs)</summary>",
              per_concept_table(grid), "</details>", "<h3>Figures</h3>"]
    for title, swept, make in FIGURES:
        try:
            fig = make(grid_rows(df, keep=swept)[0], n_boot)
        except ValueError as e:  # the group has no data for this figure
            parts.append(f"<p class=note>{html.escape(title)}: skipped ({html.escape(str(e))})</p>")
            continue
        parts.append(_figure(title, fig, keep=keep, group=group))
    if galleries:
        parts.append("<h3>Galleries</h3>")
        figs = gallery.gallery_figures(df)
        if not figs:
            parts.append("<p class=note>No sample images recorded in the rows' artifacts.</p>")
        for concept, fig in figs.items():
            parts.append(f"<figure><figcaption>{html.escape(str(concept))}</figcaption>"
                         f"<img class=gallery alt='gallery {html.escape(str(concept))}' src='{data_uri(fig, 'jpeg')}'></figure>")
    return parts


def wandb_section(lines: list[str] | None) -> str:
    """Where the sweep's own W&B run is (analysis/sweep_run.py's lines), or nothing."""
    if not lines:
        return ""
    return "<h2>W&amp;B</h2>" + "".join(f"<p class=wandb>{html.escape(line)}</p>" for line in lines)


def build_report(df: pd.DataFrame, sweep: str, jobs: dict | None = None, n_boot: int = N_BOOT,
                 galleries: bool = True, keep: Kept | None = None, wandb: list[str] | None = None) -> str:
    """The HTML text of one sweep's report: one section per comparable group of rows
    (analysis/protocol.py), objects before styles. `keep` collects what it drew (the sweep's
    W&B run logs it); `wandb`: lines saying where the sweep's W&B run is."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>tinv report: {html.escape(sweep)}</title>",
             f"<style>{_CSS}</style><script>{_CHECK_JS}</script></head><body>",
             f"<h1>Sweep {html.escape(sweep)}</h1>",
             f"<p class=note>{len(df)} result rows; generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
             "Intervals: 95% bootstrap over concepts and samples.</p>",
             wandb_section(wandb), "<h2>Jobs</h2>", jobs_section(jobs)]
    if df.empty:
        parts.append("<p class=bad>No job of this sweep finished with status ok: nothing to plot.</p></body></html>")
        return "\n".join(parts)
    groups = protocol.comparable_groups(df, ignore=SWEPT)
    if len(groups) > 1:
        parts.append("<p>The rows come from " + str(len(groups)) + " protocols that are not comparable; "
                     "each has its own section.</p><ul>" + "".join(
                         f"<li>{html.escape(protocol.title(v, g))}</li>" for v, g in groups) + "</ul>")
    for values, rows in groups:
        title = protocol.title(values, rows)
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts += group_section(rows, n_boot, galleries, keep, title)
    cols = [c for c in df.columns if not c.startswith(("scores.", "provenance.", "_"))
            and c not in ("per_prompt", "artifacts")]
    parts += ["<h2>All rows</h2><details><summary>show the table</summary>",
              df[cols].to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"),
              "</details></body></html>"]
    return "\n".join(parts)


def _jobs_of(jobs: dict | None, sweep: str) -> dict | None:
    """The job issues under this sweep's folder (<results_root>/<sweep>/...); all of them
    when the paths do not say (a table collected from folders named otherwise)."""
    if jobs is None:
        return None
    def mine(i):
        return f"/{sweep}/" in i["where"] + "/" or i["where"].startswith(f"{sweep}/")
    issues = jobs.get("failed", []) + jobs.get("missing", [])
    if not any(mine(i) for i in issues):
        return jobs
    return {**jobs, "failed": [i for i in jobs["failed"] if mine(i)],
            "missing": [i for i in jobs["missing"] if mine(i)]}


def write_reports(csv: str | Path, out: str | Path, sweep: str | None = None, n_boot: int = N_BOOT,
                  galleries: bool = True, keep: Kept | None = None, wandb: list[str] | None = None) -> list[Path]:
    """One report per sweep of the table; `out` is a .html file (one sweep) or a folder.
    `keep`, `wandb`: as build_report's (`wandb` None: read from each sweep's folder)."""
    csv, out = Path(csv), Path(out)
    df = load_results(csv)
    # Sweeps are named from every row: a sweep whose jobs all failed still gets its page.
    every = pd.read_csv(csv, usecols=lambda c: c == "sweep")
    all_names = every["sweep"].fillna("sweep").astype(str) if "sweep" in every else pd.Series(["sweep"])
    jobs_file = csv.with_name(csv.stem + ".jobs.json")
    jobs = json.loads(jobs_file.read_text()) if jobs_file.is_file() else None
    names = df["sweep"].fillna("sweep").astype(str) if "sweep" in df.columns else pd.Series("sweep", index=df.index)
    sweeps = [sweep] if sweep else sorted(all_names.unique())
    if sweep and sweep not in set(all_names):
        raise ValueError(f"sweep {sweep!r} is not in {csv}; it holds {sorted(all_names.unique())}")
    if out.suffix == ".html" and len(sweeps) > 1:
        raise ValueError(f"{csv} holds sweeps {sweeps}: pass --sweep NAME or a folder as -o")
    written = []
    for name in sweeps:
        path = out if out.suffix == ".html" else out / f"report-{name}.html"
        note = _wandb_lines(csv, jobs, name) if wandb is None else wandb
        atomic_write_text(path, build_report(df[names == name], name, _jobs_of(jobs, name), n_boot, galleries,
                                             keep, note))
        if wandb is None:
            for line in note:
                print(line, file=sys.stderr)
        written.append(path)
    return written


def _wandb_lines(csv: Path, jobs: dict | None, sweep: str) -> list[str]:
    """Where the sweep's own W&B run is, found in its sweep folder (<runs root>/<sweep>;
    the runs root from the table's jobs.json)."""
    from analysis import sweep_run     # it builds reports itself: imported when used
    if not jobs or not jobs.get("runs_root"):
        return []
    return sweep_run.where_lines(Path(os.path.normpath(csv.resolve().parent / jobs["runs_root"])) / sweep)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Self-contained HTML report per sweep.")
    ap.add_argument("csv")
    ap.add_argument("-o", "--out", required=True, help="report.html (one sweep) or a folder")
    ap.add_argument("--sweep", help="only this sweep of the table")
    ap.add_argument("--no-galleries", action="store_true", help="skip the sample galleries (no job folders needed)")
    ap.add_argument("--n-boot", type=int, default=N_BOOT)
    args = ap.parse_args(argv)
    try:
        paths = write_reports(args.csv, args.out, args.sweep, args.n_boot, not args.no_galleries)
    except (FileNotFoundError, ValueError) as e:
        return fail(e)
    for p in paths:
        print(f"wrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
