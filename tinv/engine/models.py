"""Load a text-to-image latent diffusion model as `Parts`, or build a tiny random one.

Two families: "sd" (Stable Diffusion 1.x/2.x: CLIPTokenizer + CLIPTextModel) and "ldm"
(the paper's LDM, diffusers' LDMTextToImagePipeline: BertTokenizer + LDMBertModel).
Everything here is the libraries' own classes; the tiny builders only pick small sizes,
so tests exercise exactly the code paths a real model takes.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DiffusionPipeline, LDMTextToImagePipeline,
                       StableDiffusionPipeline, UNet2DConditionModel, VQModel)
from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertConfig, LDMBertModel
from transformers import BertTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from tinv.core import atomic

FAMILIES = ("sd", "ldm")
# Both public families condition on 77 token positions.
MAX_TOKENS = 77


@dataclass
class Parts:
    """The pieces of a latent text-to-image pipeline that inversion needs."""
    tokenizer: Any
    text_encoder: torch.nn.Module
    unet: UNet2DConditionModel
    vae: torch.nn.Module              # AutoencoderKL (SD, hub LDM) or VQModel
    scheduler: Any                    # the pipeline's own (sampling) scheduler
    family: str                       # "sd" or "ldm"
    resolution: int                   # pixel size the model works at
    vae_scale: float                  # latent scaling factor

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def tokenize(self, prompts: list[str], expand: bool = True) -> torch.Tensor:
        """Token ids [B, 77], padded and truncated the way the family's pipeline does it.

        expand: a multi-vector placeholder "<S*>" becomes "<S*> <S*>_1 ..." (all its vectors),
        as diffusers' `maybe_convert_prompt` does; the training loop passes prompts it has
        already expanded (progressive unlocking uses fewer) with expand=False."""
        prompts = [expand_multi_vector(self.tokenizer, p) for p in prompts] if expand else list(prompts)
        ids = self.tokenizer(prompts, padding="max_length", max_length=MAX_TOKENS,
                             truncation=True, return_tensors="pt").input_ids
        return ids.to(self.device)

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Conditioning [B, L, D]: the last hidden states, as both pipelines feed the UNet."""
        return self.text_encoder(input_ids.to(self.device))[0]

    def input_embeddings(self) -> torch.nn.Embedding:
        return self.text_encoder.get_input_embeddings()

    def freeze(self) -> "Parts":
        """Eval mode (no dropout) and no weight gradients anywhere."""
        for m in (self.text_encoder, self.unet, self.vae):
            m.eval()
            m.requires_grad_(False)
        return self


def expand_multi_vector(tokenizer, prompt: str) -> str:
    """Replace each added token T that has T_1, T_2, ... by "T T_1 T_2 ..." (diffusers' rule);
    a prompt already written out ("T T_1 ...") is left as it is."""
    added = set(tokenizer.get_added_vocab())
    if not any(f"{t}_1" in added for t in added):
        return prompt

    def sub(m: re.Match) -> str:
        t, n = m.group(0), 1
        if f"{t}_1" not in added or m.string.startswith(f" {t}_1", m.end()):
            return t
        while f"{t}_{n}" in added:
            n += 1
        return " ".join([t] + [f"{t}_{i}" for i in range(1, n)])
    # All added tokens, longest first, so "<S*>_1" or "<S*>x" is never read as "<S*>".
    pattern = "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True))
    return re.sub(pattern, sub, prompt)


def detect_family(path_or_hub_id: str) -> str:
    """'sd' or 'ldm' from the pipeline's model_index.json, or a ValueError naming the path."""
    try:
        index = DiffusionPipeline.load_config(str(path_or_hub_id))
    except Exception as e:  # noqa: BLE001 - re-raised with the path the user gave
        raise ValueError(f"{path_or_hub_id!r} is not a diffusers pipeline folder or hub id "
                         f"(no readable model_index.json): {e}") from e
    if "text_encoder" in index and "tokenizer" in index and "unet" in index:
        return "sd"
    if "bert" in index and "vqvae" in index:
        return "ldm"
    raise ValueError(f"{path_or_hub_id!r}: model_index.json ({index.get('_class_name')}) is neither "
                     "a Stable Diffusion layout (text_encoder/tokenizer/unet/vae) nor an LDM layout "
                     "(bert/tokenizer/unet/vqvae)")


