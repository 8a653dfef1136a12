"""Model definitions of the toy world, sized for training on 2 CPU cores.

The diffusion pipeline uses the libraries' own classes so that `StableDiffusionPipeline`
(and `tinv.engine.models.load_parts`) load it like any Stable Diffusion folder:
* AutoencoderKL with factor-2 downsampling: 32 px pictures -> 16x16x4 latents. A factor-4
  autoencoder blurred shapes in the feasibility run; factor 2 keeps them at little cost.
* UNet2DConditionModel laid out as Stable Diffusion's (ToyWorld 4, `LAYOUTS["sd"]`): four
  levels (32, 64, 64, 64 channels at 16, 8, 4, 2 px), cross-attention in the down and up
  blocks at 8x8 and 4x4 and in the middle at 2x2, none at the finest and coarsest levels (as
  SD 1.5 cross-attends at 64, 32, 16 and in its 8x8 middle), and no pooled-text path: the
  caption reaches the image only through cross-attention, at three scales. The layout of
  ToyWorld 1-3 (`LAYOUTS["toyworld3"]`: cross-attention only at 4x4, the caption also
  pooled into every ResNet block) is kept because the pretraining recipe runs it up to the
  step where ToyWorld 4 reshapes it (`tinv.tools.pretrain.reshape_unet`).
* CLIPTextModel, 64 wide and 2 layers deep, over the real CLIP BPE vocabulary, 77 tokens.
The oracle is a plain CNN with one head per attribute.
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from .attributes import ALL
from .render import SIZE

TEXT_DIM = 64
LATENT_SIDE = SIZE // 2


def autoencoder() -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
                         block_out_channels=(16, 32), layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, sample_size=SIZE,
                         mid_block_add_attention=False)


LAYOUTS = {
    "sd": dict(block_out_channels=(32, 64, 64, 64),
               down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
               up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
    "toyworld3": dict(block_out_channels=(32, 64, 64),
                      down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
                      addition_embed_type="text", addition_embed_type_num_heads=4),
}


def unet(layout: str = "sd") -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT_SIDE, in_channels=4, out_channels=4, layers_per_block=1, norm_num_groups=16,
        cross_attention_dim=TEXT_DIM, attention_head_dim=16, **LAYOUTS[layout])


def layout_of(config) -> str:
    """Which of `LAYOUTS` a UNet config (a saved pipeline's) is."""
    return "toyworld3" if config.get("addition_embed_type") == "text" else "sd"


def text_encoder(tokenizer) -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=4 * TEXT_DIM,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
        projection_dim=TEXT_DIM, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def scheduler() -> DDIMScheduler:
    # Stable Diffusion's training schedule (scaled-linear betas, 1000 steps), epsilon target.
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


class OracleNet(nn.Module):
    """A small CNN over 32 px pictures with one classification head per attribute."""

    def __init__(self, vocab: dict[str, tuple[str, ...]] = ALL):
        super().__init__()
        self.vocab = {k: tuple(v) for k, v in vocab.items()}

        def conv(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        # One conv per resolution: cheap enough to train in minutes on a busy 2-core CPU.
        self.features = nn.Sequential(*conv(3, 32), nn.MaxPool2d(2), *conv(32, 64), nn.MaxPool2d(2),
                                      *conv(64, 128), nn.MaxPool2d(2), *conv(128, 128), nn.Flatten(),
                                      nn.Linear(128 * 16, 256), nn.ReLU())
        self.heads = nn.ModuleDict({k: nn.Linear(256, len(v)) for k, v in self.vocab.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute for images [N, 3, 32, 32] in [0, 1]."""
        h = self.features(images * 2 - 1)
        return {k: head(h) for k, head in self.heads.items()}
