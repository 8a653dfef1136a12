"""The attribute oracle: ground truth for every named and unnamed attribute of a picture.

`load_oracle().predict(images)` names each attribute; `oracle_reconstruction` and
`oracle_editability` turn those names into the toy world's ground-truth metrics.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from .attributes import UNNAMED
from .nets import OracleNet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "oracle"


class Oracle:
    """A trained `OracleNet` that names attribute values."""

    def __init__(self, net: OracleNet, device: str = "cpu"):
        self.net = net.to(device).eval()
        self.device = device
        self.vocab = net.vocab

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Logits per attribute for images [N, 3, H, W] in [0, 1] (resized to 32 px if needed)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"oracle wants images [N, 3, H, W] in [0, 1], got shape {tuple(images.shape)}")
        if images.shape[-1] != 32 or images.shape[-2] != 32:
            images = torch.nn.functional.interpolate(images.float(), size=(32, 32), mode="area")
        out: dict[str, list] = {k: [] for k in self.vocab}
        for chunk in images.split(batch_size):
            for k, v in self.net(chunk.to(self.device, torch.float32)).items():
                out[k].append(v.cpu())
        return {k: torch.cat(v) for k, v in out.items()}

    def predict(self, images: torch.Tensor) -> dict[str, list[str]]:
        """The most likely value of every attribute, per image: {attr: [value per image]}."""
        return {k: [self.vocab[k][i] for i in v.argmax(-1).tolist()] for k, v in self.logits(images).items()}


def load_oracle(device: str = "cpu", folder: Path = WEIGHTS_DIR) -> Oracle:
    """The shipped oracle, in eval mode on `device`."""
    folder = Path(folder)
    if not (folder / "oracle.safetensors").exists():
        raise FileNotFoundError(f"toy-world oracle weights are missing in {folder}; "
                                "regenerate them with `python -m tinv.tools.pretrain`")
    vocab = {k: tuple(v) for k, v in json.loads((folder / "vocab.json").read_text()).items()}
    net = OracleNet(vocab)
    net.load_state_dict({k: v.float() for k, v in load_file(folder / "oracle.safetensors").items()})
    return Oracle(net, device)


def _share(predictions: dict[str, list[str]], wanted: dict) -> list[float]:
    unknown = [k for k in wanted if k not in predictions]
    if unknown:
        raise KeyError(f"the oracle does not predict attribute(s) {unknown}; it knows {sorted(predictions)}")
    if not wanted:
        raise ValueError("need at least one attribute to compare against")
    n = len(next(iter(predictions.values())))
    return [sum(predictions[k][i] == v for k, v in wanted.items()) / len(wanted) for i in range(n)]


def oracle_reconstruction(predictions: dict[str, list[str]], concept_attributes: dict) -> list[float]:
    """Per sample: the share of the concept's ground-truth attributes (unnamed included) present."""
    return _share(predictions, concept_attributes)


def oracle_editability(predictions: dict[str, list[str]], asked: dict) -> list[float]:
    """Per sample: the share of the attributes the prompt asks for (e.g. {"background": "night"}) present."""
    return _share(predictions, asked)


def oracle_editability_all(predictions: dict[str, list[str]], asked: dict) -> list[float]:
    """Per sample: 1.0 when EVERY attribute the prompt asks for is present, else 0.0 (a sample
    that draws the style but not the background did not follow the prompt)."""
    return [float(s == 1.0) for s in _share(predictions, asked)]


def splits(truth: dict) -> dict[str, dict]:
    """The groups a concept's attributes are scored in: {"": all, "_named": what captions can
    say, "_unnamed": what no word says (accent, outline), "_<attr>": {attr: value}}; empty
    groups left out."""
    groups = {"": truth, "_named": {k: v for k, v in truth.items() if k not in UNNAMED},
              "_unnamed": {k: v for k, v in truth.items() if k in UNNAMED},
              **{f"_{k}": {k: v} for k, v in truth.items()}}
    return {suffix: g for suffix, g in groups.items() if g}