def load_parts(path_or_hub_id: str | os.PathLike, family: str | None = None, device: str = "cpu",
               dtype: torch.dtype = torch.float32) -> Parts:
    """Load a pipeline folder or hub id into frozen `Parts` on `device`."""
    path = str(path_or_hub_id)
    family = family or detect_family(path)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    kw = dict(torch_dtype=dtype)
    dkw = _diffusers_kw(dtype)
    pipe_cls = StableDiffusionPipeline if family == "sd" else LDMTextToImagePipeline
    names = ("tokenizer", "text_encoder", "vae") if family == "sd" else ("tokenizer", "bert", "vqvae")
    try:
        if family == "sd":
            tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
            text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw)
            vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **dkw)
        else:
            tokenizer = BertTokenizer.from_pretrained(path, subfolder="tokenizer")
            text_encoder = LDMBertModel.from_pretrained(path, subfolder="bert", **kw)
            vae = _load_ldm_autoencoder(path, dtype)
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **dkw)
        scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError) as e:
        raise ValueError(f"could not load {pipe_cls.__name__} components {names} + unet/scheduler "
                         f"from {path!r}: {e}") from e
    return _assemble(tokenizer, text_encoder, unet, vae, scheduler, family, device, dtype)


def _load_ldm_autoencoder(path: str, dtype: torch.dtype) -> torch.nn.Module:
    # The hub LDM ships its first stage as AutoencoderKL under the name "vqvae"; others use VQModel.
    cfg = DiffusionPipeline.load_config(path)
    cls = VQModel if cfg.get("vqvae", [None, None])[1] == "VQModel" else AutoencoderKL
    return cls.from_pretrained(path, subfolder="vqvae", **_diffusers_kw(dtype))


def _diffusers_kw(dtype: torch.dtype) -> dict:
    # diffusers wants accelerate for low-memory loading and prints a long notice per model
    # without it; the toy world loads in milliseconds either way.
    return dict(torch_dtype=dtype, low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)


def _assemble(tokenizer, text_encoder, unet, vae, scheduler, family, device, dtype) -> Parts:
    down = 2 ** (len(vae.config.block_out_channels) - 1)
    scale = getattr(vae.config, "scaling_factor", None) or 1.0
    text_encoder, unet, vae = (_place(m, device, dtype) for m in (text_encoder, unet, vae))
    parts = Parts(tokenizer=tokenizer, text_encoder=text_encoder,
                  unet=unet, vae=vae, scheduler=scheduler,
                  family=family, resolution=int(unet.config.sample_size) * down, vae_scale=float(scale))
    return parts.freeze()


def _place(module: torch.nn.Module, device, dtype) -> torch.nn.Module:
    # Cast only when needed: diffusers warns on every dtype cast, even a no-op one.
    module = module.to(device)
    return module if module.dtype == dtype else module.to(dtype)


