"""The config check: every field a user can set, its type and range, in milliseconds and
before anything else (job folder, lock, weights, model).

A value that would fail later (`eval.num_samples=abc` after a 5,000-step inversion) or
silently do something else (`progress=maybe`) is one InputError here naming the field,
what it got and an override that works. The rules are data (FIELDS): a dotted path and
what the value must be; paths under `model.inversion`/`method.inversion` go to the
engine's InversionConfig, `method.pivotal` to its PivotalConfig.
"""
from __future__ import annotations

import re
import shlex
from typing import Any, Mapping

from tinv.core.errors import InputError
from tinv.core.rules import FLAG, PROBABILITY, Rule, _int, choice, count, number, optional, rules_of
from tinv.engine.inversion_config import InversionConfig
from tinv.engine.learners.specs import SUCCESSORS
from tinv.methods import CAPTION_SEEDS

DEFAULT_PLACEHOLDER = "<S*>"


SEED = count(0, 0)
# cpu_threads and sample_streams: how many of the cores a job uses, never what it computes
CORES = Rule("auto or a whole number >= 1", lambda v: v in ("auto", "none", None) or (_int(v) and v >= 1), "auto")
# A placeholder is written into prompts by str.format and split on whitespace by tokenizers.
PLACEHOLDER = Rule("a string with no spaces and no braces",
                   lambda v: isinstance(v, str) and re.fullmatch(r"[^\s{}]+", v) is not None, "<T*>")

# tinv.engine.pivotal.PARAM_SETS, named here without importing the engine (a test keeps them equal)
PIVOTAL_PARAMS = choice("all", "attn", "attn2")
TEMPLATE = Rule("a prompt with {} where the placeholder goes", lambda v: isinstance(v, str) and v.count("{}") == 1,
                'A photo of {}')

# InversionConfig's fields carry their rules (tinv.engine.inversion_config): a field is
# declared, with its default and range, once.
INVERSION = rules_of(InversionConfig)
# A successor's settings per model, as conf/method/<its setup>.yaml reads them from
# model.calibration.<setup>: each learner's own setting by its rule (tinv.engine.learners.specs),
# the loop's budget and prior preservation by InversionConfig's.
CALIBRATION = {f"model.calibration.{s.method}.{k}": r
               for s in SUCCESSORS for k, r in {**INVERSION, **rules_of(s.args)}.items()}

