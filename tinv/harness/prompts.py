"""Evaluation prompts: which list a job uses, and how S*, a caption or nothing fills `{}`.

Prompt lists live in conf/eval/prompts/*.yaml. A prompt's `{}` is the placeholder: it is
filled with the pseudo-word for generation, with a human caption for the caption
baselines, and deleted for the CLIP text of editability ("A photo of on the moon", as in
the authors' evaluation script) and for the prompt-only reference.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from tinv.engine.templates import STYLE_NOUN, with_style_noun


@dataclass(frozen=True)
class EvalPrompt:
    template: str                                   # "A photo of {} on the moon"
    attributes: dict = field(default_factory=dict)  # what the prompt asks for (toy world oracle)
    source: str = ""                                # paper | tinv | dreambench | ...

    def fill(self, filler: str) -> str:
        return fill(self.template, filler)

    @property
    def edit_text(self) -> str:
        """The text editability is measured against: the prompt with the placeholder deleted."""
        return fill(self.template, "")


def fill(template: str, filler: str) -> str:
    """Put `filler` where `{}` is; an empty filler deletes it and tidies the spaces.

    A caption that starts with an article after a prompt that already has one, or a count,
    perhaps with a size between ("Elmo holding a {}", "two small {}" + "a red star"), drops
    its own article.
    """
    if "{}" not in template:
        raise ValueError(f"evaluation prompt {template!r} has no {{}} placeholder")
    before, after = template.split("{}", 1)
    if filler and re.search(r"\b(a|an|the|two)(\s+(small|large))?\s*$", before, re.I):
        filler = re.sub(r"^(a|an|the)\s+", "", filler, flags=re.I)
    return re.sub(r"\s+", " ", f"{before}{filler}{after}").strip()


def prompt_set_name(cfg: Mapping[str, Any]) -> str:
    """eval.prompt_set if given, else the concept's own (DreamBench), else the model's."""
    return (cfg["eval"].get("prompt_set") or cfg["concept"].get("prompt_set")
            or cfg["model"]["prompt_set"])


def eval_prompts(cfg: Mapping[str, Any], kind: str = "object") -> list[EvalPrompt]:
    """The editability prompts of this job, for a concept of `kind` (object | style).

    Items marked `kind: style` serve style concepts, unmarked items objects; a list with
    no item for this kind serves it whole.
    """
    name = prompt_set_name(cfg)
    sets = cfg["eval"]["prompt_sets"]
    if name not in sets:
        raise ValueError(f"eval.prompt_set={name!r} is not a prompt list; choose one of {sorted(sets)}")
    items = [dict(p) for p in sets[name]]
    mine = [p for p in items if p.get("kind", "object") == kind] or items
    prompts = [EvalPrompt(p["text"], dict(p.get("attributes") or {}), p.get("source", name))
               for p in mine]
    limit = cfg["eval"].get("max_prompts")
    return prompts[:limit] if limit else prompts


def reconstruction_prompt(cfg: Mapping[str, Any], kind: str = "object") -> EvalPrompt:
    """ "A photo of S*" for objects (section 5.1); its style counterpart for styles."""
    rec = cfg["eval"]["reconstruction_prompt"]
    text = rec[kind] if isinstance(rec, Mapping) else rec
    if kind == "style":   # the training templates' noun (tinv.engine.templates.STYLE_NOUN)
        text = with_style_noun(text, cfg["model"].get("style_noun") or STYLE_NOUN)
    return EvalPrompt(text, {}, "paper")
