"""hydra/launcher=packed: a sweep's inversions packed into one UNet batch give the rows an
unpacked sweep gives (up to float error), every row valid; a rerun does no work."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from tinv.engine.embeddings_io import read_embeddings

from .conftest import FAST, rows, run_cli
from .test_run import check_row

# Three learning jobs (per-image tokens: the renaming of <S*3-img0> back to <S*-img0>) and
# one that learns nothing; with pack=2 the learners form a packed pair and a job alone.
# One torch thread in both sweeps: `cpu_threads=auto` follows the load average, and two
# thread counts sum floats in two orders (1.4e-4 apart on a busy machine).
SWEEP = ["-m", "method=single_word,per_image_tokens,progressive,image_only", "concept=red_star", *FAST,
         "cpu_threads=1"]
PACKED = ["hydra/launcher=packed", "hydra.launcher.pack=2"]
PACKED_KEYS = {"packed_invert_s", "packed_with", "packed_prep_s"}
# Embeddings: the packed UNet batch sums in another order; a few float32 ulps after 3 Adam
# steps, except where Adam divides a near-zero gradient by its own small sqrt(v) (a per-image
# token's coordinates): there a few ulps of gradient moved one coordinate by about 1e-4 on the
# ToyWorld 3 weights. Scores: samples from those embeddings, through the toy CLIP and the oracle.
EMBED_TOL, SCORE_TOL = 1e-3, 1e-4


def by_method(runs: Path, sweep: str) -> dict[str, dict]:
    return {r["choices"]["method"]: r for r in rows(runs, sweep)}


def embeddings(row: dict) -> dict[str, torch.Tensor]:
    return read_embeddings(Path(row["folder"]) / row["artifacts"]["embeddings"]["authors"])


def test_packed_sweep_matches_unpacked_and_reruns_do_nothing(runs):
    # a results root of its own: in one root the packed sweep would find every job done
    # (the job store is shared by all sweeps) and pack nothing
    apart = runs.parent / "runs-alone"
    alone = run_cli([*SWEEP, "sweep=alone"], apart)
    assert alone.returncode == 0, alone.stderr[-3000:]
    packed = run_cli([*SWEEP, "sweep=packed", *PACKED], runs)
    assert packed.returncode == 0, packed.stderr[-3000:]
    assert (packed.stdout + packed.stderr).count("packed inversion of 2 jobs") == 1
    a, p = by_method(apart, "alone"), by_method(runs, "packed")
    assert set(a) == set(p) == {"single_word", "per_image_tokens", "progressive", "image_only"}

    pair = [m for m, r in p.items() if "packed_with" in r["timings"]]
    assert sorted(pair) == ["per_image_tokens", "single_word"]      # sweep order, 2 per pack
    for m, r in p.items():
        t = r["timings"]
        if m in pair:
            assert t["packed_with"] == [p[x]["job_id"] for x in pair if x != m]   # the other job
            assert t["invert_s"] >= t["packed_invert_s"] / 2 > 0
            assert t["total_s"] >= t["invert_s"] + t["sample_s"] + t["evaluate_s"]   # share included
            t = {k: v for k, v in t.items() if k not in PACKED_KEYS}
        check_row({**r, "timings": t}, Path(r["folder"]))
        assert r["job_id"] == a[m]["job_id"]          # the same job: the sweep name is not identity
        assert not PACKED_KEYS & set(a[m]["timings"])

    for m in pair + ["progressive"]:
        ea, ep = embeddings(a[m]), embeddings(p[m])
        assert set(ea) == set(ep) and "<S*>" in ep, (sorted(ea), sorted(ep))
        if m == "per_image_tokens":
            assert any(k.startswith("<S*-img") for k in ep)
        for name in ea:
            assert torch.allclose(ea[name], ep[name], rtol=0, atol=EMBED_TOL), \
                (m, name, float((ea[name] - ep[name]).abs().max()))
        assert np.allclose(a[m]["training"]["loss_last"], p[m]["training"]["loss_last"], rtol=1e-4)
    for m in p:
        for name, value in a[m]["metrics"].items():
            assert abs(p[m]["metrics"][name] - value) <= SCORE_TOL, (m, name)
            if name in a[m]["scores"]:   # embedding_norm/_dist_init: one value, no samples
                assert np.allclose(a[m]["scores"][name], p[m]["scores"][name], rtol=0, atol=SCORE_TOL), (m, name)

    # the pair checkpointed to one group folder (a rerun of the same group resumes there)
    assert len(list((runs / "jobs" / "_packed").glob("*/inversion_checkpoint.pt"))) == 1

    before = copy.deepcopy(p)
    again = run_cli([*SWEEP, "sweep=packed", *PACKED], runs)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "packed inversion" not in log and log.count("is done already") == 4
    assert "4 jobs: 0 ok, 0 failed, 4 done already" in log     # the sweep's own summary
    assert by_method(runs, "packed") == before
