"""Progress: a tqdm bar on a terminal; off one (a SLURM or CI log, `> file`), one plain log
line per stage at about every 10% (step, loss, rate, ETA) and nothing per step.

A tqdm bar redraws itself with a carriage return per update: in a file that is one line
per step (a default job wrote about 520 of them). The libraries under tinv (transformers'
"Loading weights", diffusers' and huggingface_hub's bars) are switched off with
`progress=false` and off a terminal.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Iterable

log = logging.getLogger("tinv.engine.progress")

TENTHS = 10     # lines per stage off a terminal


def on_terminal() -> bool:
    return sys.stderr.isatty()


def bar(iterable: Iterable | None = None, *, total: int | None = None, initial: int = 0, desc: str = "",
        unit: str = "step", disable: bool = False):
    """tqdm's interface as the engine uses it (iterate, update, set_postfix, close)."""
    if disable:
        from tqdm.auto import tqdm
        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, disable=True)
    if on_terminal():
        from tqdm.auto import tqdm
        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit)
    return Plain(iterable, total=total, initial=initial, desc=desc, unit=unit)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Plain:
    """Logs `desc: step n/total (p%), loss ..., r step/s, ETA h:mm:ss` when the count
    crosses each tenth of the total, and once at the end."""

    def __init__(self, iterable: Iterable | None, total: int | None, initial: int, desc: str, unit: str):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n = self.start = initial
        self.desc, self.unit = desc, unit
        self.postfix: dict[str, Any] = {}
        self.t0 = time.perf_counter()
        self.said = self._tenth(initial)      # a resumed stage does not repeat the tenths behind it
        self.said_at = initial
        self.closed = False

    def _tenth(self, n: int) -> int:
        return n * TENTHS // self.total if self.total else 0

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and self._tenth(self.n) > self.said:
            self.said = self._tenth(self.n)
            self._say()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n != self.said_at:
            self._say()         # stopped between tenths (or no total): where it got to

    def _say(self) -> None:
        self.said_at = self.n
        took = time.perf_counter() - self.t0
        done = self.n - self.start
        rate = done / took if took > 0 else 0.0
        parts = [f"{self.desc}: {self.unit} {self.n}" + (f"/{self.total} ({100 * self.n // self.total}%)"
                                                         if self.total else "")]
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {_clock((self.total - self.n) / rate)}")
        elif self.total:
            parts.append(f"took {_clock(took)}")
        log.info(", ".join(parts))


def third_party(enabled: bool) -> None:
    """The libraries' own bars on or off: off unless `enabled` and on a terminal. Set in the
    environment for libraries imported later, and in those imported already."""
    if enabled and on_terminal():
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars
        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging
        transformers_logging.disable_progress_bar()
    from diffusers.utils import logging as diffusers_logging    # imported by the model load right after
    diffusers_logging.disable_progress_bar()
