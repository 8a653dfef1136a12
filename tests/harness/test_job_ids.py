"""Every job of the committed presets keeps its id (tests/harness/fixtures/job_ids.json, made by
tests/harness/job_ids.py): rows already computed stay found, whatever is refactored around the id."""
from __future__ import annotations

import json

from .job_ids import FIXTURE, compute


def test_the_presets_and_the_default_job_keep_their_ids_and_inversion_keys():
    want = json.loads(FIXTURE.read_text())
    got = compute(want["weights"])
    assert set(got["ids"]) == set(want["ids"]), "the presets' jobs changed: regenerate the fixture on purpose"
    moved = {n: (want["ids"][n], i) for n, i in got["ids"].items() if i != want["ids"][n]}
    assert not moved, (f"{len(moved)} job id(s) moved, e.g. {sorted(moved.items())[:3]}: a new config key "
                       "needs its default in tinv.harness.identity.LATER")
    assert got["inversions"] == want["inversions"], "inversion keys moved: stored inversions would not be reused"
