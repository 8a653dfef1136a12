"""What a setting's value must be, as data: a `Rule` says it in words, checks it, and gives a
value that works. The config check (tinv.harness.validate) reads them, and the engine's
dataclasses carry theirs in field metadata (`rule(...)`), so a field, its default and its
range are written once, where the field is."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Rule:
    says: str                              # what the value must be, as the message says it
    ok: Callable[[Any], bool]
    example: str                           # a value that works, for the override shown


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def count(lo: int, example: int, what: str = "") -> Rule:
    return Rule(f"a whole number >= {lo}{what}", lambda v: _int(v) and v >= lo, str(example))


def number(lo: float, hi: float | None, example: str, lo_open: bool = False, what: str = "") -> Rule:
    def ok(v: Any) -> bool:
        return _num(v) and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)
    bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
    says = f"a number {bound}" + (f" and <= {hi:g}" if hi is not None else "") + what
    return Rule(says, ok, example)


def choice(*options: Any) -> Rule:
    return Rule("one of " + ", ".join(map(str, options)),
                lambda v: any(v == o and type(v) is type(o) for o in options), str(options[0]))


def optional(rule: Rule) -> Rule:
    return Rule(f"null or {rule.says}", lambda v: v is None or rule.ok(v), rule.example)


def text(says: str, example: str, ok: Callable[[str], bool] = lambda v: True) -> Rule:
    return Rule(says, lambda v: isinstance(v, str) and ok(v), example)


FLAG = Rule("true or false", lambda v: isinstance(v, bool), "true")
PROBABILITY = number(0.0, 1.0, "0.5", what=" (a probability)")


def rate(default: float) -> Rule:
    """A learning rate: a number > 0, the field's default as the example."""
    return number(0.0, None, f"{default:g}", lo_open=True)


def rule(r: Rule, **meta) -> dict:
    """Field metadata that carries a rule: `field(default=..., metadata=rule(count(1, 4)))`."""
    return {"rule": r, **meta}


def rules_of(cls) -> dict[str, Rule]:
    """The rules a dataclass's fields carry, by field name."""
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(cls) if "rule" in f.metadata}
