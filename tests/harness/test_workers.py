"""A local sweep on every core (tinv/launch/workers.py): the packed launcher's units in worker
processes give the rows one process with one thread gives, and bad settings stop at once."""
from __future__ import annotations

import pytest

from tinv.launch import workers

from .conftest import FAST, one_error, rows, run_cli

SWEEP = ["-m", "method=single_word,two_word,prompt_only", "concept=red_star,blue_heart", *FAST,
         "hydra/launcher=packed", "hydra.launcher.pack=2"]


def _by_job(found: list[dict]) -> dict[str, dict]:
    return {r["job_id"]: r for r in found}


def test_two_workers_give_the_rows_of_one_process_with_one_thread(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    res1 = run_cli([*SWEEP, "sweep=w", "cpu_threads=1", "hydra.launcher.workers=1"], one)
    assert res1.returncode == 0, res1.stderr[-3000:]
    res2 = run_cli([*SWEEP, "sweep=w", "cpu_threads=auto", "hydra.launcher.workers=2"], two)   # auto: capped at 1
    assert res2.returncode == 0, res2.stderr[-3000:]
    assert "in 2 worker processes" in res2.stdout + res2.stderr
    assert "worker processes" not in res1.stdout + res1.stderr
    a, b = _by_job(rows(one, "w")), _by_job(rows(two, "w"))
    assert len(a) == 6 and set(a) == set(b)         # same jobs, same ids
    for job, row in a.items():
        assert b[job]["metrics"] == row["metrics"], job          # exactly, not approximately
        assert b[job]["status"] == "ok"
        assert b[job]["provenance"]["device"].endswith("1 threads)"), b[job]["provenance"]["device"]
    # both workers ran jobs, and neither is the launcher (whose pid no row has)
    pids = {r["attempts"][-1]["pid"] for r in b.values()}
    assert len(pids) == 2, pids
    # the packed group still inverted once per concept and setup: no inversion twice
    learners = [r for r in b.values() if r["choices"]["method"] != "prompt_only"]
    assert all("packed_with" in r["timings"] for r in learners), [r["timings"] for r in learners]


@pytest.mark.parametrize("value, said", [("0", "hydra.launcher.workers=0 (auto, or an integer >= 1)"),
                                         ("many", "hydra.launcher.workers='many' (auto, or an integer >= 1)")])
def test_bad_workers_is_one_error_line(tmp_path, value, said):
    res = run_cli(["-m", "method=single_word", *FAST, "hydra/launcher=packed",
                   f"hydra.launcher.workers={value}", "hydra.launcher.pack=0", "hydra.launcher.one_batch=maybe"],
                  tmp_path)
    line = one_error(res, tmp_path)
    assert said in line and "hydra.launcher.pack=0 (an integer >= 1)" in line, line
    assert "hydra.launcher.one_batch='maybe' (true or false)" in line, line


def test_worker_count_follows_the_cores_and_the_units():
    cores = workers.usable_cores()
    cpu = [{"device": "cpu"}]
    assert workers.count("auto", 100, cpu) == min(cores, workers.AUTO_MAX)
    assert workers.count(3, 2, cpu) == 2                     # never more processes than units
    assert workers.count(1, 10, cpu) == 1
    with pytest.raises(ValueError, match="workers=True"):
        workers.check_workers(True)


def test_worker_threads_are_capped_at_their_share(monkeypatch):
    import torch

    from tinv.harness.loading import set_cpu_threads
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(workers.SHARE_ENV, "1")
        assert set_cpu_threads("auto", "cpu") == 1
        assert set_cpu_threads(2, "cpu") == 2               # an explicit count is the user's
    finally:
        torch.set_num_threads(before)


def test_sampling_streams_follow_the_cores_share_and_device(monkeypatch):
    """auto: this process's cores (a worker's share) over torch's threads; 1 on CUDA."""
    import torch

    from tinv.engine import sampling
    from tinv.harness import loading
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setattr(loading, "usable_cores", lambda: 4)
        monkeypatch.delenv(workers.SHARE_ENV, raising=False)
        assert loading.set_sample_streams("auto", "cpu") == 4 == sampling._STREAMS
        torch.set_num_threads(2)
        assert loading.set_sample_streams("auto", "cpu") == 2
        monkeypatch.setenv(workers.SHARE_ENV, "1")           # a sweep worker's share: one stream
        assert loading.set_sample_streams("auto", "cpu") == 1
        assert loading.set_sample_streams(3, "cpu") == 3     # an explicit count is the user's
        assert loading.set_sample_streams("auto", "cuda") == 1
    finally:
        torch.set_num_threads(before)
        sampling.set_streams(1)
