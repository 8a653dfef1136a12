"""The three CSV-only figures: points per setup, axis labels, intervals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from analysis import plot_guidance, plot_setsize, plot_tradeoff, style
from analysis.table import hierarchical_bootstrap, load_results, where
from tests.analysis.conftest import TRUTH

N_BOOT = 400  # enough for stable 95% bounds, fast on 2 cores


def _containers(ax) -> dict[str, ErrorbarContainer]:
    return {c.lines[0].get_gid(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}


def _y_intervals(container) -> np.ndarray:
    """[[lo, hi], ...] of a container's vertical error bars, read back from the Axes."""
    segs = container.lines[2][-1].get_segments()
    return np.array([[s[:, 1].min(), s[:, 1].max()] for s in segs])


def _x_intervals(container) -> np.ndarray:
    segs = container.lines[2][0].get_segments()
    return np.array([[s[:, 0].min(), s[:, 0].max()] for s in segs])


@pytest.mark.parametrize("family,editability", [("clip", "meanemb"), ("clip", "persample"), ("oracle", "meanemb")])
def test_tradeoff_one_point_per_setup_with_intervals(tradeoff_csv, family, editability):
    df = load_results(tradeoff_csv)
    fig, summary = plot_tradeoff.plot_tradeoff(df, editability, family, n_boot=N_BOOT)
    ax = fig.axes[0]
    boxes = _containers(ax)
    assert set(boxes) == set(TRUTH)
    rec = {"clip": "reconstruction_clip", "oracle": "reconstruction_oracle"}[family]
    edit = {"clip": f"editability_clip_{editability}", "oracle": "editability_oracle"}[family]
    for name, c in boxes.items():
        xy = c.lines[0].get_xydata()
        assert xy.shape == (1, 2), name          # exactly one point per setup
        row = summary.set_index("method").loc[name]
        # the paper's Figure 10(a): editability on x, reconstruction on y
        assert xy[0] == pytest.approx([row[edit], row[rec]])
        # The drawn intervals are the summary's, and they bracket the point.
        (lo, hi), = _y_intervals(c)
        assert (lo, hi) == pytest.approx((row[f"{rec}.lo"], row[f"{rec}.hi"]))
        (xlo, xhi), = _x_intervals(c)
        assert (xlo, xhi) == pytest.approx((row[f"{edit}.lo"], row[f"{edit}.hi"]))
        assert lo < row[rec] < hi and xlo < row[edit] < xhi
        assert c.get_label().endswith(style.style(name).label)
    assert ax.get_ylabel().startswith("Reconstruction") and family in ax.get_ylabel().lower()
    assert ax.get_xlabel().startswith("Editability")
    if family == "clip":
        assert ("mean embedding" if editability == "meanemb" else "per-sample") in ax.get_xlabel()
        for name, (r, e) in TRUTH.items():  # the clip scores are Gaussian around the truth
            row = summary.set_index("method").loc[name]
            assert row["reconstruction_clip"] == pytest.approx(r, abs=0.02), name


def test_tradeoff_other_orientation_on_request(tradeoff_csv):
    fig, summary = plot_tradeoff.plot_tradeoff(load_results(tradeoff_csv), n_boot=50, x="reconstruction")
    ax = fig.axes[0]
    row = summary.set_index("method").loc["single_word"]
    xy = _containers(ax)["single_word"].lines[0].get_xydata()[0]
    assert xy == pytest.approx([row["reconstruction_clip"], row["editability_clip_meanemb"]])
    assert ax.get_xlabel().startswith("Reconstruction")


def test_tradeoff_labels_are_numbers_keyed_in_the_legend_and_never_overlap(tradeoff_csv):
    fig, summary = plot_tradeoff.plot_tradeoff(load_results(tradeoff_csv), n_boot=50)
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = {t.get_gid()[len("label:"):]: t for t in ax.texts if str(t.get_gid()).startswith("label:")}
    assert set(labels) == set(TRUTH)
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    for name, t in labels.items():  # each number is keyed to its setup in the legend
        assert f"{t.get_text()}  {style.style(name).label}" in legend
    boxes = [t.get_window_extent(renderer) for t in labels.values()]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), "two point labels overlap"
    # the figure says what it rests on
    assert "n = 4 object concepts" in ax.get_title() and "6 samples per prompt" in ax.get_title()
    assert "eval=paper" in ax.get_title()


def test_tradeoff_references_stand_out(tradeoff_csv):
    fig, _ = plot_tradeoff.plot_tradeoff(load_results(tradeoff_csv), n_boot=100)
    boxes = _containers(fig.axes[0])
    ref_size = boxes["image_only"].lines[0].get_markersize()
    assert ref_size > boxes["single_word"].lines[0].get_markersize()
    assert boxes["prompt_only"].lines[0].get_marker() == "*"


