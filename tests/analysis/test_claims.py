"""claims.py on a fixture CSV whose effects are chosen claim by claim; and the verdict rule."""
from __future__ import annotations

import re

import numpy as np
import pytest

from analysis import claims, collect
from tests.analysis.conftest import make_row, write_row

CONCEPTS = ("red_star", "blue_cube", "green_ring", "cat_toy", "pink_square", "white_circle")
# setup -> (reconstruction, editability) relative to single-word; concepts add an offset
# shared by every setup, so only the pairing can see 0.05.
SHIFT = {
    "single_word": (0, 0), "image_only": (0, -0.15), "prompt_only": (-0.3, 0.1),
    "two_word": (0.05, -0.05), "three_word": (0.08, -0.07),                    # claim 2 holds
    "high_lr": (0.05, -0.05), "low_lr": (-0.1, 0.05),                          # claim 3 holds
    "regularized": (-0.1, 0.05),                                               # claim 4 holds
    "human_captions_short": (0.08, 0), "human_captions_long": (0.08, 0),       # 5 contradicted, 6 undecided
    "per_image_tokens": (0, 0), "progressive": (0, 0),                         # claim 7 holds
    "bipartite_inversion": (0.1, 0), "pivotal_tuning": (0, 0),                 # 8 and 9 undecided
}
EXPECTED = ["holds", "holds", "holds", "holds", "contradicted", "undecided", "holds", "undecided", "undecided"]


@pytest.fixture(scope="module")
def claims_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("claims")
    rng = np.random.default_rng(7)
    for ci, concept in enumerate(CONCEPTS):
        offset = 0.08 * (ci - 2.5) / 2.5
        for method, (dr, de) in SHIFT.items():
            row = make_row(method, concept, rng=rng, rec_mean=0.6 + offset + dr, edit_mean=0.25 + offset / 2 + de)
            # the learned word's distance to its initializer: the regularizer halves it
            row["metrics"]["embedding_dist_init"] = (0.5 if method == "regularized" else 1.0) + 0.01 * rng.standard_normal()
            write_row(root / "sweep" / f"{concept}-{method}", row)
    out = root / "results.csv"
    assert collect.main([str(root / "sweep"), "-o", str(out)]) == 0
    return out


def test_claims_md_gives_the_expected_verdicts(claims_csv, tmp_path, capsys):
    out = tmp_path / "claims.md"
    assert claims.main([str(claims_csv), "-o", str(out), "--n-boot", "500"]) == 0
    text = out.read_text()
    rows = [l for l in text.splitlines() if re.match(r"\| \d+ \|", l)]
    assert len(rows) == len(claims.CLAIMS) == len(EXPECTED)
    verdicts = [re.search(r"(holds|contradicted|undecided) \|$", r).group(1) for r in rows]
    assert verdicts == EXPECTED
    for row, claim in zip(rows, claims.CLAIMS):   # every claim cites the paper
        assert claim.section in row and claim.section.startswith(("§", "Appendix"))
    # a metric the table lacks makes its part undecided, with the reason, not a crash
    assert "undecided (the table has no reconstruction_oracle_unnamed)" in text
    assert "undecided (the table has no identity_oracle_named)" in text
    # effects come with their paired interval
    assert re.search(r"Three-word vs Single-word \(ours\), reconstruction \(CLIP\), expect ↑: "
                     r"\+0\.0\d\d \[\+0\.\d+, \+0\.\d+\] → holds", text)
    assert "n = 6 object concepts" in text


@pytest.mark.parametrize("expect, lo, hi, verdict", [
    ("higher", 0.01, 0.05, "holds"), ("higher", -0.05, -0.01, "contradicted"), ("higher", -0.01, 0.05, "undecided"),
    ("lower", -0.05, -0.01, "holds"), ("lower", 0.01, 0.05, "contradicted"),
    ("comparable", -0.01, 0.015, "holds"), ("comparable", 0.03, 0.06, "contradicted"),
    ("comparable", -0.01, 0.03, "undecided"),
    ("no gain", -0.05, 0.01, "holds"), ("no gain", 0.01, 0.05, "contradicted"), ("no gain", -0.01, 0.05, "undecided"),
])
def test_the_verdict_rule(expect, lo, hi, verdict):
    assert claims.part_verdict(expect, lo, hi, 0.02) == verdict


def test_a_claim_is_contradicted_by_any_part_and_holds_only_by_all():
    assert claims.claim_verdict(["holds", "contradicted", "undecided"]) == "contradicted"
    assert claims.claim_verdict(["holds", "undecided"]) == "undecided"
    assert claims.claim_verdict(["holds", "holds"]) == "holds"


def test_issue_11_metrics_are_used_when_the_table_has_them(claims_csv):
    """Per-attribute oracle metrics (one value per row, no per-sample list) pair by concept."""
    from analysis.table import load_results
    df = load_results(claims_csv)
    rng = np.random.default_rng(0)
    base = {c: 0.3 + 0.1 * i for i, c in enumerate(CONCEPTS)}   # concepts differ, captions lose 0.2
    df["reconstruction_oracle_unnamed"] = [base[c] - (0.2 if m.startswith("human_captions") else 0)
                                           + 0.01 * rng.standard_normal() for m, c in zip(df["method"], df["concept"])]
    part = claims.Part("human_captions_long", "reconstruction_oracle_unnamed", claims.LOWER)
    r = claims.decide_part(df, part, n_boot=500)
    assert r.verdict == "holds" and r.hi < 0 and r.lo < -0.2 < r.hi and r.n_concepts == len(CONCEPTS)
