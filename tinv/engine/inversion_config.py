"""The inversion method as data: `InversionConfig`, apart from the loop (tinv.engine.inversion)
so that the config check and the plan build it without importing diffusers."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from tinv.core.rules import FLAG, PROBABILITY, Rule, choice, count, number, optional, rate, rule, text
from tinv.engine import dvar
from tinv.engine.learners import specs
from tinv.engine.templates import templates_for


RATE = rate(5e-3)       # the paper's base rate, scaled by lr x grad_accum x n_devices x batch_size


@dataclass
class InversionConfig:
    """The method as data (filled from Hydra's `cfg.method` + concept). A field's `rule`
    (its metadata) is what the config check holds a user's value to (tinv.harness.validate)."""
    placeholder: str = "<S*>"
    initializer_word: str | None = None
    num_vectors: int = field(default=1, metadata=rule(count(1, 2)))                  # k
    init: str = field(default="word", metadata=rule(choice("word", "random")))      # "random": uniform in [0, 1)
    progressive_interval: int | None = field(default=None, metadata=rule(optional(count(1, 2000))))  # optimizer steps per unlocked vector
    reg_weight: float = field(default=0.0, metadata=rule(number(0.0, None, "0.01")))
    # "l2": sum_i ||v_i - v0||^2 | "gram_mean": mean((V-V0)(V-V0)^T)
    reg_form: str = field(default="l2", metadata=rule(choice("l2", "gram_mean")))
    per_image_tokens: bool = field(default=False, metadata=rule(FLAG))
    per_image_prob: float = field(default=0.25, metadata=rule(PROBABILITY))
    lr: float = field(default=float(RATE.example), metadata=rule(RATE))                          # base rate
    scale_lr: bool = field(default=True, metadata=rule(FLAG))       # lr x grad_accum x n_devices x batch_size
    weight_decay: float = field(default=0.01, metadata=rule(number(0.0, None, "0.01")))
    batch_size: int = field(default=4, metadata=rule(count(1, 4)))
    grad_accum: int = field(default=1, metadata=rule(count(1, 1)))
    n_devices: int = field(default=1, metadata=rule(count(1, 1)))  # only enters the LR rule: this loop runs on one device
    steps: int = field(default=5000, metadata=rule(count(1, 5000)))
    seed: int = 23
    templates: str = "object"             # "object" | "style"
    style_noun: str = "painting"          # the style templates' medium noun (model.style_noun)
    center_crop: bool = field(default=False, metadata=rule(FLAG))
    flip_p: float = field(default=0.5, metadata=rule(PROBABILITY))
    checkpoint_every: int = field(default=0, metadata=rule(count(0, 500, " (0 = never)")))   # optimizer steps
    # "fixed": all `steps` | "dvar": early stopping (tinv/engine/dvar.py)
    stop: str = field(default="fixed", metadata=rule(choice("fixed", "dvar")))
    # N = 310 and alpha = 0.15: the DVAR authors' values for textual inversion (arXiv 2302.04841;
    # tinv/engine/dvar.py); the fixed batch has their eval batch's 4 pairs
    dvar_window: int = field(default=dvar.WINDOW, metadata=rule(count(2, 310)))
    dvar_threshold: float = field(default=dvar.THRESHOLD, metadata=rule(number(0.0, None, "0.15", what=" (0: log, never stop)")))
    dvar_batch: int = field(default=dvar.BATCH, metadata=rule(count(1, 4)))
    # "word" (the paper) | a successor: tinv/engine/learners/specs.py
    learner: str = field(default="word", metadata=rule(choice(*specs.LEARNERS)))
    learner_args: dict = field(default_factory=dict, metadata=rule(Rule(   # the successor's own hyperparameters
        "a mapping of the successor's settings", lambda v: isinstance(v, Mapping), "{}")))
    # prompts say "S* <initializer>" (DreamBooth, Custom Diffusion)
    class_noun: bool = field(default=False, metadata=rule(FLAG))
    # Prior preservation (DreamBooth section 3.3; Custom Diffusion's regularization): each
    # micro-batch adds prior_loss_weight x Eq. 2 on a batch of class images under class_prompt
    # (its {} is the class noun, the concept's initializer). The class images are the model's
    # own samples of that prompt (tinv/engine/prior.py), or the images of a folder (class_images).
    prior_preservation: bool = field(default=False, metadata=rule(FLAG))
    prior_loss_weight: float = field(default=1.0, metadata=rule(number(0.0, None, "1.0")))  # --prior_loss_weight (both scripts' default)
    num_class_images: int = field(default=100, metadata=rule(count(1, 100)))  # train_dreambooth.py's --num_class_images default
    class_prompt: str = field(default="a photo of a {}", metadata=rule(text(
        "a prompt with {} where the class noun goes", "a photo of a {}", lambda v: v.count("{}") == 1)))
    # a folder of real class images; None = the model draws them
    class_images: str | None = field(default=None, metadata=rule(optional(text(
        "a folder of class images", "/data/class_images/dog", lambda v: v.strip() != ""))))

    # A field added here needs nothing for old job ids, inversion keys and checkpoints: its
    # default is what earlier runs had (tinv.harness.identity says how each reads it).

    def __post_init__(self):
        bad = []
        if self.init not in ("word", "random"):
            bad.append(f"init={self.init!r} (use 'word' or 'random')")
        if self.init == "word" and not self.initializer_word:
            bad.append("init='word' needs an initializer_word")
        if self.reg_form not in ("l2", "gram_mean"):
            bad.append(f"reg_form={self.reg_form!r} (use 'l2' or 'gram_mean')")
        if self.num_vectors < 1 or self.steps < 0 or self.batch_size < 1 or self.grad_accum < 1:
            bad.append("num_vectors, batch_size, grad_accum must be >= 1 and steps >= 0")
        if self.progressive_interval is not None and self.progressive_interval < 1:
            bad.append(f"progressive_interval={self.progressive_interval} (None or >= 1)")
        if self.stop not in ("fixed", "dvar"):
            bad.append(f"stop={self.stop!r} (use 'fixed' or 'dvar')")
        if self.dvar_window < 2 or self.dvar_batch < 1 or self.dvar_threshold < 0:
            bad.append("dvar_window must be >= 2, dvar_batch >= 1 and dvar_threshold >= 0 (0: log, never stop)")
        if not 0.0 <= self.per_image_prob <= 1.0 or not 0.0 <= self.flip_p <= 1.0:
            bad.append("per_image_prob and flip_p are probabilities in [0, 1]")
        if self.learner not in specs.LEARNERS:
            bad.append(f"learner={self.learner!r} (use one of {', '.join(specs.LEARNERS)})")
        else:
            bad += specs.check_args(self.learner, self.learner_args)
        if self.prior_preservation:
            if not self.initializer_word:
                bad.append("prior_preservation needs an initializer_word (the class noun of the class prompt)")
            if self.num_class_images < 1 or self.prior_loss_weight < 0:
                bad.append("prior preservation needs num_class_images >= 1 and prior_loss_weight >= 0")
            if self.class_prompt.count("{}") != 1:
                bad.append(f"class_prompt={self.class_prompt!r} (needs one {{}} for the class noun)")
            if self.class_images and not os.path.isdir(self.class_images):
                bad.append(f"class_images={self.class_images!r} is not a folder (give a folder of class "
                           "images, or null to draw them with the model)")
        if self.class_noun and not self.initializer_word:
            bad.append("class_noun=True needs an initializer_word (the concept's class noun)")
        templates_for(self.templates)
        if bad:
            raise ValueError(f"InversionConfig for {self.placeholder!r}: " + "; ".join(bad))

    @property
    def subject(self) -> str:
        """What the training prompts say for the concept: S*, or "S* <class noun>"."""
        return f"{self.placeholder} {self.initializer_word}" if self.class_noun else self.placeholder

    @property
    def lr_effective(self) -> float:
        if not self.scale_lr:
            return self.lr
        return self.lr * self.grad_accum * self.n_devices * self.batch_size

    @property
    def lr_rule(self) -> str:
        if not self.scale_lr:
            return f"unscaled: {self.lr:g}"
        return (f"{self.lr:g} x grad_accum {self.grad_accum} x devices {self.n_devices} "
                f"x batch {self.batch_size} = {self.lr_effective:g}")

    @property
    def class_text(self) -> str:
        """The class prompt of prior preservation: "a photo of a <class noun>"."""
        return self.class_prompt.format(self.initializer_word)

    def active_vectors(self, step: int) -> int:
        """Vectors in use at optimizer step `step` (progressive unlocking counts optimizer steps)."""
        if self.progressive_interval is None:
            return self.num_vectors
        return min(self.num_vectors, 1 + step // self.progressive_interval)