def test_tradeoff_cli_writes_png_and_pdf(tradeoff_csv, tmp_path):
    out = tmp_path / "fig.png"
    assert plot_tradeoff.main([str(tradeoff_csv), "-o", str(out), "--n-boot", "50",
                               "--editability", "persample", "--x", "reconstruction"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"


def test_tradeoff_names_a_missing_metric(tradeoff_csv):
    df = load_results(tradeoff_csv).drop(columns=["reconstruction_dino"], errors="ignore")
    with pytest.raises(ValueError, match="reconstruction_dino"):
        plot_tradeoff.plot_tradeoff(df, family="dino")


def test_bootstrap_is_seeded_and_narrows_with_more_samples():
    rng = np.random.default_rng(5)
    small = [rng.normal(0.5, 0.1, 8) for _ in range(4)]
    big = [rng.normal(0.5, 0.1, 400) for _ in range(40)]
    a, b = hierarchical_bootstrap(small, 500), hierarchical_bootstrap(small, 500)
    assert (a.lo, a.hi) == (b.lo, b.hi)
    assert a.lo < a.mean < a.hi
    wide, narrow = a.hi - a.lo, hierarchical_bootstrap(big, 500).hi - hierarchical_bootstrap(big, 500).lo
    assert narrow < wide / 3


def test_bootstrap_resamples_concepts_too():
    # Concepts far apart but samples tight: the interval must reflect the concept spread.
    groups = [np.full(50, v) + 1e-4 * np.arange(50) for v in (0.2, 0.4, 0.6, 0.8)]
    est = hierarchical_bootstrap(groups, 500)
    assert est.hi - est.lo > 0.1
    assert est.n_concepts == 4 and est.n_samples == 200


def test_setsize_one_point_per_size_and_references(results_csv):
    df = where(load_results(results_csv), ["eval.guidance=5"])  # the guidance sweep is another protocol
    fig, lines, refs = plot_setsize.plot_setsize(df, n_boot=N_BOOT)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xlabel() == "Number of training images"
        c = _containers(ax)["single_word"]
        xy = c.lines[0].get_xydata()
        assert list(xy[:, 0]) == [1, 2, 5, 10, 25]
        ivals = _y_intervals(c)
        assert np.all(ivals[:, 0] < xy[:, 1]) and np.all(xy[:, 1] < ivals[:, 1])
        gids = {l.get_gid() for l in ax.lines}
        assert {"ref:image_only", "ref:prompt_only", "ref:human_captions_short", "ref:human_captions_long"} <= gids
    assert fig.axes[0].get_ylabel().startswith("Reconstruction")
    assert fig.axes[1].get_ylabel().startswith("Editability")
    assert "n = 1 object concept · 6 samples per prompt · eval=paper" in fig._suptitle.get_text()
    # The fixture's editability falls with the set size; the figure must show that.
    edit = lines[lines["method"] == "single_word"]["editability_clip_meanemb"].to_numpy()
    assert edit[0] > edit[-1]
    # References come from the set-size concept only.
    assert set(refs["editability_clip_meanemb.n_concepts"]) == {1}


def test_setsize_without_references_draws_the_lines_alone(results_csv):
    # `experiment=setsize` runs before `setsize_references`: its sweep folder (and the report
    # drawn at its end) holds the single word's rows only
    df = where(load_results(results_csv), ["eval.guidance=5"])
    fig, lines, refs = plot_setsize.plot_setsize(df[df["method"] == "single_word"], n_boot=N_BOOT)
    for ax in fig.axes:
        assert list(_containers(ax)["single_word"].lines[0].get_xydata()[:, 0]) == [1, 2, 5, 10, 25]
        assert not [l for l in ax.lines if str(l.get_gid()).startswith("ref:")]
    assert refs.empty


def test_guidance_lines_per_method(results_csv):
    df = load_results(results_csv)
    fig, lines, _ = plot_guidance.plot_guidance(df, n_boot=N_BOOT)
    for ax in fig.axes:
        assert ax.get_xlabel() == "Guidance scale s"
        boxes = _containers(ax)
        for m in ("bipartite_inversion", "pivotal_tuning"):
            xs = boxes[m].lines[0].get_xydata()[:, 0]
            assert list(xs) == [1.0, 2.5, 5.0, 7.5, 10.0]
            assert len(_y_intervals(boxes[m])) == 5
    # Only the two concepts swept over s; the grid's other concepts (all at s=5) stay out.
    n = lines.set_index(["method", "eval.guidance"])["reconstruction_clip.n_concepts"]
    assert set(n) == {2}


def test_setsize_names_the_missing_column(tradeoff_csv):
    with pytest.raises(ValueError, match="--x"):
        plot_setsize.plot_setsize(load_results(tradeoff_csv))


@pytest.mark.parametrize("module", [plot_setsize, plot_guidance])
def test_cli_writes_both_formats(module, results_csv, tmp_path):
    out = tmp_path / "f.pdf"
    keep = ["--where", "eval.guidance=5"] if module is plot_setsize else []
    assert module.main([str(results_csv), "-o", str(out), "--n-boot", "50", *keep]) == 0
    assert out.read_bytes()[:5] == b"%PDF-" and out.with_suffix(".png").stat().st_size > 1000


def test_csv_alone_carries_per_sample_scores(results_csv):
    df = pd.read_csv(results_csv)
    assert "scores.reconstruction_clip" in df.columns and "method.inversion.lr" in df.columns
    assert {"method", "concept", "model", "seed"} <= set(df.columns)


def test_unscorable_samples_are_dropped_not_propagated():
    import json
    from analysis.table import concept_samples
    df = pd.DataFrame({"concept": ["a", "a", "b"], "reconstruction_clip": [0.5, 0.7, 0.9],
                       "scores.reconstruction_clip": [json.dumps([0.4, float("nan"), 0.6]), None, "[null]"]})
    a, b = concept_samples(df, "reconstruction_clip")
    assert list(a) == [0.4, 0.6, 0.7]   # a row without scores adds its metric value
    assert list(b) == [0.9]             # so does a row whose scores are all unscorable


def test_where_keeps_the_fig10_protocol(results_csv):
    df = load_results(results_csv)
    kept = where(df, ["eval.guidance=5", "concept.n_images=5"])
    assert set(kept["eval.guidance"]) == {5.0} and set(kept["concept.n_images"]) == {5}
    _, summary = plot_tradeoff.plot_tradeoff(kept, n_boot=50)
    assert summary.set_index("method").loc["pivotal_tuning", "reconstruction_clip.n_concepts"] == 4
    with pytest.raises(ValueError, match="nope"):
        where(df, ["nope=1"])


def test_setsize_reads_reconstruction_against_the_heldout_images_where_every_row_has_them(results_csv):
    df = where(load_results(results_csv), ["eval.guidance=5"])
    df["reconstruction_clip_heldout"] = 0.5 + 0.01 * np.log(df["concept.n_images"])   # a fixed set: its own curve
    fig, lines, _ = plot_setsize.plot_setsize(df, n_boot=N_BOOT)
    assert fig.axes[0].get_ylabel() == "Reconstruction: CLIP similarity to held-out images"
    assert "reconstruction_clip_heldout" in lines.columns and "reconstruction_clip" not in lines.columns
    from analysis.table import SETUP_COLUMN
    one = df.index[(df[SETUP_COLUMN] == "single_word") & (df["concept.n_images"] == 2)][0]
    df.loc[one, "reconstruction_clip_heldout"] = np.nan     # one point of the line without: the training-set score, said
    fig, _, _ = plot_setsize.plot_setsize(df, n_boot=N_BOOT)
    assert fig.axes[0].get_ylabel() == "Reconstruction: CLIP image-image similarity"


def test_setsize_keeps_the_heldout_score_when_a_size_has_a_twin_row_without_it(results_csv):
    # the grid's own job (run before held-out images were scored) beside the set-size sweep's
    # job of the same size: the line reads the held-out score, the twin adds nothing to it
    df = where(load_results(results_csv), ["eval.guidance=5"])
    from analysis.table import SETUP_COLUMN
    sw = df[SETUP_COLUMN] == "single_word"
    df.loc[sw, "reconstruction_clip_heldout"] = 0.5 + 0.01 * np.log(df.loc[sw, "concept.n_images"])
    _, alone, _ = plot_setsize.plot_setsize(df, n_boot=N_BOOT)
    twin = df[sw & (df["concept.n_images"] == 5)].assign(reconstruction_clip_heldout=np.nan)
    fig, lines, refs = plot_setsize.plot_setsize(pd.concat([df, twin], ignore_index=True), n_boot=N_BOOT)
    assert fig.axes[0].get_ylabel() == "Reconstruction: CLIP similarity to held-out images"
    assert np.allclose(lines["reconstruction_clip_heldout"], alone["reconstruction_clip_heldout"])
    # the references have no held-out score here: none drawn on that panel, all on the other
    assert not [l for l in fig.axes[0].lines if str(l.get_gid()).startswith("ref:")]
    assert [l for l in fig.axes[1].lines if str(l.get_gid()).startswith("ref:")]
