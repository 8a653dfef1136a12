"""Reading an offline W&B run back as W&B itself stores it, for the tests.

wandb 0.31 has no Python reader of a run's `.wandb` file any more (its `datastore` went
with the Go core), so the framing is read here and each record is parsed with wandb's own
protobuf schema (`wandb.proto.wandb_internal_pb2.Record`): the file is a LevelDB-style
log, a 7-byte header (":W&B", magic 0xBEE1, version 0), then 32 KiB blocks of records,
each with a 7-byte header (CRC32, length, type: full, first, middle, last); a record
split across blocks is joined. Logged media (tables, images, HTML) are files under the
run's `files/` folder, which the history items name.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list:
    """Every record of a `.wandb` file, parsed (wandb_internal_pb2.Record)."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = Path(path).read_bytes()
    assert data[:7] == HEADER, f"{path} is not a W&B run file (header {data[:7]!r})"
    out, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:                    # a block's tail too short for a header: padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:   # zero padding to the block's end
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            raw = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            raw, pending = pending + chunk, b""
        else:
            raise AssertionError(f"{path}: record type {kind} at byte {pos}")
        record = pb.Record()
        record.ParseFromString(raw)
        out.append(record)
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    """What an offline run holds: its run record, config, history and summary (values
    decoded from JSON, nested keys joined with '/'), and where its files are."""
    folder: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    exit_code: int | None = None

    def media(self, key: str) -> Path:
        """The file a logged table, image or HTML (history key `key`) was written to."""
        return self.folder / "files" / self.history[f"{key}/path"]

    def table(self, key: str) -> tuple[list[str], list[list]]:
        t = json.loads(self.media(key).read_text())
        return t["columns"], t["data"]


def read_run(folder: Path) -> OfflineRun:
    """The offline run in `folder` (an `offline-run-*` folder)."""
    [path] = Path(folder).glob("run-*.wandb")
    run = OfflineRun(Path(folder))
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run.name, run.group, run.job_type = r.run.display_name, r.run.run_group, r.run.job_type
            run.tags = list(r.run.tags)
            run.config.update({_key(i): json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            run.history.update({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "exit":
            run.exit_code = r.exit.exit_code
    return run
