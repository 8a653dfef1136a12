"""Image and text encoders for the metrics: CLIP through open_clip, DINO through timm (on
the toy world, the toy CLIP's image tower short of its projection: TowerEncoder).

Generated images arrive as tensors [N, 3, H, W] in [0, 1]. They go through each model's
own preprocessing (as PIL images, exactly as a user's photos would), so a real model's
scores do not depend on how the harness stored its samples. The toy world's evaluator
is an open_clip model too and takes the very same path.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.functional import to_pil_image

from tinv.metrics import TINY_CLIP

_TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def register_tiny_clip() -> str:
    import open_clip
    if TINY_CLIP not in open_clip.list_models():
        folder = Path(tempfile.mkdtemp(prefix="tinv-clip-cfg-"))
        (folder / f"{TINY_CLIP}.json").write_text(json.dumps(_TINY_CLIP_CFG))
        open_clip.add_model_config(folder)
    return TINY_CLIP


_CACHE: dict = {}


def cached(factory, *args):
    """One encoder per (factory, args) per process: a multirun's jobs share their evaluators
    (frozen, eval mode, never modified by a job)."""
    key = (getattr(factory, "__qualname__", repr(factory)), args)
    if key not in _CACHE:
        _CACHE[key] = factory(*args)
    return _CACHE[key]


def _batches(images: torch.Tensor, size: int):
    for start in range(0, len(images), size):
        yield images[start:start + size]


class ClipEncoder:
    """Unit-norm CLIP embeddings of images and texts (numpy float64 for the metric code)."""

    def __init__(self, model, preprocess, tokenizer, device: str = "cpu", name: str = ""):
        self.model = model.to(device).eval()
        self.preprocess, self.tokenizer, self.device, self.name = preprocess, tokenizer, device, name

    @classmethod
    def from_open_clip(cls, name: str, pretrained: str | None, device: str = "cpu") -> "ClipEncoder":
        """ViT-B-32 + "openai" for real models (section 5.1); TINY_CLIP + None in tests."""
        import open_clip
        if name == TINY_CLIP:
            register_tiny_clip()
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained or None)
        return cls(model, preprocess, open_clip.get_tokenizer(name), device, f"{name}/{pretrained}")

    @classmethod
    def toyworld(cls, device: str = "cpu") -> "ClipEncoder":
        """The toy world's own CLIP (tinv.toyworld.evaluator), same code path as ViT-B-32."""
        from tinv.toyworld import evaluator
        loaded = evaluator.load_evaluator(device=device)
        if isinstance(loaded, ClipEncoder):
            return loaded
        model, preprocess, tokenizer = loaded[:3]
        return cls(model, preprocess, tokenizer, device, "toyworld")

    def images(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        return _embed(images, self.preprocess, self.model.encode_image, self.device, batch_size)

    @torch.no_grad()
    def texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return _unit(self.model.encode_text(tokens).float().cpu())


class DinoEncoder:
    """DINO ViT-S/16 CLS features (timm), the image similarity DreamBooth prefers to CLIP's."""

    def __init__(self, name: str = "vit_small_patch16_224.dino", pretrained: bool | str = True,
                 device: str = "cpu"):
        """pretrained: True (timm's weights, from the hub or its cache), False, or a local
        weights file (a machine without the hub)."""
        import timm
        local = {"pretrained_cfg_overlay": {"file": str(pretrained)}} if isinstance(pretrained, str) else {}
        self.model = timm.create_model(name, pretrained=bool(pretrained), num_classes=0,
                                       **local).to(device).eval()
        cfg = timm.data.resolve_model_data_config(self.model)
        self.transform = timm.data.create_transform(**cfg, is_training=False)
        self.device, self.name = device, name

    def images(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        return _embed(images, self.transform, self.model, self.device, batch_size)


class TowerEncoder:
    """DINO's part on the toy world, where no DINO was ever trained: the evaluator CLIP's
    image tower up to, not through, its pooling into the space it shares with text.

    What DreamBooth wants from DINO over CLIP-I is a similarity of images alone, one not
    trained to agree with captions, so that two subjects a caption would call alike still
    differ. The tower's last feature map, averaged over positions, is that on the toy
    world: it never passed the attention pooling and projection that CLIP's contrastive
    loss shaped. open_clip's `forward_intermediates` gives it for its ResNets and ViTs alike.
    """

    def __init__(self, clip: ClipEncoder):
        self.clip, self.device, self.name = clip, clip.device, f"{clip.name}:tower"

    @classmethod
    def toyworld(cls, device: str = "cpu") -> "TowerEncoder":
        return cls(cached(ClipEncoder.toyworld, device))

    def images(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        return _embed(images, self.clip.preprocess, self._pooled_feature_map, self.device, batch_size)

    def _pooled_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        [fmap] = self.clip.model.visual.forward_intermediates(
            x, indices=1, intermediates_only=True, output_fmt="NCHW")["image_intermediates"]
        return fmap.mean(dim=(2, 3))


@torch.no_grad()
def _embed(images: torch.Tensor, transform, forward, device: str, batch_size: int) -> np.ndarray:
    """Unit-norm features of `images` in batches, each image through the model's own
    preprocessing as a PIL image (as a user's photo would be)."""
    out = []
    for chunk in _batches(images, batch_size):
        x = torch.stack([transform(to_pil_image(im.clamp(0, 1))) for im in chunk])
        out.append(forward(x.to(device)).float().cpu())
    return _unit(torch.cat(out))


def _unit(x: torch.Tensor) -> np.ndarray:
    x = x.double().numpy()
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
