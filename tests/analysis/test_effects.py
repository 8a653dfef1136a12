"""Paired effects: a known difference is recovered, a null one is not invented, and the
pairing sees what the unpaired intervals cannot."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import effects
from analysis.table import Pair, concept_samples, hierarchical_bootstrap, paired_bootstrap

N_BOOT = 1000


def synthetic_table(effect: float, n_concepts: int = 10, n_samples: int = 32, seed: int = 0) -> pd.DataFrame:
    """Two setups on the same concepts and noise seeds. Concepts differ a lot (sd 0.15),
    a seed moves both setups alike (sd 0.05), each sample adds its own noise (sd 0.02);
    setup B is A plus `effect` everywhere."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_concepts):
        base = 0.6 + 0.15 * rng.standard_normal()
        seed_part = 0.05 * rng.standard_normal(n_samples)
        for setup, shift in (("single_word", 0.0), ("three_word", effect)):
            scores = base + seed_part + shift + 0.02 * rng.standard_normal(n_samples)
            rows.append({"method": setup, "concept": f"c{c}", "reconstruction_clip": scores.mean(),
                         "scores.reconstruction_clip": json.dumps(scores.tolist())})
    return pd.DataFrame(rows)


def test_a_known_effect_is_recovered():
    truth = 0.03
    e = effects.paired_effects(synthetic_table(truth), n_boot=N_BOOT).set_index("method").loc["three_word"]
    assert e["lo"] < truth < e["hi"]          # the interval covers the truth
    assert e["lo"] > 0                        # and excludes 0
    assert e["effect"] == pytest.approx(truth, abs=0.01)
    assert e["pairing"] == "samples" and e["n_concepts"] == 10


def test_the_pairing_separates_what_the_unpaired_intervals_cannot():
    df = synthetic_table(0.03)
    a, b = (hierarchical_bootstrap(concept_samples(df[df["method"] == m], "reconstruction_clip"), N_BOOT)
            for m in ("single_word", "three_word"))
    assert a.hi > b.lo                        # unpaired: the intervals overlap
    e = effects.paired_effects(df, n_boot=N_BOOT).iloc[0]
    assert e["lo"] > 0 and (e["hi"] - e["lo"]) < (a.hi - a.lo) / 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_null_effect_covers_zero(seed):
    e = effects.paired_effects(synthetic_table(0.0, seed=seed), n_boot=N_BOOT).iloc[0]
    assert e["lo"] < 0 < e["hi"]


def test_unequal_sample_counts_pair_by_concept_only():
    rng = np.random.default_rng(3)
    pairs = [Pair(0.7 + 0.01 * rng.standard_normal(16), 0.6 + 0.01 * rng.standard_normal(5), False)
             for _ in range(6)]
    est = paired_bootstrap(pairs, N_BOOT)
    assert est.lo < 0.1 < est.hi and est.n_concepts == 6 and est.n_samples == 96


def test_forest_plot_one_interval_per_setup_and_panel(tradeoff_csv):
    from analysis.table import load_results
    from matplotlib.container import ErrorbarContainer
    df = load_results(tradeoff_csv)
    fig, eff = effects.plot_forest(df, n_boot=100)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels][:3] == ["reconstruction (CLIP)", "editability (CLIP, mean emb.)",
                                                     "editability (CLIP, per-sample)"]
    learned = set(df["method"]) - {"single_word", "image_only", "prompt_only"}
    for ax in panels:
        drawn = {c.lines[0].get_gid() for c in ax.containers if isinstance(c, ErrorbarContainer)}
        assert drawn == learned
    # the fixture's truth: pivotal tuning reconstructs better than single-word (0.84 vs 0.78)
    row = eff.set_index(["method", "metric"]).loc[("pivotal_tuning", "reconstruction_clip")]
    assert row["lo"] < 0.06 < row["hi"] and row["lo"] > 0
    assert "n = 4 object concepts" in fig._suptitle.get_text()


def test_effects_cli_writes_the_figure_and_refuses_a_missing_reference(tradeoff_csv, tmp_path, capsys):
    out = tmp_path / "forest.png"
    assert effects.main([str(tradeoff_csv), "-o", str(out), "--n-boot", "50",
                         "--table", str(tmp_path / "eff.csv")]) == 0
    assert out.is_file() and out.with_suffix(".pdf").is_file()
    assert {"effect", "lo", "hi", "pairing"} <= set(pd.read_csv(tmp_path / "eff.csv").columns)
    capsys.readouterr()
    assert effects.main([str(tradeoff_csv), "-o", str(out), "--reference", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nope" in err[0]


def test_paired_effects_show_the_steps_dvar_saves():
    """training.steps is one value per row: DVAR's saving pairs by concept, beside what
    stopping early cost in reconstruction and editability (claims_world: 300 vs ~30)."""
    from tests.analysis import claims_world as w
    df = w.table(w.world())
    df = df[(df["concept.kind"] == "object") & (df["eval.guidance"] == 5.0) & (df["concept.n_images"] == 5)]
    got = effects.paired_effects(df, setups=["single_word_dvar"], n_boot=200).set_index("metric")
    steps = got.loc[w.STEPS]
    assert steps["pairing"] == "concepts" and steps["n_concepts"] == len(w.CONCEPTS)
    assert steps["lo"] <= steps["effect"] <= steps["hi"] < -250
    assert abs(got.loc[w.REC, "effect"]) < 0.02 and abs(got.loc[w.EDIT, "effect"]) < 0.02