def save_parts(parts: Parts, folder: str | os.PathLike) -> Path:
    """Write a standard diffusers pipeline folder that `load_parts` (and diffusers) can read."""
    folder = Path(folder)
    if parts.family == "sd":
        pipe = StableDiffusionPipeline(vae=parts.vae, text_encoder=parts.text_encoder,
                                       tokenizer=parts.tokenizer, unet=parts.unet,
                                       scheduler=parts.scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    else:
        pipe = LDMTextToImagePipeline(vqvae=parts.vae, bert=parts.text_encoder, tokenizer=parts.tokenizer,
                                      unet=parts.unet, scheduler=parts.scheduler)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def to_pipeline(parts: Parts) -> DiffusionPipeline:
    """The diffusers pipeline object sharing these parts (no copies)."""
    if parts.family == "sd":
        return StableDiffusionPipeline(vae=parts.vae, text_encoder=parts.text_encoder,
                                       tokenizer=parts.tokenizer, unet=parts.unet,
                                       scheduler=parts.scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    return LDMTextToImagePipeline(vqvae=parts.vae, bert=parts.text_encoder, tokenizer=parts.tokenizer,
                                  unet=parts.unet, scheduler=parts.scheduler)


# ---------------------------------------------------------------- tiny random pipelines
TINY_DIM = 32           # text hidden size = UNet cross-attention size
TINY_LATENT = 8         # latent side; the 3-level autoencoder downsamples by 4 -> 32 px images


def _cache_dir() -> Path:
    root = Path(os.environ.get("TINV_CACHE", Path(tempfile.gettempdir()) / "tinv-cache"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _clip_vocab_files() -> Path:
    """vocab.json + merges.txt of OpenAI CLIP's BPE, built offline from open_clip's bundled file."""
    out = _cache_dir() / "clip-bpe"
    if (out / "merges.txt").exists():
        return out
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]  # the 48,894 merges CLIP uses (as open_clip does)
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with atomic.replacing_dir(out, keep_existing=True) as tmp:   # a concurrent builder loses harmlessly
        (tmp / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
        (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return out


def tiny_clip_tokenizer() -> CLIPTokenizer:
    d = _clip_vocab_files()
    return CLIPTokenizer(vocab=str(d / "vocab.json"), merges=str(d / "merges.txt"),
                         model_max_length=MAX_TOKENS)


# A small English word list for the tiny BERT vocabulary: enough for the templates,
# the test initializers and common evaluation prompts; everything else maps to [UNK]
# or word pieces of single letters.
_BERT_WORDS = """a an the of in on with and or by for to at from is it its this that my our your
photo photograph picture rendition rendering painting drawing sketch image style clean dirty dark
bright cropped close-up good nice small large big weird cool one two three four five new old
sculpture cat dog toy star circle square triangle red green blue yellow purple pink black white
moon beach snow jungle forest city street floor rug water ocean grass tree house mountain oil
elmo holding wearing shiny wet cube shaped background top front side view art artwork""".split()


def tiny_bert_tokenizer() -> BertTokenizer:
    out = _cache_dir() / "tiny-bert-vocab.txt"
    if not out.exists():
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-*<>_")
        pieces = ["##" + c for c in chars]
        atomic.write_text(out, "\n".join(specials + chars + pieces + _BERT_WORDS) + "\n")
    return BertTokenizer(vocab=str(out), model_max_length=MAX_TOKENS)


def _tiny_unet(seed: int) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=TINY_LATENT, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=TINY_DIM,
        # Cross-attention at every level: a random net then depends on the prompt enough
        # for a learned word to visibly lower the loss.
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=8)


def _tiny_vae(seed: int) -> AutoencoderKL:
    torch.manual_seed(seed + 1)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
                         block_out_channels=(8, 16, 16), layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, sample_size=TINY_LATENT * 4)


def _tiny_scheduler() -> DDIMScheduler:
    # SD's training schedule (scaled-linear betas over 1000 steps).
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def tiny_sd_parts(seed: int = 0, device: str = "cpu") -> Parts:
    """A random-weight Stable Diffusion pipeline with the real classes, 32 px, 8x8 latents."""
    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TINY_DIM, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=TINY_DIM,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    return _assemble(tokenizer, text_encoder, _tiny_unet(seed), _tiny_vae(seed), _tiny_scheduler(),
                     "sd", device, torch.float32)


def tiny_sd2_parts(seed: int = 0, device: str = "cpu") -> Parts:
    """Stable Diffusion 2.x's layout, tiny and random: linear projections in the transformer
    blocks, a head count per level, a GELU text encoder, and v-prediction."""
    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TINY_DIM, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=TINY_DIM, hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=TINY_LATENT, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=TINY_DIM,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction")
    return _assemble(tokenizer, text_encoder, unet, _tiny_vae(seed), scheduler, "sd", device, torch.float32)


def tiny_ldm_parts(seed: int = 0, device: str = "cpu") -> Parts:
    """A random-weight LDM (LDMBertModel + BertTokenizer) pipeline, 32 px, 8x8 latents."""
    tokenizer = tiny_bert_tokenizer()
    torch.manual_seed(seed + 2)
    bert = LDMBertModel(LDMBertConfig(
        vocab_size=len(tokenizer), max_position_embeddings=MAX_TOKENS, encoder_layers=2,
        encoder_ffn_dim=64, encoder_attention_heads=4, head_dim=8, d_model=TINY_DIM))
    return _assemble(tokenizer, bert, _tiny_unet(seed), _tiny_vae(seed), _tiny_scheduler(),
                     "ldm", device, torch.float32)
