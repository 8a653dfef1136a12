"""The HTML report: self-contained, every figure present, opens in headless Chromium."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from analysis import claims, report
from analysis.table import load_results
from tests.analysis.conftest import CONCEPTS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def report_html(results_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert report.main([str(results_csv), "-o", str(out), "--n-boot", "100"]) == 0
    return out


def _chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install the chromium package (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def test_report_holds_every_figure_inline(report_html, results_csv):
    text = report_html.read_text()
    plots = re.findall(r"<img class=['\"]?plot[^>]*alt='([^']*)' src='data:image/png;base64,", text)
    # the paired effects come first, then every figure: nothing skipped
    assert plots == ["Paired effects (forest plot)"] + [title for title, _, _ in report.FIGURES]
    concepts = sorted(load_results(results_csv)["concept"].unique())
    assert len(re.findall(r"<img class=gallery ", text)) == len(concepts)
    assert "skipped" not in text
    # one comparable group (the guidance sweep is a figure of it, not another protocol)
    assert len(re.findall(r"<h2>Objects: ", text)) == 1
    # the claims table: one row per claim, each with a verdict, before the scores and figures
    claims_rows = re.findall(r"<tr><td>\d+\w?</td>.*?<td class=(holds|contradicted|undecided|negligible|not)>", text)
    assert len(claims_rows) == len(claims.OBJECT_CLAIMS)
    assert text.index("forest plot") < text.index("<table class=claims>") < text.index("Scores per setup") \
        < text.index("Figure 10(a)")
    # the per-concept tables name every concept, for both metrics of the paper's figure
    assert all(text.count(f"<th>{c}</th>") >= 2 for c in concepts)
    # self-contained: no file, http or relative references
    assert not re.search(r"""(src|href)=['"](?!data:)""", text)


def test_report_opens_in_headless_chromium(report_html, tmp_path):
    dom = _chromium(tmp_path, "--window-size=1200,2400", "--virtual-time-budget=10000", "--dump-dom",
                    report_html.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom.stdout).group(1)))
    n, ok = int(body["images"]), int(body["images-ok"])
    assert n == 1 + len(report.FIGURES) + len(CONCEPTS) and ok == n  # forest, plots, galleries decoded
    assert "js-error" not in body
    assert int(body["claims-rows"]) == len(claims.OBJECT_CLAIMS)
    # the forest plot and the claims table are on the first screen (2,400 px)
    assert 0 < int(body["forest-top"]) < int(body["claims-top"]) < 2400
    # figures are shown large enough to read (not shrunk into thumbnails)
    assert float(body["plot-min-width"]) >= 500


def test_report_screenshot_is_not_blank(report_html, tmp_path):
    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, "--window-size=1200,2400", "--hide-scrollbars",
                    f"--screenshot={shot}", report_html.as_uri())
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert px.shape == (2400, 1200)
    assert px.std() > 20 and (px < 128).mean() > 0.01  # plots drawn, not an empty white page


def test_one_report_per_sweep_into_a_folder(results_csv, tmp_path):
    paths = report.write_reports(results_csv, tmp_path / "reports", n_boot=20, galleries=False)
    assert [p.name for p in paths] == ["report-fixture.html"]
    with pytest.raises(ValueError, match="nope"):
        report.write_reports(results_csv, tmp_path / "r.html", sweep="nope")


def test_a_sweep_with_only_failed_jobs_still_gets_a_page(tmp_path):
    from analysis import collect
    from tests.analysis.conftest import make_row, write_row
    write_row(tmp_path / "runs" / "broken" / "red_star-single_word-abc", make_row("single_word", "red_star", status="failed"))
    csv = tmp_path / "r.csv"
    collect.main([str(tmp_path / "runs" / "broken"), "-o", str(csv)])
    [page] = report.write_reports(csv, tmp_path / "out", n_boot=20)
    text = page.read_text()
    assert page.name == "report-fixture.html"
    assert "0 ok, 1 failed, 0 missing" in text and "CUDA out of memory" in text
    assert "nothing to plot" in text
