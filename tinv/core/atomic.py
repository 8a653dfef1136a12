"""Files and folders written whole or not at all: the one way tinv writes anything a reader,
a rerun or a crash may meet half-done (rows, checkpoints, exports, caches, weights, figures).

A file is written to a temp name beside it and renamed over it (`os.replace` is atomic on
one file system); a failure removes the temp and leaves the old file as it was. Temp files
get the mode a plain `open()` would give (0666 less the umask), not mkstemp's 0600, so a
results folder shared by a group stays readable to it. A folder is filled under a temp name
and swapped in the same way.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def umask() -> int:
    """This process's umask, read without changing it where /proc says it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_created(tmp: str | os.PathLike) -> None:
    """Give a temp file the mode a plainly created file gets (0666 less the umask)."""
    os.chmod(tmp, 0o666 & ~umask())


@contextmanager
def replacing(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temp path beside `path` to write; renamed over `path` when the block ends, removed
    if it raises. `suffix` ends the temp name for writers that go by it (PIL's format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        as_created(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    with replacing(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON (indent 1, NaN allowed, anything else as str): readers never see half a row."""
    return write_text(path, json.dumps(obj, indent=1, allow_nan=True, default=str))


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    import torch
    with replacing(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


@contextmanager
def replacing_dir(final: str | os.PathLike, keep_existing: bool = False) -> Iterator[Path]:
    """An empty temp folder beside `final` to fill; swapped in for `final` when the block
    ends (the old one removed), or, with keep_existing, dropped if `final` appeared meanwhile
    (another process made the same folder first: a race lost harmlessly)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~umask())
    try:
        yield tmp
        if keep_existing:
            try:
                tmp.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
            return
        old = final.with_name(f".{final.name}.{tmp.name[-12:]}.old")
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
