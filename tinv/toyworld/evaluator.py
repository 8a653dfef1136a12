"""The toy world's evaluator: a small CLIP in open_clip's own format.

Its architecture is a JSON model config registered with `open_clip.add_model_config`; the
weights load through `open_clip.create_model_and_transforms(NAME, pretrained=<file>)` and
the tokenizer through `open_clip.get_tokenizer(NAME)`: exactly the code path that
ViT-B-32 takes, so the metrics code cannot tell the two apart.
"""
from __future__ import annotations

import json
from pathlib import Path


NAME = "toyworld-clip"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "evaluator"
CONFIG_FILE = WEIGHTS_DIR / f"{NAME}.json"
WEIGHTS_FILE = WEIGHTS_DIR / f"{NAME}.safetensors"

# The image tower is open_clip's ModifiedResNet (the tower of OpenAI's RN50 CLIP), tiny.
# A ViT on 8 px patches learned colour and background but not shape or position in the
# time a 2-core CPU allows; the ResNet's attention pooling learned position, and its
# input is 64 px (open_clip's preprocess upsamples the 32 px pictures) because its stem
# divides the side by 4 before the first block, which at 32 px left too little of a shape.
CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def register(config_file: Path = CONFIG_FILE) -> str:
    """Register the model config in `config_file` with open_clip under NAME; returns NAME.

    open_clip keeps the config it scanned last, so registering a file always makes it win.
    """
    config_file = Path(config_file)
    if not config_file.exists():
        raise FileNotFoundError(f"toy-world evaluator config {config_file} is missing; "
                                "regenerate it with `python -m tinv.tools.pretrain`")
    import open_clip    # here, not at the top: the preflight reads WEIGHTS_FILE and must stay fast
    open_clip.add_model_config(config_file)
    return NAME


def write_config(folder: Path, config: dict = CONFIG) -> Path:
    """Write `config` as the open_clip model config file NAME.json in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(folder) / f"{NAME}.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def load_evaluator(device: str = "cpu", weights: Path = WEIGHTS_FILE):
    """(model, preprocess, tokenizer) of the shipped toy-world CLIP, in eval mode on `device`."""
    weights = Path(weights)
    if not weights.exists():
        raise FileNotFoundError(f"toy-world evaluator weights {weights} are missing; "
                                "regenerate them with `python -m tinv.tools.pretrain`")
    name = register(weights.with_suffix(".json"))
    import open_clip
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(weights), device=device)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)
