"""The paper's successors as learners: what a learning set trains besides (or around) its
word's vectors, on the one inversion loop (tinv.engine.inversion).

The loop trains a pseudo-word S*; a successor adds its own math through a `Learner`:

| learner | what it trains | how it conditions | module |
| --- | --- | --- | --- |
| word (none) | S*'s vectors | the prompt's encoding, every layer | - |
| xti (P+) | one word per cross-attention layer | each layer its own word (conditioning.Cond.layers) | xti.py |
| neti | a network of (timestep, layer) -> word (+ its textual bypass) | per timestep and layer (Cond.at; the bypass in Cond.values) | neti.py |
| custom_diffusion | S* + the cross-attention K/V projections | diffusers' Custom Diffusion processors | custom_diffusion.py |
| lora | a LoRA on the UNet (peft), a fixed rare word | the LoRA-adapted UNet | lora.py |
| dreambooth | the whole UNet (and text encoder by option), a fixed rare word | the fine-tuned UNet | dreambooth.py |
| masked_word | S*'s vectors, Eq. 2 on the concept's mask only (Break-a-Scene's masked loss) | as the word | masked_word.py |

A learner sees each drawn batch (`augment`: the images drawn, their flips, latents and
prompts) and may change Eq. 2 there: a loss mask (Custom Diffusion's canvas, masked_word's
concept mask), a per-sample weight (`weight`), a term of its own (`extra_loss`).

A learner is chosen by `InversionConfig.learner`, its hyperparameters are
`InversionConfig.learner_args` (a method YAML's `inversion.learner_args`). Its trained
state rides in `InversionResult.learner` ({"name", "state"}), so checkpoints, the job store
(tinv.harness.learned) and a reused inversion put it back with `restore`. A learner that
trains the shared model or conditions per layer cannot share a packed batch with other
sets: `packable` is False and the packed launcher runs its job alone.

The module stays light: each learner's module is imported when it is used.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tinv.engine.learners import specs

if TYPE_CHECKING:      # the config check imports this module: torch is not needed for that
    import torch

    from tinv.engine.models import Parts
    from tinv.engine.pseudo_words import PseudoWord

# Each learner is declared once, in specs.LEARNERS (name, module, settings, setup, label);
# these views keep the names the loop and the learners read.
NAMES = tuple(specs.LEARNERS)
MODULES = {s.name: s.module for s in specs.SUCCESSORS}
ARGS: dict[str, dict] = {s.name: s.defaults() for s in specs.LEARNERS.values()}
check_args = specs.check_args


def settings(cfg) -> dict:
    """A learner's settings: its defaults, overridden by the config's learner_args."""
    return {**ARGS.get(cfg.learner, {}), **dict(cfg.learner_args or {})}


class Learner:
    """One set's successor math. The loop calls, in order: `words` (more pseudo-words to
    splice and train with S*), `param_groups` (more optimizer groups), per step `extra_loss`,
    and at checkpoints `state` / `load_state`. `restore` and `export` are for a finished
    result (a fresh model, a user's folder)."""
    name = "word"
    packable = False
    trains_word = True       # S*'s own vectors are in the optimizer (weight decay moves them too)
    trains_text = False      # the text encoder's weights train (then every prompt's encoding needs gradients)
    leaves_out = ""          # what of its authors' recipe the port does not run (the row's notes say it)
    # Its own tensors carry (part of) the concept: the result keeps its state, a fresh model
    # gets it back (`restore`), users get it as files (`export`), and S*'s vector alone says
    # nothing of the concept. False: a variant of the paper's word that only shapes the
    # batch or the loss (masked_word): the result is S*'s vector, as the plain word's.
    own_state = True

    def __init__(self, parts: "Parts", word: "PseudoWord", cfg, gen: torch.Generator):
        self.parts, self.word, self.cfg, self.gen = parts, word, cfg, gen
        self.args: dict = settings(cfg)

    def words(self) -> list["PseudoWord"]:
        """Pseudo-words the learner adds (trained beside S*, exported with it)."""
        return []

    def param_groups(self) -> list[dict]:
        """Optimizer groups beyond the words' vectors (each with its own lr if it has one)."""
        return []

    def augment(self, parts: "Parts", images, idx: torch.Tensor, flip: torch.Tensor, latents: torch.Tensor,
                prompts: list[str]) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
        """A learner's own augmentation of a drawn batch (the images `idx` of `images`, flipped
        where `flip`; their latents and prompts): the latents, prompts and a loss mask
        [B, 1, h, w] (None: the whole image) the loop trains on."""
        return latents, prompts, None

    def weight(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        """A per-sample factor [B] on Eq. 2 for the batch `augment` returned with `mask` (None:
        the plain mean; with a mask, Eq. 2 is each sample's mean over its mask)."""
        return None

    def extra_loss(self, parts: "Parts", sched) -> torch.Tensor | None:
        """A loss term this set adds per micro-batch (e.g. DreamBooth's prior preservation)."""
        return None

    def state(self) -> dict[str, Any]:
        """Everything the learner trained, detached on the CPU (checkpoints and results)."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Put a `state()` back (resuming a checkpoint)."""

    def finish(self, parts: "Parts") -> None:
        """After training: leave `parts` as sampling needs them (e.g. processors in eval)."""


def get(name: str) -> type[Learner] | None:
    """The learner class of `InversionConfig.learner`; None for the paper's plain word."""
    if name == specs.WORD:
        return None
    if name not in MODULES:
        raise ValueError(f"learner={name!r}: choose one of {', '.join(NAMES)}")
    return importlib.import_module(f"tinv.engine.learners.{MODULES[name]}").LEARNER


def create(parts: "Parts", word: "PseudoWord", cfg, gen: torch.Generator) -> Learner | None:
    cls = get(cfg.learner)
    return cls(parts, word, cfg, gen) if cls is not None else None


def restore(parts: "Parts", learned: Mapping[str, Any], words: Mapping[str, "PseudoWord"]) -> None:
    """Put a finished result's learner (InversionResult.learner) into freshly loaded `parts`
    whose pseudo-words `words` (placeholder -> PseudoWord) are installed already."""
    if learned:
        importlib.import_module(f"tinv.engine.learners.{MODULES[learned['name']]}").restore(
            parts, learned, words)


def export(parts: "Parts", learned: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """Write a result's learner where a user loads it (diffusers' own formats where one
    exists); returns {what: file}."""
    if not learned:
        return {}
    return importlib.import_module(f"tinv.engine.learners.{MODULES[learned['name']]}").export(
        parts, learned, Path(folder))


def usage(name: str, files: Mapping[str, Path], placeholder: str) -> list[str]:
    """How a user loads a learner's exports (the job's closing lines), one line each; a learner
    module says it with `usage(files, placeholder)`."""
    mod = importlib.import_module(f"tinv.engine.learners.{MODULES[name]}")
    return mod.usage(files, placeholder) if hasattr(mod, "usage") else [f"{k}: {v}" for k, v in files.items()]


def prepare_sampling(parts: "Parts", learned: Mapping[str, Any], eval_cfg: Mapping[str, Any]) -> None:
    """Apply evaluation-time options of a learner (NeTI's truncation) before sampling."""
    if learned:
        mod = importlib.import_module(f"tinv.engine.learners.{MODULES[learned['name']]}")
        if hasattr(mod, "prepare_sampling"):
            mod.prepare_sampling(parts, learned, eval_cfg)


def cpu_state(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


def load_into(params: Mapping[str, torch.nn.Parameter], tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """Copy a stored state into a learner's parameters, or a ValueError naming `what` (e.g.
    "dreambooth_lora: the stored LoRA") when it was made for another model."""
    if set(params) != set(tensors):
        missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        raise ValueError(f"{what} does not fit this model (missing {missing[:3]}, unexpected {extra[:3]})")
    import torch     # here, not at the top: the config check imports this module without torch
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[n])
