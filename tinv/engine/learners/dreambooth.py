"""DreamBooth (Ruiz et al. 2023, arXiv 2208.12242) as its paper runs it: the whole denoiser
fine-tuned (the text encoder too, by option), with the class-specific prior preservation loss,
on "a photo of <identifier> <class noun>", as diffusers' examples/dreambooth/train_dreambooth.py
trains it.

    L = E || eps - eps_theta(z_t, t, c("a sks dog")) ||^2 + lambda E || eps' - eps_theta(z'_t, t', c("a photo of a dog")) ||^2

No word is learned: S* is held at a rare identifier already in the vocabulary ("sks", the
script README's), as in tinv/engine/learners/lora.py, so the trained UNet is triggered by
"sks <class noun>" on a stock pipeline. The second term is the loop's prior preservation
(InversionConfig.prior_preservation, on in conf/method/dreambooth.yaml; class images drawn
by the model itself before it trains, tinv/engine/prior.py).

What trains: every UNet weight (the script's `unet.parameters()`), in its own optimizer group
at the script's rate (--learning_rate 5e-6, unscaled: --scale_lr is off by default), in float32
master weights (the script keeps trained models in float32 under mixed precision; here the
UNet is cast to float32, so a bfloat16 model trains and samples in float32). With
`train_text_encoder` (the script's --train_text_encoder) the text encoder's weights train too,
and S*'s row with them (the script's optimizer holds the whole text encoder, the identifier's
embedding included).

State and export: the UNet's weights (and the text encoder's) ride in the result, so checkpoints
resume bit for bit and the job store keeps them; the export is a diffusers model folder
`dreambooth/unet` (and `dreambooth/text_encoder`, its identifier row set to the trained S*),
loaded into a stock pipeline with `StableDiffusionPipeline.from_pretrained(base, unet=
UNet2DConditionModel.from_pretrained(folder / "unet"))`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from tinv.engine.learners import Learner, cpu_state, load_into
from tinv.engine.learners.lora import hold_identifier, identifier_id
from tinv.engine.pseudo_words import PseudoWord

FOLDER = "dreambooth"
INFO = "dreambooth.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"   # what UNet2DConditionModel.save_pretrained writes
EMBEDDING = "embeddings."       # the text encoder's input embedding table: the loop's words own its rows


def _text_params(text_encoder) -> dict[str, torch.nn.Parameter]:
    """The text encoder's weights but its token table (S*'s row trains as the loop's word)."""
    table = text_encoder.get_input_embeddings().weight
    return {n: p for n, p in text_encoder.named_parameters() if p is not table}


