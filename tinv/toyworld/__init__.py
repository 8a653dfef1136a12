"""ToyWorld: a small procedural text-to-image world with its own pretrained model.

Public API:
* `MODEL_DIR`: the shipped StableDiffusionPipeline folder (`tinv.engine.models.load_parts(MODEL_DIR)`).
* `render(attrs, seed) -> PIL.Image`: a deterministic 32 px picture of a scene.
* `ATTRIBUTES`: {"named": {attr: values}, "unnamed": {attr: values}}.
* `evaluator.load_evaluator()`, `oracle.load_oracle()`, `oracle.oracle_reconstruction`,
  `oracle.oracle_editability`.
Regenerate every weight with `python -m tinv.tools.pretrain --out DIR --seed 0 --ship`.
"""
from pathlib import Path

from .attributes import ATTRIBUTES
from .render import render

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_DIR = WEIGHTS_DIR / "pipeline"

__all__ = ["ATTRIBUTES", "MODEL_DIR", "WEIGHTS_DIR", "render"]
