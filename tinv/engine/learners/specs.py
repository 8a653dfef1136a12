"""Every learner declared once: its name, its module, its settings (a dataclass whose field
defaults are its authors' and whose metadata carries each setting's rule), the setup
(conf/method/<method>.yaml) that runs it and how figures and tables label that setup.

The config check (InversionConfig, tinv.harness.validate), the GPU suite (tinv.tools.suite),
the dry run and the analysis (analysis/style.py, analysis/claims.py) read this table; a new
learner is a row here, its module under tinv/engine/learners/ and its method YAML.
Light: no torch, no learner module is imported.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from tinv.core.rules import FLAG, PROBABILITY, Rule, count, number, rate, rule, rules_of, text

WORD = "word"      # the paper's pseudo-word alone: no learner


@dataclass(frozen=True)
class NoArgs:
    """A learner without settings of its own."""


@dataclass(frozen=True)
class CustomDiffusionArgs:
    # S*'s start: a vocabulary entry ('' = the initializer word); the authors' rare token
    init_token: str = field(default="ktn", metadata=rule(text("a vocabulary entry ('' = the initializer word)", "ktn")))
    # their random rescale with its masked loss (train_custom_diffusion.py: on unless --noaug)
    augment: bool = field(default=True, metadata=rule(FLAG))


_IDENTIFIER = text("one word with no spaces or braces (a rare single-token word)", "sks",
                   lambda v: re.fullmatch(r"[^\s{}<>]+", v) is not None)


@dataclass(frozen=True)
class LoraArgs:
    """DreamBooth-LoRA (lora.py): the rare identifier S* stands for, the LoRA's rank and own
    learning rate (train_dreambooth_lora.py's flags of those names); prior preservation is the
    loop's (InversionConfig.prior_preservation)."""
    identifier: str = field(default="sks", metadata=rule(_IDENTIFIER))
    rank: int = field(default=4, metadata=rule(count(1, 4)))
    lr: float = field(default=5e-4, metadata=rule(rate(5e-4)))


@dataclass(frozen=True)
class DreamBoothArgs:
    """DreamBooth (dreambooth.py): the whole UNet at train_dreambooth.py's --learning_rate
    default, the text encoder too with its --train_text_encoder."""
    identifier: str = field(default="sks", metadata=rule(_IDENTIFIER))
    lr: float = field(default=5e-6, metadata=rule(rate(5e-6)))
    train_text_encoder: bool = field(default=False, metadata=rule(FLAG))


@dataclass(frozen=True)
class NetiArgs:
    """NeTI's mapper (neti.py), the authors' defaults (github.com/NeuralTextualInversion/NeTI)."""
    hidden: int = field(default=128, metadata=rule(count(1, 128)))       # models/neti_mapper.py set_net: Linear(., 128) twice
    frequencies: int = field(default=1024, metadata=rule(count(1, 1024)))   # models/positional_encoding.py NeTIPositionalEncoding num_w
    sigma_t: float = field(default=0.03, metadata=rule(number(0.0, None, "0.03", lo_open=True)))   # training/config.py pe_sigmas
    sigma_l: float = field(default=2.0, metadata=rule(number(0.0, None, "2.0", lo_open=True)))
    time_anchors: int = field(default=10, metadata=rule(count(1, 10)))      # training/config.py num_pe_time_anchors
    nested_dropout: bool = field(default=True, metadata=rule(FLAG))         # training/config.py use_nested_dropout
    nested_dropout_prob: float = field(default=0.5, metadata=rule(PROBABILITY))   # training/config.py nested_dropout_prob
    normalize_output: bool = field(default=True, metadata=rule(FLAG))       # training/config.py normalize_mapper_output
    output_bypass: bool = field(default=True, metadata=rule(FLAG))          # training/config.py output_bypass: the textual bypass
    bypass_scale: float = field(default=0.2, metadata=rule(number(0.0, None, "0.2")))  # models/neti_clip_text_encoder.py: existing_state + 0.2 * bypass


@dataclass(frozen=True)
class LearnerSpec:
    name: str                   # InversionConfig.learner
    module: str | None          # under tinv.engine.learners (None: the paper's word, no learner)
    args: type = NoArgs         # its settings (InversionConfig.learner_args), a dataclass
    method: str | None = None   # the setup that runs it as its authors do (conf/method/<method>.yaml)
    label: str = ""             # the setup's name in figures and tables

    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in dataclasses.fields(self.args)}


# The paper's word first, then its successors in the order figures and tables list them.
LEARNERS: dict[str, LearnerSpec] = {s.name: s for s in (
    LearnerSpec(WORD, None),
    LearnerSpec("xti", "xti", method="xti", label="P+ (XTI)"),
    LearnerSpec("neti", "neti", NetiArgs, method="neti", label="NeTI"),
    LearnerSpec("custom_diffusion", "custom_diffusion", CustomDiffusionArgs, method="custom_diffusion",
                label="Custom Diffusion"),
    LearnerSpec("lora", "lora", LoraArgs, method="dreambooth_lora", label="DreamBooth-LoRA"),
    LearnerSpec("dreambooth", "dreambooth", DreamBoothArgs, method="dreambooth", label="DreamBooth"),
    # Break-a-Scene's masked loss on the word (Avrahami et al. 2023): needs the concept's masks
    LearnerSpec("masked_word", "masked_word", method="masked_word", label="Masked word"),
)}
SUCCESSORS = tuple(s for s in LEARNERS.values() if s.module)


def check_args(name: str, args) -> list[str]:
    """What is wrong with a learner's settings, one phrase each (empty: nothing): a key the
    learner does not have, a value its field's rule refuses."""
    spec = LEARNERS[name]
    rules: dict[str, Rule] = rules_of(spec.args)
    known = spec.defaults()
    bad = []
    for k, v in dict(args or {}).items():
        if k not in known:
            bad.append(f"learner_args.{k} is not a setting of learner {name!r} "
                       f"(it has {', '.join(sorted(known)) or 'none'})")
        elif k in rules and not rules[k].ok(v):
            bad.append(f"learner_args.{k}={v!r} must be {rules[k].says}, e.g. {rules[k].example}")
    return bad
