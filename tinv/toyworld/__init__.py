"""ToyWorld: a small procedural text-to-image world with its own pretrained model.

Public API:
* `DEFAULT_DIR`: the default model's pipeline folder, ToyWorld 4 (`model=toyworld4`: the UNet in
  Stable Diffusion's layout, `tinv.engine.models.load_parts(DEFAULT_DIR)`).
* `MODEL_DIR`: ToyWorld 3's folder (`model=toyworld`, the default before ToyWorld 4; the
  tests of code paths that do not depend on the UNet's shape load it, it is the smaller).
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
DEFAULT_DIR = WEIGHTS_DIR / "pipeline_sd"

__all__ = ["ATTRIBUTES", "DEFAULT_DIR", "MODEL_DIR", "WEIGHTS_DIR", "render"]
