"""tinv.core.atomic, the one way anything is written: whole or not at all, with a plain file's mode."""
from __future__ import annotations

import json
import os

import pytest

from tinv.core import atomic


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "sub" / "row.json"
    atomic.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.replacing(path) as tmp:
            tmp.write_text('{"a": 2, "half')
            raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["row.json"]


def test_files_get_the_mode_a_plain_open_gives(tmp_path):
    old = os.umask(0o027)
    try:
        f = atomic.write_text(tmp_path / "t.txt", "x")
        d = tmp_path / "d"
        with atomic.replacing_dir(d) as tmp:
            (tmp / "a").write_text("1")
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == 0o640       # not mkstemp's 0600
    assert d.stat().st_mode & 0o777 == 0o750


def test_a_folder_is_swapped_in_whole(tmp_path):
    d = tmp_path / "weights"
    with atomic.replacing_dir(d) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(ValueError):
        with atomic.replacing_dir(d) as tmp:
            (tmp / "a").write_text("new, half")
            raise ValueError("interrupted")
    assert (d / "a").read_text() == "old"          # the failed rewrite never showed
    with atomic.replacing_dir(d) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in d.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]   # no temp or old folder left
    # keep_existing: a second maker of the same folder loses the race and leaves it alone
    with atomic.replacing_dir(d, keep_existing=True) as tmp:
        (tmp / "c").write_text("late")
    assert sorted(p.name for p in d.iterdir()) == ["b"]


def test_torch_objects_round_trip(tmp_path):
    import torch
    t = torch.arange(6.0).reshape(2, 3)
    atomic.save_torch(tmp_path / "x.pt", {"t": t})
    assert torch.equal(torch.load(tmp_path / "x.pt")["t"], t)
