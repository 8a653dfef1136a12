"""DreamBooth (Ruiz et al. 2023, arXiv 2208.12242) trained as a LoRA on the UNet, as diffusers'
examples/dreambooth/train_dreambooth_lora.py trains it.

DreamBooth learns no word. It binds the concept to a rare identifier that the vocabulary
already has ("sks", the identifier of diffusers' examples) and fine-tunes the denoiser on
"a photo of sks <class noun>" (the method's `inversion.class_noun`). S* is therefore held at
the identifier's embedding (`trains_word = False`): a prompt with S* encodes exactly as the
same prompt with the identifier, so the trained LoRA is triggered by "sks <class noun>" on a
stock pipeline with no embedding file at all. What trains is a rank-r LoRA on the UNet's
attention projections (peft, `unet.add_adapter`, as the script does); the text encoder
stays frozen (the script's default without --train_text_encoder).

Prior preservation (section 3.3 of the paper; the script's --with_prior_preservation) is
the loop's (InversionConfig.prior_preservation, tinv/engine/prior.py): on by default in
conf/method/dreambooth_lora.yaml, as DreamBooth runs it.

Exports: `pytorch_lora_weights.safetensors` in diffusers' LoRA format (what the script
writes), loaded with `StableDiffusionPipeline.load_lora_weights(folder)`, and
`dreambooth_lora.json` naming the trigger phrase.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from tinv.engine.learners import Learner, cpu_state, load_into
from tinv.engine.pseudo_words import PseudoWord

# train_dreambooth_lora.py's `unet_lora_config`: these projections, lora_alpha = r (a LoRA
# scale of 1) and peft's "gaussian" init (A ~ N(0, 1/r), B = 0: training starts at the base
# model). add_k_proj/add_v_proj exist only in UNets with added K/V (DeepFloyd IF).
TARGETS = ["to_k", "to_q", "to_v", "to_out.0", "add_k_proj", "add_v_proj"]
ADAPTER = "default"              # peft's adapter name, the one diffusers' loaders use
FILE = "pytorch_lora_weights.safetensors"   # diffusers' LORA_WEIGHT_NAME_SAFE
INFO = "dreambooth_lora.json"


def identifier_id(parts, identifier: str, who: str = "dreambooth_lora") -> int:
    """The vocabulary id of the rare identifier; it must be one token of this tokenizer."""
    ids = parts.tokenizer(identifier, add_special_tokens=False).input_ids
    if len(ids) != 1:
        pieces = parts.tokenizer.convert_ids_to_tokens(ids)
        raise ValueError(f"{who}: identifier {identifier!r} is {len(ids)} tokens {pieces} for this "
                         "tokenizer; set inversion.learner_args.identifier to a rare word that is one token")
    return ids[0]


def hold_identifier(parts, word: PseudoWord, identifier: str, who: str) -> None:
    """S* := the identifier's embedding (its row and its init), so "S* dog" encodes as "sks dog".
    Its vectors are made from the table when training starts."""
    table = parts.input_embeddings().weight
    ident = table[identifier_id(parts, identifier, who)].detach().clone()
    word.init = ident.reshape(1, -1).clone()
    with torch.no_grad():
        table[word.token_ids] = ident.to(table)


def lora_parameters(unet) -> dict[str, torch.nn.Parameter]:
    """The LoRA's own parameters, by name, in the UNet's order."""
    return {n: p for n, p in unet.named_parameters() if ".lora_" in n}


def add_lora(unet, rank: int, seed: int) -> dict[str, torch.nn.Parameter]:
    """A fresh LoRA on `unet` (the script's config), its random init drawn from `seed` without
    touching the global RNG; returns its parameters (float32, as the script casts them)."""
    from peft import LoraConfig
    if getattr(unet, "peft_config", None):
        raise ValueError("dreambooth_lora: this UNet already carries a LoRA; load a fresh model")
    devices = [unet.device] if unet.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                    target_modules=TARGETS), adapter_name=ADAPTER)
    params = lora_parameters(unet)
    for p in params.values():
        p.data = p.data.float()
    return params


class DreamBoothLoRA(Learner):
    name = "lora"
    packable = False      # it trains the shared UNet
    trains_word = False   # S* is the identifier's embedding, held fixed
    leaves_out = ("train_dreambooth_lora.py's single instance prompt (the loop's 27 templates instead) "
                  "and gradient clipping (--max_grad_norm 1.0)")

    def __init__(self, parts, word: PseudoWord, cfg, gen):
        super().__init__(parts, word, cfg, gen)
        a = self.args
        if cfg.num_vectors != 1:
            raise ValueError(f"dreambooth_lora binds one identifier token: num_vectors must be 1, got {cfg.num_vectors}")
        if a["rank"] < 1 or a["lr"] <= 0:
            raise ValueError(f"dreambooth_lora: rank >= 1 and lr > 0 are needed, got {a}")
        hold_identifier(parts, word, a["identifier"], "dreambooth_lora")
        self.params = add_lora(parts.unet, a["rank"], cfg.seed)
        for p in self.params.values():
            p.requires_grad_(True)

    def param_groups(self) -> list[dict]:
        # The LoRA's own rate: inversion.lr is the word's (scaled by TI's batch rule), and
        # the script's rate is unscaled (--scale_lr off). AdamW's weight decay is the loop's
        # 0.01, the script's --adam_weight_decay.
        return [{"params": list(self.params.values()), "lr": float(self.args["lr"])}]

    def state(self) -> dict[str, Any]:
        return {"identifier": self.args["identifier"], "class_noun": self.cfg.initializer_word if self.cfg.class_noun else None,
                "rank": int(self.args["rank"]), "lora": cpu_state(self.params)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        load_into(self.params, state["lora"], "dreambooth_lora: the stored LoRA")

    def finish(self, parts) -> None:
        for p in self.params.values():     # trained: sampling needs no gradients
            p.requires_grad_(False)


LEARNER = DreamBoothLoRA


def restore(parts, learned: Mapping[str, Any], words: Mapping[str, PseudoWord]) -> None:
    """The trained LoRA on a fresh UNet (S*, the identifier's vector, is among `words` already)."""
    st = learned["state"]
    params = add_lora(parts.unet, st["rank"], 0)
    load_into(params, st["lora"], "dreambooth_lora: the stored LoRA")
    for p in params.values():
        p.requires_grad_(False)


def trigger(learned: Mapping[str, Any]) -> str:
    st = learned["state"]
    return f"{st['identifier']} {st['class_noun']}" if st.get("class_noun") else st["identifier"]


def export(parts, learned: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """diffusers' LoRA file (as the script saves it) and the trigger phrase beside it."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    from tinv.core import atomic
    st = learned["state"]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # peft's state-dict names (get_peft_model_state_dict drops the adapter name) -> diffusers'
    peft_sd = {n.replace(f".{ADAPTER}.", "."): v for n, v in st["lora"].items()}
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=convert_state_dict_to_diffusers(peft_sd),
                                              safe_serialization=True)
    info = folder / INFO
    with atomic.replacing(info) as tmp:
        Path(tmp).write_text(json.dumps({"trigger": trigger(learned), "identifier": st["identifier"],
                                         "class_noun": st.get("class_noun"), "rank": st["rank"],
                                         "load": "StableDiffusionPipeline.load_lora_weights(folder)"}, indent=1))
    return {"lora": str(folder / FILE), "lora_info": str(info)}


def usage(files: Mapping[str, Path], placeholder: str) -> list[str]:
    trig = json.loads(Path(files["lora_info"]).read_text())["trigger"]
    return [f'DreamBooth-LoRA (diffusers): pipe.load_lora_weights("{Path(files["lora"]).parent}", '
            f'weight_name="{FILE}"), then write "{trig}" in prompts']