class DreamBooth(Learner):
    name = "dreambooth"
    packable = False      # it trains the shared UNet
    leaves_out = ("train_dreambooth.py's single instance prompt (the loop's 27 templates instead), "
                  "gradient clipping (--max_grad_norm 1.0) and mixed precision (float32 throughout)")

    def __init__(self, parts, word: PseudoWord, cfg, gen):
        super().__init__(parts, word, cfg, gen)
        a = self.args
        if cfg.num_vectors != 1:
            raise ValueError(f"dreambooth binds one identifier token: num_vectors must be 1, got {cfg.num_vectors}")
        if a["lr"] <= 0:
            raise ValueError(f"dreambooth: lr > 0 is needed, got {a['lr']}")
        hold_identifier(parts, word, a["identifier"], "dreambooth")
        self.trains_text = bool(a["train_text_encoder"])
        self.trains_word = self.trains_text       # S*'s row is the text encoder's identifier row
        self.vocab_rows = min(word.token_ids)     # the stock vocabulary's size: the export keeps it
        parts.unet.float()
        self.unet = dict(parts.unet.named_parameters())
        self.text = _text_params(parts.text_encoder.float()) if self.trains_text else {}
        for p in [*self.unet.values(), *self.text.values()]:
            p.requires_grad_(True)

    def param_groups(self) -> list[dict]:
        # the script's one rate for the UNet and the text encoder; S*'s row (with train_text_encoder)
        # takes the method's inversion.lr, which conf/method/dreambooth.yaml sets to the same rate
        return [{"params": [*self.unet.values(), *self.text.values()], "lr": float(self.args["lr"])}]

    def state(self) -> dict[str, Any]:
        return {"identifier": self.args["identifier"],
                "class_noun": self.cfg.initializer_word if self.cfg.class_noun else None,
                "vocab_rows": self.vocab_rows, "word": self.word.vectors.detach().to("cpu", copy=True),
                "unet": cpu_state(self.unet), "text_encoder": cpu_state(self.text)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        load_into(self.unet, state["unet"], "dreambooth: the stored unet")
        load_into(self.text, state["text_encoder"], "dreambooth: the stored text_encoder")

    def finish(self, parts) -> None:
        for p in [*self.unet.values(), *self.text.values()]:
            p.requires_grad_(False)


LEARNER = DreamBooth


def restore(parts, learned: Mapping[str, Any], words: Mapping[str, PseudoWord]) -> None:
    """The trained UNet (and text encoder) into fresh parts (S*'s row is among `words` already)."""
    st = learned["state"]
    parts.unet.float()
    load_into(dict(parts.unet.named_parameters()), st["unet"], "dreambooth: the stored unet")
    if st["text_encoder"]:
        load_into(_text_params(parts.text_encoder.float()), st["text_encoder"], "dreambooth: the stored text_encoder")


def trigger(learned: Mapping[str, Any]) -> str:
    st = learned["state"]
    return f"{st['identifier']} {st['class_noun']}" if st.get("class_noun") else st["identifier"]


def export(parts, learned: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """The fine-tuned UNet (and text encoder) as diffusers model folders a stock pipeline takes."""
    import copy

    from tinv.core import atomic
    st = learned["state"]
    out = Path(folder) / FOLDER
    files = {}
    with atomic.replacing_dir(out / "unet") as tmp:
        parts.unet.save_pretrained(tmp, safe_serialization=True)
    files["dreambooth_unet"] = str(out / "unet" / WEIGHTS)
    if st["text_encoder"]:
        # the stock vocabulary, its identifier row set to the trained S*: "sks" then reads as S*
        text = copy.deepcopy(parts.text_encoder)
        text.resize_token_embeddings(st["vocab_rows"])
        with torch.no_grad():
            text.get_input_embeddings().weight[identifier_id(parts, st["identifier"])] = st["word"][0].to(
                text.get_input_embeddings().weight)
        with atomic.replacing_dir(out / "text_encoder") as tmp:
            text.save_pretrained(tmp, safe_serialization=True)
        files["dreambooth_text_encoder"] = str(out / "text_encoder" / "model.safetensors")
    info = out / INFO
    atomic.write_json(info, {"trigger": trigger(learned), "identifier": st["identifier"],
                             "class_noun": st.get("class_noun"),
                             "load": "StableDiffusionPipeline.from_pretrained(base, unet=UNet2DConditionModel"
                                     ".from_pretrained(folder/'unet')[, text_encoder=CLIPTextModel.from_pretrained("
                                     "folder/'text_encoder')])"})
    files["dreambooth_info"] = str(info)
    return files


def usage(files: Mapping[str, Path], placeholder: str) -> list[str]:
    trig = json.loads(Path(files["dreambooth_info"]).read_text())["trigger"]
    text = (f', text_encoder=CLIPTextModel.from_pretrained("{Path(files["dreambooth_text_encoder"]).parent}")'
            if "dreambooth_text_encoder" in files else "")
    return [f'DreamBooth (diffusers): StableDiffusionPipeline.from_pretrained(<base model>, '
            f'unet=UNet2DConditionModel.from_pretrained("{Path(files["dreambooth_unet"]).parent}"){text}), '
            f'then write "{trig}" in prompts']
