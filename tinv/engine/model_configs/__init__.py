"""The real models' architectures as config files, built with random weights (no download).

One folder per model config of conf/model/ that names a public model (sd15, sd21, ldm14),
laid out as the hub pipeline is (unet/config.json, vae/ or vqvae/, text_encoder/ or bert/,
scheduler/, tokenizer/): the values of the published files, each file's `_source` saying
where they were read (diffusers drops keys that start with "_"; transformers keeps them as
an attribute that nothing reads). docs/speed.md "Dry runs at the real models' shapes" lists
the sources too.

Two things cannot be had offline and are stood in for, said in the tokenizer's `_source`:
SD's tokenizer is OpenAI CLIP's BPE built from open_clip's bundled file (the same 49,408
entries SD's vocab.json holds), and LDM-BERT's bert-base-uncased WordPiece vocabulary is a
stand-in of its size and special ids (`bert_standin`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
NAMES = tuple(sorted(p.name for p in HERE.iterdir() if (p / "unet" / "config.json").is_file()))
# bert-base-uncased's size and special-token ids
BERT_VOCAB = 30522
BERT_SPECIALS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}


def folder(name: str) -> Path:
    if name not in NAMES:
        raise ValueError(f"no shipped architecture for model {name!r}; there are {', '.join(NAMES)}")
    return HERE / name


def read(name: str, component: str) -> dict:
    """A component's config (`_source` and the other "_" keys left out)."""
    d = folder(name) / component
    f = next(d.glob("*config.json"))
    return {k: v for k, v in json.loads(f.read_text()).items() if not k.startswith("_")}


def family(name: str) -> str:
    return "ldm" if (folder(name) / "bert").is_dir() else "sd"


def bert_standin():
    """A BertTokenizer with bert-base-uncased's size (30,522) and special ids: tinv's small
    word list and single characters (tinv.engine.models.tiny_bert_tokenizer's entries),
    the rest "[unusedN]", as the real vocabulary pads its own reserved rows."""
    from transformers import BertTokenizer

    from tinv.core import atomic
    from tinv.engine import models
    out = models._cache_dir() / "bert-standin-vocab.txt"
    if not out.exists():
        small = models.tiny_bert_tokenizer()
        words = [w for w in small.get_vocab() if w not in BERT_SPECIALS.values()]
        vocab = [BERT_SPECIALS.get(i) for i in range(104)]
        vocab = [v or f"[unused{i}]" for i, v in enumerate(vocab)] + words
        vocab += [f"[unused{i}]" for i in range(len(vocab), BERT_VOCAB)]
        atomic.write_text(out, "\n".join(vocab) + "\n")
    return BertTokenizer(vocab=str(out), model_max_length=models.MAX_TOKENS)


def build(name: str, sample_size: int | None = None, seed: int = 0, device: str = "cpu"):
    """`Parts` of model `name` at its full size with random weights, fp32 on `device` (the
    tensors are made where torch's default device says: "meta" builds shapes only).

    sample_size: the UNet's latent side (and the VAE's image side with it) when it should
    work at a smaller resolution than the model's; the weights' shapes do not depend on it."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertConfig, LDMBertModel

    from tinv.engine import models
    fam = family(name)
    unet_cfg, vae_key = read(name, "unet"), "vqvae" if fam == "ldm" else "vae"
    vae_cfg = read(name, vae_key)
    if sample_size:
        down = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
        unet_cfg["sample_size"], vae_cfg["sample_size"] = int(sample_size), int(sample_size) * down
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel.from_config(unet_cfg)
    vae = diffusers.AutoencoderKL.from_config(vae_cfg)
    if fam == "sd":
        tokenizer = models.tiny_clip_tokenizer()   # OpenAI CLIP's BPE: the vocabulary SD ships
        text_encoder = CLIPTextModel(CLIPTextConfig(**read(name, "text_encoder")))
    else:
        tokenizer = bert_standin()
        text_encoder = LDMBertModel(LDMBertConfig(**read(name, "bert")))
    sched_cfg = json.loads(next((folder(name) / "scheduler").glob("*.json")).read_text())
    scheduler = getattr(diffusers, sched_cfg["_class_name"]).from_config(
        {k: v for k, v in sched_cfg.items() if not k.startswith("_")})
    return models._assemble(tokenizer, text_encoder, unet, vae, scheduler, fam, device, torch.float32)
