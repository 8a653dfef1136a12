"""What sampling and scoring read of a job's config, typed: the evaluation protocol (eval.*)
and what the model brings to it (its evaluator, DINO, the oracle, its weights).

The harness builds both once per job from the composed config (tinv.harness.plan.make_plan:
`plan.eval`, `plan.model`); the metrics (tinv.metrics.protocol, .oracle) and the method
kinds' sampling (tinv.methods) read these fields, not the config's dicts, so a renamed or
misspelled key fails where the plan is made, not halfway through a job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EvalSettings:
    """The evaluation protocol of section 5.1 as one job runs it (conf/eval/*.yaml)."""
    seed: int                      # sample i of every prompt and setup starts from seed + i
    num_samples: int               # samples per prompt
    steps: int                     # DDIM steps
    guidance: float
    eta: float
    batch_size: int                # images per UNet batch while sampling
    bootstrap_n: int               # resamples of the 95% intervals
    bootstrap_seed: int
    clip: dict | None = None       # {"model", "pretrained"} for a model scored by open_clip
    dino: dict | None = None       # {"model", "pretrained"} for a model with timm's DINO; None: none

    @property
    def seeds(self) -> list[int]:
        """The same noise seeds for every setup, prompt and concept (section 5.1)."""
        return list(range(self.seed, self.seed + self.num_samples))

    @property
    def boot(self) -> dict[str, int]:
        """The bootstrap's arguments (tinv.metrics.scores, .bootstrap)."""
        return {"n_boot": self.bootstrap_n, "seed": self.bootstrap_seed}


@dataclass(frozen=True)
class ModelSettings:
    """What the model brings to the evaluation (conf/model/*.yaml)."""
    weights: str                   # the weights' fingerprint: what samples depend on
    dtype: str = "None"            # as the config says it (str: "float32", "None" when unset)
    evaluator: str = "clip"        # "toyworld": the toy CLIP; "clip": open_clip per eval.clip
    dino: bool = False             # score DINO (timm's, per eval.dino) beside CLIP
    oracle: bool = False           # the toy world's attribute oracle


def eval_settings(e: dict[str, Any]) -> EvalSettings:
    """EvalSettings from a composed `eval` block (the harness's plan calls it once)."""
    return EvalSettings(seed=int(e["seed"]), num_samples=int(e["num_samples"]), steps=int(e["steps"]),
                        guidance=float(e["guidance"]), eta=float(e["eta"]), batch_size=int(e["batch_size"]),
                        bootstrap_n=int(e["bootstrap"]["n"]), bootstrap_seed=int(e["bootstrap"]["seed"]),
                        clip=e.get("clip"), dino=e.get("dino"))


def model_settings(m: dict[str, Any], weights: str) -> ModelSettings:
    """ModelSettings from a composed `model` block and its weights' fingerprint."""
    return ModelSettings(weights=weights, dtype=str(m.get("dtype")),
                         evaluator=str(m.get("evaluator") or "clip"), dino=bool(m.get("dino")),
                         oracle=bool(m.get("oracle")))
