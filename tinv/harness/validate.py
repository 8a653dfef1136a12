"""The config check: every field a user can set, its type and range, in milliseconds and
before anything else (job folder, lock, weights, model).

A value that would fail later (`eval.num_samples=abc` after a 5,000-step inversion) or
silently do something else (`progress=maybe`) is one InputError here naming the field,
what it got and an override that works. The rules are data (FIELDS): a dotted path and
what the value must be; paths under `model.inversion`/`method.inversion` go to the
engine's InversionConfig, `method.pivotal` to its PivotalConfig.
"""
from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from tinv.core.errors import InputError

DEFAULT_PLACEHOLDER = "<S*>"


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


FLAG = Rule("true or false", lambda v: isinstance(v, bool), "true")
SEED = count(0, 0)
PROBABILITY = number(0.0, 1.0, "0.5", what=" (a probability)")
RATE = number(0.0, None, "5e-3", lo_open=True)
# A placeholder is written into prompts by str.format and split on whitespace by tokenizers.
PLACEHOLDER = Rule("a string with no spaces and no braces",
                   lambda v: isinstance(v, str) and re.fullmatch(r"[^\s{}]+", v) is not None, "<T*>")

# tinv.engine.pivotal.PARAM_SETS, named here without importing the engine (a test keeps them equal)
PIVOTAL_PARAMS = choice("all", "attn", "attn2")
TEMPLATE = Rule("a prompt with {} where the placeholder goes", lambda v: isinstance(v, str) and v.count("{}") == 1,
                'A photo of {}')

INVERSION = {
    "steps": count(1, 5000), "batch_size": count(1, 4), "grad_accum": count(1, 1), "n_devices": count(1, 1),
    "checkpoint_every": count(0, 500, " (0 = never)"), "num_vectors": count(1, 2),
    "lr": RATE, "scale_lr": FLAG, "weight_decay": number(0.0, None, "0.01"),
    "reg_weight": number(0.0, None, "0.01"), "reg_form": choice("l2", "gram_mean"),
    "init": choice("word", "random"), "per_image_tokens": FLAG, "per_image_prob": PROBABILITY,
    "center_crop": FLAG, "flip_p": PROBABILITY, "progressive_interval": optional(count(1, 2000)),
    "stop": choice("fixed", "dvar"), "dvar_window": count(2, 310), "dvar_batch": count(1, 4),
    "dvar_threshold": number(0.0, None, "0.15", what=" (0: log, never stop)"),
    # tinv.engine.learners.NAMES, named here without importing the engine (a test keeps them equal)
    "learner": choice("word", "xti", "neti", "custom_diffusion", "lora", "dreambooth"),
    "learner_args": Rule("a mapping of the successor's settings", lambda v: isinstance(v, Mapping), "{}"),
    "class_noun": FLAG,
    "prior_preservation": FLAG,
    "prior_loss_weight": number(0.0, None, "1.0"),
    "num_class_images": count(1, 100),
    "class_prompt": Rule("a prompt with {} where the class noun goes",
                         lambda v: isinstance(v, str) and v.count("{}") == 1, "a photo of a {}"),
    "class_images": optional(Rule("a folder of class images", lambda v: isinstance(v, str) and v.strip() != "",
                                  "/data/class_images/dog")),
}

FIELDS: dict[str, Rule] = {
    "seed": SEED,
    "device": Rule("auto, cpu, cuda or cuda:N", lambda v: isinstance(v, str) and re.fullmatch(
        r"auto|cpu|mps|cuda(:\d+)?", v) is not None, "auto"),
    "progress": FLAG,
    "cpu_threads": Rule("auto or a whole number >= 1", lambda v: v in ("auto", "none", None) or (_int(v) and v >= 1),
                        "auto"),
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
    "model.calibration.custom_diffusion.lr": RATE,
    "model.calibration.custom_diffusion.steps": count(1, 250),
    "model.calibration.custom_diffusion.num_class_images": count(1, 200),
    # conf/method/dreambooth_lora.yaml's settings per model (its learner checks the identifier is one token)
    "model.calibration.dreambooth_lora.identifier": Rule("one word with no spaces or braces (a rare single-token word)",
                                                         lambda v: isinstance(v, str) and re.fullmatch(r"[^\s{}<>]+", v) is not None,
                                                         "sks"),
    "model.calibration.dreambooth_lora.lr": number(0.0, None, "5e-4", lo_open=True),
    "model.calibration.dreambooth_lora.steps": count(1, 300),
    "model.calibration.dreambooth_lora.num_class_images": count(1, 100),
    "model.calibration.dreambooth.lr": number(0.0, None, "5e-6", lo_open=True),
    "model.calibration.dreambooth.steps": count(1, 800),
    "model.calibration.dreambooth.num_class_images": count(1, 100),
    "model.calibration.xti.steps": count(1, 500),
    "eval.reconstruction_prompt.object": TEMPLATE,
    "eval.reconstruction_prompt.style": TEMPLATE,
    **{f"model.inversion.{k}": r for k, r in INVERSION.items()},
    **{f"method.inversion.{k}": r for k, r in INVERSION.items()},
}
# Method fields the shipped methods fill from the model's calibration (${model.calibration...}):
# a bad value there is named once, by the field the user set.
SOURCES = {"method.pivotal.lr": "model.calibration.pivotal.lr", "method.pivotal.steps": "model.calibration.pivotal.steps",
           "method.inversion.reg_weight": "model.calibration.reg_weight",
           "method.inversion.steps": "model.calibration.dreambooth_lora.steps"}
_MISSING = object()


def _get(cfg: Mapping[str, Any], path: str) -> Any:
    node: Any = cfg
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


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
        if path in SOURCES and _get(cfg, SOURCES[path]) == value:
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