FIELDS: dict[str, Rule] = {
    "seed": SEED,
    "device": Rule("auto, cpu, cuda or cuda:N", lambda v: isinstance(v, str) and re.fullmatch(
        r"auto|cpu|mps|cuda(:\d+)?", v) is not None, "auto"),
    "progress": FLAG,
    "cpu_threads": CORES,
    "sample_streams": CORES,
    "train_images": optional(count(1, 5, " (the first N images)")),
    "sweep": Rule("a folder name (no slashes)", lambda v: isinstance(v, str) and v.strip() not in ("", ".", "..")
                  and "/" not in v, "default"),
    "model.family": choice("sd", "ldm"),
    "model.dtype": choice("auto", "float32", "float16", "bfloat16"),
    "model.evaluator": choice("clip", "toyworld"),
    "model.dino": FLAG,
    "model.oracle": FLAG,
    "model.style_noun": Rule("one word with no braces (the style templates' medium noun)",
                             lambda v: isinstance(v, str) and re.fullmatch(r"[^\s{}]+", v) is not None, "painting"),
    "concept.kind": choice("object", "style"),
    "concept.placeholder": PLACEHOLDER,
    "eval.num_samples": count(1, 16, " (samples per prompt)"),
    "eval.steps": count(1, 50, " (DDIM steps)"),
    "eval.eta": number(0.0, 1.0, "0.0"),
    "eval.guidance": number(0.0, None, "5.0"),
    "eval.batch_size": count(1, 16, " (images per UNet batch)"),
    "eval.seed": SEED,
    "eval.max_prompts": optional(count(1, 2)),
    "eval.neti_truncation": optional(count(1, 16, " (NeTI mapper units kept at inference)")),
    "eval.bootstrap.n": count(1, 1000),
    "eval.bootstrap.seed": SEED,
    "method.progressive_fraction": optional(number(0.0, 1.0, "0.4", lo_open=True)),
    "method.caption_seeds": optional(choice(*CAPTION_SEEDS)),   # the registry's draws
    "method.dvar_window_fraction": optional(number(0.0, 1.0, "0.0508", lo_open=True, what=" (DVAR window: share of steps)")),
    "method.pivotal.lr": number(0.0, None, "1e-4", lo_open=True),
    "method.pivotal.steps": count(0, 60),
    "method.pivotal.steps_fraction": optional(number(0.0, 1.0, "0.2", lo_open=True)),
    "method.pivotal.batch_size": count(1, 4),
    "method.pivotal.flip_p": PROBABILITY,
    "method.pivotal.params": PIVOTAL_PARAMS,
    "method.learns": FLAG,
    "method.bipartite": FLAG,
    "model.calibration.reg_weight": number(0.0, None, "0.01"),
    "model.calibration.pivotal.lr": number(0.0, None, "1e-4", lo_open=True),
    "model.calibration.pivotal.steps": count(0, 60),
    "model.calibration.pivotal.params": PIVOTAL_PARAMS,
    **CALIBRATION,
    "eval.reconstruction_prompt.object": TEMPLATE,
    "eval.reconstruction_prompt.style": TEMPLATE,
    **{f"model.inversion.{k}": r for k, r in INVERSION.items()},
    **{f"method.inversion.{k}": r for k, r in INVERSION.items()},
}
# Method fields the shipped methods fill from the model's calibration (${model.calibration...}):
# a bad value there is named once, by the field the user set. A successor's setup reads its
# own, model.calibration.<method>.<field> (`_source`).
SOURCES = {"method.pivotal.lr": "model.calibration.pivotal.lr", "method.pivotal.steps": "model.calibration.pivotal.steps",
           "method.inversion.reg_weight": "model.calibration.reg_weight"}
_MISSING = object()


def _get(cfg: Mapping[str, Any], path: str) -> Any:
    node: Any = cfg
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _source(cfg: Mapping[str, Any], path: str) -> str:
    """The model field a method field is read from, if any (else the field itself)."""
    if path in SOURCES:
        return SOURCES[path]
    method = _get(cfg, "method.name")
    for prefix in ("method.inversion.learner_args.", "method.inversion."):
        if path.startswith(prefix) and f"model.calibration.{method}.{path[len(prefix):]}" in FIELDS:
            return f"model.calibration.{method}.{path[len(prefix):]}"
    return path


def override(path: str, value: Any) -> str:
    """`path=value` as a shell takes it and Hydra's override grammar reads it: values with
    characters the grammar does not take bare (<, >, braces, spaces) in double quotes."""
    text = str(value)
    if re.fullmatch(r"[\w.+\-/:@%*?|$]+", text) is None and not (text.startswith('"') and text.endswith('"')):
        text = f'"{text}"'
    return shlex.quote(f"{path}={text}")


def problems(cfg: Mapping[str, Any]) -> list[str]:
    """One sentence per field that breaks its rule: the field, the value, the fix."""
    out = []
    for path, rule in FIELDS.items():
        value = _get(cfg, path)
        if value is _MISSING or value == "???" or rule.ok(value):
            continue
        source = _source(cfg, path)
        if source != path and _get(cfg, source) == value:
            continue        # interpolated from a model field, which its own rule names
        out.append(f"{path}={value!r} must be {rule.says}, e.g. {override(path, rule.example)}")
    return out


def check(cfg: Mapping[str, Any]) -> None:
    """Raise one InputError naming every field that breaks its rule (none: return)."""
    found = problems(cfg)
    if found:
        raise InputError("; ".join(found) + " (nothing was run)")


def placeholder(cfg: Mapping[str, Any]) -> str:
    """The job's placeholder: concept.placeholder, or the paper's S* as `<S*>`."""
    return str((cfg.get("concept") or {}).get("placeholder") or DEFAULT_PLACEHOLDER)
