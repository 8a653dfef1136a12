"""hydra/launcher=packed: a sweep's inversions packed together give, bit for bit, the rows an
unpacked sweep gives, every row valid; a rerun does no work. And a job's row does not depend
on how it was launched (issue 32): alone (`python run.py`), packed with other jobs in any
group, in 1 or 2 worker processes; `hydra.launcher.one_batch=true` (the group in one UNet
batch) is the positive control that moves the learned vectors."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tinv.engine.embeddings_io import read_embeddings

from .conftest import FAST, TOY, rows, run_cli
from .test_run import check_row

# Three learning jobs (per-image tokens: the renaming of <S*3-img0> back to <S*-img0>) and
# one that learns nothing; with pack=2 the learners form a packed pair and a job alone.
# No cpu_threads: the default (1) is what makes rows independent of the launch.
SWEEP = ["-m", "method=single_word,per_image_tokens,progressive,image_only", "concept=red_star", *FAST]
PACKED = ["hydra/launcher=packed", "hydra.launcher.pack=2"]
PACKED_KEYS = {"packed_invert_s", "packed_with", "packed_prep_s", "packed_one_batch"}
# Every metric and per-sample score: the bar. The learned vectors: bit for bit.
SCORE_TOL = 1e-5


def by_method(runs: Path, sweep: str) -> dict[str, dict]:
    return {r["choices"]["method"]: r for r in rows(runs, sweep)}


def embeddings(row: dict) -> dict[str, torch.Tensor]:
    return read_embeddings(Path(row["folder"]) / row["artifacts"]["embeddings"]["authors"])


def assert_same_row(ref: dict, row: dict) -> None:
    """The same job computed two ways: the same id, learned vectors bit for bit, every metric
    and per-sample score within SCORE_TOL."""
    m = ref["choices"]["method"]
    assert row["status"] == "ok" and row["job_id"] == ref["job_id"], (m, row["status"], row.get("error"))
    if "embeddings" in ref.get("artifacts", {}):
        ea, eb = embeddings(ref), embeddings(row)
        assert set(ea) == set(eb) and "<S*>" in eb, (sorted(ea), sorted(eb))
        for name in ea:
            assert torch.equal(ea[name], eb[name]), (m, name, float((ea[name] - eb[name]).abs().max()))
    assert set(row["metrics"]) == set(ref["metrics"]), m
    for name, value in ref["metrics"].items():
        assert abs(row["metrics"][name] - value) <= SCORE_TOL, (m, name, value, row["metrics"][name])
        if name in ref["scores"]:   # embedding_norm/_dist_init: one value, no samples
            assert torch.allclose(torch.tensor(ref["scores"][name]), torch.tensor(row["scores"][name]),
                                  rtol=0, atol=SCORE_TOL), (m, name)
    assert row["provenance"]["device"].endswith("1 threads)"), row["provenance"]["device"]


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> dict[str, dict]:
    """SWEEP with Hydra's basic launcher: each job alone, one after another. A results root
    of its own: in one root a packed sweep would find every job done and pack nothing."""
    root = tmp_path_factory.mktemp("runs-alone")
    res = run_cli([*SWEEP, "sweep=alone"], root)
    assert res.returncode == 0, res.stderr[-3000:]
    return by_method(root, "alone")


def test_packed_sweep_matches_unpacked_and_reruns_do_nothing(runs, alone):
    packed = run_cli([*SWEEP, "sweep=packed", *PACKED], runs)
    assert packed.returncode == 0, packed.stderr[-3000:]
    assert (packed.stdout + packed.stderr).count("packed inversion of 2 jobs") == 1
    a, p = alone, by_method(runs, "packed")
    assert set(a) == set(p) == {"single_word", "per_image_tokens", "progressive", "image_only"}

    pair = [m for m, r in p.items() if "packed_with" in r["timings"]]
    assert sorted(pair) == ["per_image_tokens", "single_word"]      # sweep order, 2 per pack
    for m, r in p.items():
        t = r["timings"]
        if m in pair:
            assert t["packed_with"] == [p[x]["job_id"] for x in pair if x != m]   # the other job
            assert t["invert_s"] >= t["packed_invert_s"] / 2 > 0 and t["packed_one_batch"] is False
            assert t["total_s"] >= t["invert_s"] + t["sample_s"] + t["evaluate_s"]   # share included
            t = {k: v for k, v in t.items() if k not in PACKED_KEYS}
        check_row({**r, "timings": t}, Path(r["folder"]))
        assert r["job_id"] == a[m]["job_id"]          # the same job: the sweep name is not identity
        assert not PACKED_KEYS & set(a[m]["timings"])

    for m in p:
        assert_same_row(a[m], p[m])
    assert p["per_image_tokens"]["training"]["loss_last"] == a["per_image_tokens"]["training"]["loss_last"]
    assert any(k.startswith("<S*-img") for k in embeddings(p["per_image_tokens"]))

    # the pair checkpointed to one group folder (a rerun of the same group resumes there)
    assert len(list((runs / "jobs" / "_packed").glob("*/inversion_checkpoint.pt"))) == 1

    before = copy.deepcopy(p)
    again = run_cli([*SWEEP, "sweep=packed", *PACKED], runs)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "packed inversion" not in log and log.count("is done already") == 4
    assert "4 jobs: 0 ok, 0 failed, 4 done already" in log     # the sweep's own summary
    assert by_method(runs, "packed") == before


def test_a_jobs_row_does_not_depend_on_how_it_was_launched(tmp_path, alone):
    """red_star's single word and progressive jobs: alone (above, and `python run.py`),
    packed with per_image_tokens (above), packed with blue_heart's job of the same setup in
    2 worker processes: one row each, bit for bit the same vectors."""
    lone = run_cli(["method=single_word", "concept=red_star", *FAST], tmp_path / "lone")
    assert lone.returncode == 0, lone.stderr[-3000:]
    assert_same_row(alone["single_word"], rows(tmp_path / "lone")[0])

    root = tmp_path / "workers"
    two = run_cli(["-m", "method=single_word,progressive", "concept=blue_heart,red_star", *FAST, *PACKED,
                   "hydra.launcher.workers=2", "sweep=w"], root)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "in 2 worker processes" in two.stdout + two.stderr
    found = {(r["choices"]["method"], r["config"]["concept"]["name"]): r for r in rows(root, "w")}
    assert len({r["attempts"][-1]["pid"] for r in found.values()}) == 2     # both workers ran a group
    for m in ("single_word", "progressive"):
        row = found[(m, "red_star")]
        assert row["timings"]["packed_with"] == [found[(m, "blue_heart")]["job_id"]]   # another group
        assert_same_row(alone[m], row)


def test_one_batch_packing_moves_the_vectors(tmp_path, alone):
    """The positive control: the same pair in ONE UNet batch (hydra.launcher.one_batch=true)
    learns other vectors (CPU kernels are not batch invariant), and the row says so."""
    res = run_cli(["-m", "method=single_word,progressive", "concept=red_star", *FAST, *PACKED,
                   "hydra.launcher.one_batch=true", "sweep=one"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    one = by_method(tmp_path, "one")
    assert one["single_word"]["timings"]["packed_one_batch"] is True
    ea, eb = embeddings(alone["single_word"]), embeddings(one["single_word"])
    assert float((ea["<S*>"] - eb["<S*>"]).abs().max()) < 1e-3      # float error, not another result
    if torch.equal(ea["<S*>"], eb["<S*>"]) and _batch_invariant():
        # some CPUs (seen on an AMD EPYC dev VM) run this UNet bit for bit alike at batch 4 and
        # 8: there the one-batch pair must learn the same vectors, and the control shows nothing
        pytest.skip("this CPU's kernels are batch invariant for the toy UNet at batch 4 vs 8")
    assert not torch.equal(ea["<S*>"], eb["<S*>"])


def _batch_invariant() -> bool:
    """Whether the toy UNet gives 4 samples the same output bit for bit alone and inside a
    batch of 8 (the packed pair's one batch) on this CPU."""
    from tinv.engine.models import load_parts
    from tinv.toyworld import MODEL_DIR
    if not TOY:
        return False
    unet, g = load_parts(MODEL_DIR).unet, torch.Generator().manual_seed(0)
    x, t = torch.randn(8, 4, 16, 16, generator=g), torch.randint(0, 1000, (8,), generator=g)
    c = torch.randn(8, 77, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return torch.equal(unet(x[:4], t[:4], c[:4]).sample, unet(x, t, c).sample[:4])
