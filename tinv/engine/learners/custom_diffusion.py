"""Custom Diffusion (Kumari et al. 2023, "Multi-Concept Customization of Text-to-Image
Diffusion", arXiv 2212.04488): a modifier word S* and the key and value projections of every
cross-attention layer, trained together (section 3.1: "we only update W^k and W^v").

    W^k, W^v: text features -> keys / values; only they see the text, so only they need to
    change for the model to read the new word (and to draw the concept under it).

The trained K/V live in diffusers' own Custom Diffusion processors (train_kv=True,
train_q_out=False, each starting from its layer's to_k / to_v, as diffusers'
examples/custom_diffusion/train_custom_diffusion.py builds them); the layer's own to_k / to_v
stay frozen and unused. Self-attention layers get the parameterless processor, again as
there, so the UNet's processors are all of one family and `unet.save_attn_procs` /
`load_attn_procs` round-trip them. A conditioning.Route wraps them like any other processor.

S* starts from a rare token (the authors' `--initializer_token ktn`), not from the class
noun: the prompts carry the class noun beside it ("photo of a S* cat", InversionConfig
.class_noun). "ktn" is a vocabulary entry (CLIP id 42170, a word-internal piece), which the
authors' scripts take by its entry (`tokenizer.encode([token])` on a list reads the token;
their LDM code hard-codes row 42170): typed as text, CLIP splits it into "k" + "tn".

State and export: {"<processor key>.to_k_custom_diffusion.weight": [hidden, text_dim], ...
to_v ...}, exactly the keys of `unet.save_attn_procs`; exported as diffusers'
`pytorch_custom_diffusion_weights.bin` beside the word's learned_embeds.safetensors (`export`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from tinv.engine import learners
from tinv.engine.learners import Learner
from tinv.engine.pseudo_words import PseudoWord, PseudoWordError

FILE = "pytorch_custom_diffusion_weights.bin"   # diffusers' CUSTOM_DIFFUSION_WEIGHT_NAME (see export)
KV = ("to_k_custom_diffusion.weight", "to_v_custom_diffusion.weight")


def _processor_class():
    import torch.nn.functional as F
    from diffusers.models.attention_processor import (CustomDiffusionAttnProcessor,
                                                      CustomDiffusionAttnProcessor2_0)
    # the training script's choice: the fused attention where torch has it
    return CustomDiffusionAttnProcessor2_0 if hasattr(F, "scaled_dot_product_attention") else CustomDiffusionAttnProcessor


def _attention(unet, processor_key: str):
    return unet.get_submodule(processor_key.rsplit(".processor", 1)[0])


def install(unet, kv: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.nn.Module]:
    """Put Custom Diffusion processors on every attention layer of `unet`; each cross-attention
    one's K/V from `kv` (state keys) or, to start training, copied from its layer's to_k/to_v.
    Returns the cross-attention processors by key (their K/V are the trained parameters)."""
    cls = _processor_class()
    names = list(unet.attn_processors)
    cross = [n for n in names if n.endswith("attn2.processor")]
    if kv is not None:
        want = {f"{n}.{w}" for n in cross for w in KV}
        if set(kv) != want:
            raise ValueError(f"Custom Diffusion weights for {sorted(kv)[:2]}... ({len(kv)} tensors) do not fit "
                             f"this UNet's cross-attention layers ({len(want)} tensors named like {sorted(want)[:1]})")
    procs: dict[str, Any] = {}
    for name in names:
        if name not in cross:
            procs[name] = cls(train_kv=False, train_q_out=False)
            continue
        attn = _attention(unet, name)
        if attn.to_k.bias is not None or attn.to_v.bias is not None:
            raise ValueError(f"{name}: Custom Diffusion's K/V have no bias, this layer's to_k/to_v do")
        proc = cls(train_kv=True, train_q_out=False, hidden_size=attn.to_k.out_features,
                   cross_attention_dim=attn.to_k.in_features)
        # float32 master weights whatever the UNet's dtype: the processor casts around them
        start = {w: (kv[f"{name}.{w}"] if kv is not None else getattr(attn, w.split("_custom")[0]).weight)
                 for w in KV}
        proc.load_state_dict({w: t.detach().float() for w, t in start.items()})
        procs[name] = proc.to(attn.to_k.weight.device)
    unet.set_attn_processor(dict(procs))     # it pops from the dict it is given
    return {n: procs[n] for n in cross}


def kv_state(procs: Mapping[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return learners.cpu_state({f"{n}.{w}": getattr(p, w.split(".")[0]).weight for n, p in procs.items() for w in KV})


def rare_token_row(parts, token: str) -> torch.Tensor:
    """The embedding row of a vocabulary ENTRY (not a typed word), as the authors take it."""
    vocab = parts.tokenizer.get_vocab()
    if token not in vocab:
        raise PseudoWordError(f"learner_args.init_token={token!r} is not an entry of this tokenizer's "
                              f"vocabulary; name one that is (or '' to start S* from the initializer word)")
    return parts.input_embeddings().weight[vocab[token]].detach().clone()


class CustomDiffusion(Learner):
    name = "custom_diffusion"
    packable = False      # it trains the shared UNet's K/V: one set at a time
    leaves_out = ("the authors' retrieved real regularization images (the model's own samples of the class "
                  "instead, their script without --real_prior; a folder by inversion.class_images), their single "
                  "instance prompt (the loop's templates instead) and gradient clipping (--max_grad_norm 1.0)")

    def __init__(self, parts, word: PseudoWord, cfg, gen):
        super().__init__(parts, word, cfg, gen)
        token = self.args["init_token"]
        if token:     # S* starts at the rare token, its row and its init (embedding_dist_init)
            row = rare_token_row(parts, token)
            table = parts.input_embeddings().weight
            with torch.no_grad():
                table[word.token_ids] = row.to(table)
            word.init = row.expand(word.num_vectors, -1).clone()
        self.procs = install(parts.unet)

    def augment(self, parts, images, idx, flip, latents, prompts):
        """The authors' augmentation (train_custom_diffusion.py's CustomDiffusionDataset, on unless
        --noaug): each image rescaled to a random size, w.p. 0.66 in [S/3, S] and pasted at a random
        place on a gray canvas (0 in [-1, 1]), the loss masked to where it lies (one latent pixel in
        from its edges), else in [1.2 S, 1.4 S) and randomly cropped (the whole image counts); the
        prompt says "a far away "/"very small " below 0.6 S, "zoomed in "/"close up " above S. The
        latents are encoded again from the new pixels (the script encodes every batch)."""
        if not self.args["augment"]:
            return latents, prompts, None
        import torch.nn.functional as F

        from tinv.engine.data import ConceptImages, cache_latents
        g, size = self.gen, parts.resolution
        f = size // latents.shape[-1]
        pix = images.pixels[idx]
        pix = torch.where(flip[:, None, None, None], pix.flip(-1), pix)
        canvases, masks, out = [], [], []
        for i, prompt in enumerate(prompts):
            r = lambda lo, hi: int(torch.randint(lo, hi, (), generator=g))   # noqa: E731  (numpy's randint(lo, hi))
            scale = r(size // 3, size + 1) if torch.rand((), generator=g).item() < 0.66 else r(int(1.2 * size), int(1.4 * size))
            outer, inner = (scale, size) if scale > size else (size, scale)
            top, left = r(0, outer - inner + 1), r(0, outer - inner + 1)
            img = F.interpolate(pix[i:i + 1], size=(scale, scale), mode="bilinear", antialias=True, align_corners=False)
            mask = torch.zeros(1, size // f, size // f)
            if scale > size:
                canvas = img[0, :, top:top + size, left:left + size]
                mask[:] = 1
            else:
                canvas = torch.zeros(3, size, size)
                canvas[:, top:top + scale, left:left + scale] = img[0]
                mask[:, top // f + 1:(top + scale) // f - 1, left // f + 1:(left + scale) // f - 1] = 1
            if scale < 0.6 * size:
                prompt = ("a far away ", "very small ")[r(0, 2)] + prompt
            elif scale > size:
                prompt = ("zoomed in ", "close up ")[r(0, 2)] + prompt
            canvases.append(canvas)
            masks.append(mask)
            out.append(prompt)
        cache = cache_latents(parts, ConceptImages(pixels=torch.stack(canvases), paths=[]))
        n = len(prompts)
        z = cache.draw(torch.arange(n), torch.zeros(n, dtype=torch.bool), g).to(latents)
        return z, out, torch.stack(masks).to(latents.device)

    def param_groups(self) -> list[dict]:
        # one rate for the word and the K/V, as the authors' single optimizer group
        return [{"params": [p for proc in self.procs.values() for p in proc.parameters()]}]

    def state(self) -> dict[str, Any]:
        return kv_state(self.procs)

    def load_state(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for n, p in self.procs.items():
                for w in KV:
                    getattr(p, w.split(".")[0]).weight.copy_(state[f"{n}.{w}"])

    def finish(self, parts) -> None:
        for proc in self.procs.values():
            proc.requires_grad_(False)


LEARNER = CustomDiffusion


def restore(parts, learned: Mapping[str, Any], words: Mapping[str, PseudoWord]) -> None:
    for proc in install(parts.unet, learned["state"]).values():
        proc.requires_grad_(False)


def export(parts, learned: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """diffusers' `pytorch_custom_diffusion_weights.bin`, as `unet.save_attn_procs(folder,
    safe_serialization=False)` writes it: every attention processor's key, the cross-attention
    ones with their K/V, the self-attention ones with {}. A user loads it with
    `pipe.unet.load_attn_procs(folder, weight_name=FILE, _pipeline=pipe)` and S* with
    `pipe.load_textual_inversion(folder)`, then prompts "a photo of <s*> <class noun>".

    Not the safetensors variant: it cannot hold the {} entries, and diffusers 0.42's
    load_attn_procs then refuses the file (7 processors for 14 layers on the tiny UNet).
    And `_pipeline` is needed: without it diffusers 0.42 reads the file and installs nothing."""
    from tinv.core import atomic
    st = learned["state"]
    flat: dict[str, Any] = {}        # save_attn_procs' layout: "<processor key>.<weight>", {} for the rest
    for n in parts.unet.attn_processors:
        if n.endswith("attn2.processor"):
            flat.update({f"{n}.{w}": st[f"{n}.{w}"].contiguous() for w in KV})
        else:
            flat[n] = {}
    path = Path(folder) / FILE
    atomic.save_torch(path, flat)
    return {"custom_diffusion": str(path)}


def usage(files: Mapping[str, Path], placeholder: str) -> list[str]:
    folder = Path(files["custom_diffusion"]).parent
    return [f'Custom Diffusion (diffusers): pipe.unet.load_attn_procs("{folder}", weight_name="{FILE}", '
            f'_pipeline=pipe) and pipe.load_textual_inversion("{folder / "learned_embeds.safetensors"}"), then '
            f'write "{placeholder.lower()} <class noun>" in prompts']
