"""Regenerate every toy-world weight from a seed, on CPU or GPU.

    python -m tinv.tools.pretrain --out runs/toyworld --seed 0 [--ship]

Stages, each resumable from its outputs in --out: render a pool of pictures and captions;
train the oracle; train the autoencoder and check the oracle on its reconstructions; cache
latents; train the evaluator CLIP; train the UNet and the CLIP text encoder jointly (caption
dropout for classifier-free guidance, min-SNR weighting, EMA; offset noise from step 8,000
and compound words from step 17,000, see `Compounds`). With --ship every finished
part (and every periodic export of the pipeline) is copied into tinv/toyworld/weights/.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from tinv.core import atomic

from tinv.toyworld import WEIGHTS_DIR, attributes, captions, evaluator, nets, oracle
from tinv.toyworld.concepts import EXCLUDE
from tinv.toyworld.render import render_array

log = logging.getLogger("tinv.tools.pretrain")
SHIP_DIR = WEIGHTS_DIR   # the shipped weights (tinv/toyworld/weights)
ATTR_NAMES = list(attributes.ALL)
N_CAPTIONS = 4


# ------------------------------------------------------------------ helpers
def _atomic_dir(final: Path, write) -> None:
    """Write a folder through `write(tmp)` then swap it in, so readers never see half of it."""
    with atomic.replacing_dir(final) as tmp:
        write(tmp)


def _to_images(u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 32, 32, 3] -> float [N, 3, 32, 32] in [0, 1]."""
    return u8.permute(0, 3, 1, 2).float() / 255.0


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def render_pool(n: int, seed: int, exclude=EXCLUDE, desc: str = "render") -> dict:
    """n scenes: images uint8 [n, 32, 32, 3], attribute indices [n, A], N_CAPTIONS captions each."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 32, 32, 3), np.uint8)
    idx = np.zeros((n, len(ATTR_NAMES)), np.int64)
    caps = []
    for i in tqdm(range(n), desc=desc, mininterval=5):
        a = attributes.sample(rng, exclude=exclude)
        imgs[i] = render_array(a, int(rng.integers(2 ** 31)))
        idx[i] = [attributes.ALL[k].index(a[k]) for k in ATTR_NAMES]
        caps.append([captions.caption(a, rng) for _ in range(N_CAPTIONS)])
    return {"images": torch.from_numpy(imgs), "attrs": torch.from_numpy(idx), "captions": caps}


def recaption(pool: dict, tokenizer, seed: int, mention_p: dict) -> torch.Tensor:
    """Fresh captions of the pool's scenes with other mention rates (ToyWorld 4's position
    stage): token ids [N, N_CAPTIONS, 77]."""
    rng = np.random.default_rng(seed)
    texts = []
    for row in tqdm(pool["attrs"].tolist(), desc="recaption", mininterval=5):
        scene = {k: attributes.ALL[k][i] for k, i in zip(ATTR_NAMES, row)}
        texts += [captions.caption(scene, rng, mention_p) for _ in range(N_CAPTIONS)]
    ids = tokenizer(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return ids.view(len(pool["attrs"]), N_CAPTIONS, 77).to(torch.int32)


def accuracy(net: nets.OracleNet, images: torch.Tensor, attrs: torch.Tensor) -> dict[str, float]:
    """Per-attribute accuracy of the oracle on float images [N, 3, 32, 32]."""
    logits = oracle.Oracle(net).logits(images)
    return {k: float((logits[k].argmax(-1) == attrs[:, j]).float().mean()) for j, k in enumerate(ATTR_NAMES)}


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Blur and noise, so the oracle also reads autoencoder reconstructions and samples."""
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    w = torch.rand(x.shape[0], 1, 1, 1, generator=g) * (torch.rand(x.shape[0], 1, 1, 1, generator=g) < 0.5)
    x = x * (1 - w) + blur * w
    return (x + torch.randn(x.shape, generator=g) * 0.04 * torch.rand(x.shape[0], 1, 1, 1, generator=g)).clamp(0, 1)


# ------------------------------------------------------------------ stages
def train_oracle(pool, val, steps: int, seed: int, out: Path) -> nets.OracleNet:
    torch.manual_seed(seed)
    net = nets.OracleNet()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    n = len(pool["images"])
    bar = tqdm(range(steps), desc="oracle", mininterval=10)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = 2e-3 * _cosine(step, steps, 100)
        b = torch.randint(n, (64,), generator=g)
        logits = net(_augment(_to_images(pool["images"][b]), g))
        loss = sum(F.cross_entropy(logits[k], pool["attrs"][b, j]) for j, k in enumerate(ATTR_NAMES))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)   # the bar redraws at its own interval
    net.eval()
    acc = accuracy(net, _to_images(val["images"]), val["attrs"])
    log.info("oracle accuracy on %d fresh renders: %s", len(val["images"]), _fmt(acc))

    def write(tmp):
        save_file({k: v.half().contiguous() for k, v in net.state_dict().items()}, tmp / "oracle.safetensors")
        (tmp / "vocab.json").write_text(json.dumps(net.vocab))
        (tmp / "metrics.json").write_text(json.dumps({"val_accuracy": acc, "steps": steps}))
    _atomic_dir(out / "oracle", write)
    return net


def _fmt(d: dict) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in d.items())


def train_autoencoder(pool, val, oracle_net, steps: int, seed: int, out: Path):
    torch.manual_seed(seed + 1)
    vae = nets.autoencoder()
    opt = torch.optim.AdamW(vae.parameters(), 2e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed + 1)
    n = len(pool["images"])
    bar = tqdm(range(steps), desc="autoencoder", mininterval=10)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = 2e-3 * _cosine(step, steps, 100)
        x = _to_images(pool["images"][torch.randint(n, (32,), generator=g)]) * 2 - 1
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=g)).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)   # the bar redraws at its own interval
    vae.eval()
    acc = accuracy(oracle_net, reconstruct(vae, _to_images(val["images"])), val["attrs"])
    log.info("oracle on autoencoder reconstructions: %s", _fmt(acc))
    return vae, acc


def finetune_decoder(vae, pool, steps: int, seed: int):
    """Train the decoder alone on the frozen encoder's latents (as Stable Diffusion's ft-MSE
    decoder was): sharper patterns, and the latent space the UNet learns stays the same."""
    torch.manual_seed(seed + 5)
    vae.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.AdamW(params, 1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed + 5)
    n = len(pool["images"])
    vae.train()
    bar = tqdm(range(steps), desc="decoder", mininterval=10)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = 1e-3 * _cosine(step, steps, 50)
        x = _to_images(pool["images"][torch.randint(n, (32,), generator=g)]) * 2 - 1
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(generator=g)
        rec = vae.decode(z).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)   # the bar redraws at its own interval
    vae.eval().requires_grad_(False)
    return vae


@torch.no_grad()
def reconstruct(vae, images: torch.Tensor) -> torch.Tensor:
    """Autoencoder round trip (posterior mean) of images [N, 3, 32, 32] in [0, 1]."""
    out = [vae.decode(vae.encode(x * 2 - 1).latent_dist.mean).sample for x in images.split(256)]
    return ((torch.cat(out) + 1) / 2).clamp(0, 1)


@torch.no_grad()
def cache_latents(vae, pool) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std [N, 4, 16, 16] of every pool picture."""
    means, stds = [], []
    for x in tqdm(pool["images"].split(512), desc="latents"):
        d = vae.encode(_to_images(x) * 2 - 1).latent_dist
        means.append(d.mean)
        stds.append(d.std)
    return torch.cat(means), torch.cat(stds)


def train_evaluator(pool, steps: int, seed: int, out: Path):
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    torch.manual_seed(seed + 2)
    name = evaluator.register(evaluator.write_config(out / "evaluator_config"))
    model = open_clip.create_model(name)
    tok = open_clip.get_tokenizer(name)
    opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.1)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(seed + 2)
    rng = np.random.default_rng(seed + 2)
    n = len(pool["images"])
    side = evaluator.CONFIG["vision_cfg"]["image_size"]
    attr_prompts, attr_slices = [], {}
    for k, values in attributes.NAMED.items():
        attr_slices[k] = (len(attr_prompts), len(attr_prompts) + len(values))
        attr_prompts += [captions.attribute_prompt(k, v) for v in values]
    attr_tokens = tok(attr_prompts)
    model.train()
    bar = tqdm(range(steps), desc="evaluator", mininterval=10)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = 1e-3 * _cosine(step, steps, 100)
        b = torch.randint(n, (64,), generator=g)
        x = _to_images(pool["images"][b])
        if side != x.shape[-1]:  # as open_clip's preprocess does: bicubic resize to the tower's size
            x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False).clamp(0, 1)
        x = (x - mean) / std
        text = tok([pool["captions"][i][rng.integers(N_CAPTIONS)] for i in b.tolist()])
        img_f, txt_f, scale = model(x, text)[:3]  # normalized features and exp(logit_scale)
        logits = scale * img_f @ txt_f.T
        labels = torch.arange(len(b))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        # Hard negatives (as in NegCLIP): per named attribute, the one-attribute captions of all
        # its values compete for each picture, so that rarely mentioned attributes (position,
        # count, size) are learned too, not only what tells a random batch apart.
        # Shape, the one attribute that needs the whole silhouette, is learned slowest: it
        # gets a weight of its own.
        attr_f = F.normalize(model.encode_text(attr_tokens), dim=-1)
        for j, (k, (lo, hi)) in enumerate(attr_slices.items()):
            w = 1.0 if k == "shape" else 0.25
            loss = loss + w * F.cross_entropy(scale * img_f @ attr_f[lo:hi].T, pool["attrs"][b, ATTR_NAMES.index(k)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)   # the bar redraws at its own interval
    model.eval()

    def write(tmp):
        save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, tmp / f"{evaluator.NAME}.safetensors")
        evaluator.write_config(tmp)
    _atomic_dir(out / "evaluator", write)
    return model


# ------------------------------------------------------------------ joint UNet + text encoder
class Joint:
    """UNet and text encoder trained together, with an EMA copy that is what ships."""

    def __init__(self, tokenizer, seed: int, layout: str = "toyworld3"):
        torch.manual_seed(seed + 3)
        self.layout = layout
        self.unet, self.text = nets.unet(layout), nets.text_encoder(tokenizer)
        self.ema_unet, self.ema_text = nets.unet(layout), nets.text_encoder(tokenizer)
        self.ema_unet.load_state_dict(self.unet.state_dict())
        self.ema_text.load_state_dict(self.text.state_dict())
        self._new_optimizer()
        self.step = 0
        self.fresh_at = 0      # the step of the last fresh AdamW: a stage warms up from it
        self.ema_decay = 0.999

    def _new_optimizer(self) -> None:
        self.params = list(self.unet.parameters()) + list(self.text.parameters())
        self.ema_params = list(self.ema_unet.parameters()) + list(self.ema_text.parameters())
        self.opt = torch.optim.AdamW(self.params, 1e-3, weight_decay=0.01)

    def reshape(self, layout: str) -> dict:
        """ToyWorld 4: move the online and EMA UNets into `layout`, carrying every tensor
        `reshape_unet` can place; a fresh AdamW (its state was for the old tensors)."""
        self.unet, report = reshape_unet(self.unet, layout)
        self.ema_unet, _ = reshape_unet(self.ema_unet, layout)
        self.layout = layout
        self._new_optimizer()
        return report

    def update_ema(self) -> None:
        decay = min(self.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            torch._foreach_lerp_(self.ema_params, self.params, 1 - decay)

    def state(self) -> dict:
        return {k: getattr(self, k).state_dict() for k in ("unet", "text", "ema_unet", "ema_text", "opt")} | {
            "step": self.step, "layout": self.layout, "fresh_at": self.fresh_at}

    def load(self, state: dict) -> None:
        layout = state.get("layout", "toyworld3")   # checkpoints before ToyWorld 4 have no layout
        if layout != self.layout:
            self.layout, self.unet, self.ema_unet = layout, nets.unet(layout), nets.unet(layout)
            self._new_optimizer()
        for k in ("unet", "text", "ema_unet", "ema_text", "opt"):
            getattr(self, k).load_state_dict(state[k])
        self.step = state["step"]
        self.fresh_at = state.get("fresh_at", 0)


# Where each ToyWorld 3 block sits in the SD layout: the old 4x4 level (with the middle block)
# stays at 4x4 and a 2x2 level is added below it; the up blocks shift by one.
_RESHAPE = {"toyworld3->sd": (("up_blocks.2.", "up_blocks.3."), ("up_blocks.1.", "up_blocks.2."),
                              ("up_blocks.0.", "up_blocks.1."))}


def reshape_unet(old, layout: str):
    """A `layout` UNet carrying `old`'s tensors wherever a block of the same shape sits at the
    same resolution (ResNets, down/up samplers, the 4x4 cross-attention, the middle block).

    Blocks with no counterpart start fresh, and every new cross-attention block starts with
    its output projection at zero, so that it adds nothing until it has learned something:
    the reshaped UNet begins near the old function, less the pooled-text path it no longer
    has (ToyWorld 4, docs/toyworld.md). Returns (unet, {"carried": n, "fresh": [names]})."""
    key = f"{nets.layout_of(old.config)}->{layout}"
    new = nets.unet(layout)
    target = new.state_dict()
    carried = {}
    for name, tensor in old.state_dict().items():
        for a, b in _RESHAPE.get(key, ()):
            if name.startswith(a):
                name = b + name[len(a):]
                break
        if name in target and target[name].shape == tensor.shape:
            carried[name] = tensor
    for name in target:
        if name not in carried and ".attentions." in name and ".proj_out." in name:
            carried[name] = torch.zeros_like(target[name])
    new.load_state_dict(carried, strict=False)
    fresh = sorted({".".join(n.split(".")[:4]) for n in target if n not in carried})
    return new, {"carried": len(carried), "of": len(target), "fresh": fresh}


def _encode(text_encoder, ids: torch.Tensor) -> torch.Tensor:
    return text_encoder(ids)[0]


class _Spliced(torch.nn.Module):
    """The token table, except that `mark` in the rows of `use` reads that row's vector."""

    def __init__(self, base: torch.nn.Embedding, mark: int, use: torch.Tensor, vectors: torch.Tensor):
        super().__init__()
        self.base, self.mark, self.use, self.vectors = base, mark, use, vectors

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hit = (ids == self.mark) & self.use[:, None]
        return torch.where(hit[..., None], self.vectors[:, None, :], self.base(ids))


SIDE_SEED = 20_000   # seeds the side directions; fixed, so a fresh run draws the same ones
SIDE_SCALE = 1.0     # S: weaker settings (0.6) showed nothing within 1,800 steps (TOYWORLD-NOTES.md)


@functools.lru_cache(maxsize=4)
def side_directions(dim: int, seed: int = SIDE_SEED) -> dict[tuple[str, str], torch.Tensor]:
    """One fixed unit direction per unnamed attribute value, all orthonormal (QR of a seeded
    Gaussian), so that no two values share a direction; {("accent", "white"): [dim], ...}."""
    keys = [(k, v) for k, values in attributes.UNNAMED.items() for v in values]
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, len(keys), generator=g))
    return {key: q[:, i].contiguous() for i, key in enumerate(keys)}


def _merge(table: torch.Tensor, tokenizer, words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The direction of the sum of `words`' embeddings at their mean length, and that length."""
    parts = torch.stack([table[tokenizer(w, add_special_tokens=False).input_ids].mean(0) for w in words])
    total, length = parts.sum(0), parts.norm(dim=-1).mean()
    return total / total.norm() * length, length


def compound_vector(table: torch.Tensor, tokenizer, scene: dict, side: float = 0.0) -> torch.Tensor:
    """The one input vector [D] that says `scene`'s colour, pattern and shape (and, with
    `side` > 0, its accent and outline): see `Compounds`. `table` is the token table."""
    words = [scene["color"], captions.PATTERN[scene["pattern"]], scene["shape"]]   # as compound_caption's
    vector, length = _merge(table, tokenizer, words)
    if side:
        d = side_directions(table.shape[1])
        vector = vector + side * length * (d["accent", scene["accent"]] + d["outline", scene["outline"]])
    return vector


def style_vector(table: torch.Tensor, tokenizer, scene: dict, side: float = SIDE_SCALE) -> torch.Tensor:
    """The one input vector [D] that says `scene`'s look: its style and background words
    merged, plus its unnamed outline along the same side direction as an object's."""
    vector, length = _merge(table, tokenizer, captions.style_words(scene))
    return vector + side * length * side_directions(table.shape[1])["outline", scene["outline"]]


class Compounds:
    """Compound words: some captions say an object's colour, pattern and shape with ONE input vector.

    A text encoder trained on 20,000 captions has seen only a few dozen points of its input
    space, and the space between them means nothing: textual inversion, started from "star",
    found vectors that lowered the loss a little (stripes) but never reached the object's
    colour, although a vector that draws it exists (matching "a red striped star"'s encoding
    from "a photo of a <x>" finds one). Web-scale text encoders learn that the space between
    words composes. Here a share `p` of the captions puts, in one slot, the direction of the
    sum of the words' embeddings (at their mean length), so the table learns to compose and
    one vector can carry a whole look; the unnamed details still have no word.

    With `side` > 0 (ToyWorld 2, from step 20,000) the compound vector also carries the
    scene's unnamed accent and outline, as `side * L * (d_accent + d_outline)` along fixed
    directions that no vocabulary row holds (`side_directions`), L the words' mean norm. Why:
    with the unnamed details drawn independently of every caption, an ideal denoiser
    averages over them and no input vector can change them, so inversion could never beat a
    caption on them. Now the details are renderable from the input space, as web-scale data
    binds rare names to exact looks, yet no word and no caption names them.

    With `style` > 0 (ToyWorld 3, from step 24,500) that share of the compound captions are
    style compounds instead: "a red star in the style of sks", the compound saying the
    scene's style and background words and its outline (`style_vector`). Why: captions say
    a style only as a prefix ("pixel art of") and a background only as a phrase ("by a brick
    wall"), so no single input vector could carry a look, and "in the style of" meant
    nothing: the paper's style inversion (section 4.3) learned nothing here (issue 19,
    docs/toyworld.md, `python -m tinv.tools.styles --only diagnosis`).
    """

    def __init__(self, tokenizer, attrs: torch.Tensor, p: float, side: float = 0.0, style: float = 0.0):
        self.tokenizer, self.attrs, self.p, self.side, self.style = tokenizer, attrs, p, side, style
        self.mark = tokenizer.convert_tokens_to_ids(captions.COMPOUND_MARK + "</w>")

    def encode(self, text_encoder, cap: torch.Tensor, b: torch.Tensor, allowed: torch.Tensor,
               rng: np.random.Generator) -> torch.Tensor:
        use = allowed & torch.from_numpy(rng.random(len(b)) < self.p)
        if not use.any():
            return _encode(text_encoder, cap)
        table = text_encoder.get_input_embeddings()
        cap, vectors = cap.clone(), torch.zeros(len(b), table.embedding_dim)
        for i in use.nonzero()[:, 0].tolist():
            scene = {k: attributes.ALL[k][int(v)] for k, v in zip(ATTR_NAMES, self.attrs[b[i]])}
            if self.style and rng.random() < self.style:
                text, _ = captions.style_compound_caption(scene, rng)
                vectors[i] = style_vector(table.weight, self.tokenizer, scene, self.side or SIDE_SCALE)
            else:
                text, _ = captions.compound_caption(scene, rng)
                vectors[i] = compound_vector(table.weight, self.tokenizer, scene, self.side)
            cap[i] = self.tokenizer(text, padding="max_length", max_length=cap.shape[1], truncation=True,
                                    return_tensors="pt").input_ids[0]
        text_encoder.set_input_embeddings(_Spliced(table, self.mark, use, vectors))
        try:
            return _encode(text_encoder, cap)
        finally:
            text_encoder.set_input_embeddings(table)


def joint_step(joint: Joint, sched, z, noise, t, cond, min_snr) -> torch.Tensor:
    """One optimizer step of Eq. 2 weighted by min-SNR (the engine's one loss), then the EMA;
    returns the loss."""
    from types import SimpleNamespace

    from tinv.engine import conditioning, objective
    unet = SimpleNamespace(unet=joint.unet, dtype=torch.float32)
    loss = objective.loss(unet, sched, z, t, noise, conditioning.Cond(cond), weight=min_snr[t])
    joint.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(joint.params, 1.0)
    joint.opt.step()
    joint.step += 1
    joint.update_ema()
    return loss


def train_joint(joint: Joint, lat_mean, lat_std, ids, empty_ids, sched, steps: int, batch: int, seed: int,
                on_export, export_every: int, ckpt_path: Path, ckpt_every: int = 200,
                offset_noise: float = 0.0, offset_from: int = 0,
                compounds: "Compounds | None" = None, compound_from: int = 0, warmup_from: int = 0) -> None:
    """The diffusion objective on cached latents, text encoder and UNet trained jointly.

    The learning rate warms up over 200 steps from `warmup_from` (a stage that may start
    with a fresh optimizer warms up again)."""
    g = torch.Generator().manual_seed(seed + 4 + joint.step)  # a resumed run draws fresh batches
    acp = sched.alphas_cumprod
    snr = acp / (1 - acp)
    min_snr = torch.clamp(snr, max=5.0) / snr   # min-SNR-5 weights for the epsilon target
    n = len(lat_mean)
    joint.unet.train()
    joint.text.train()
    bar = tqdm(range(joint.step, steps), desc="unet+text", initial=joint.step, total=steps, mininterval=10)
    for _ in bar:
        for group in joint.opt.param_groups:
            group["lr"] = 1e-3 * min(1.0, (joint.step - warmup_from + 1) / 200)
        b = torch.randint(n, (batch,), generator=g)
        z = (lat_mean[b] + lat_std[b] * torch.randn(lat_mean[b].shape, generator=g)) * sched.scale
        cap = ids[b, torch.randint(ids.shape[1], (batch,), generator=g)]
        drop = torch.rand(batch, generator=g) < 0.1              # caption dropout -> "" for CFG
        cap = torch.where(drop[:, None], empty_ids.expand(batch, -1), cap)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=g)
        noise = torch.randn(z.shape, generator=g)
        if offset_noise and joint.step >= offset_from:
            # Offset noise: a per-channel constant in the noise. On 16x16 latents the mean of
            # pure noise looks like a background colour (its SNR at t=T is about 1), so the
            # model kept whatever background x_T suggested; with the offset it cannot trust it.
            noise = noise + offset_noise * torch.randn((batch, z.shape[1], 1, 1), generator=g)
        if compounds is not None and joint.step >= compound_from:
            cond = compounds.encode(joint.text, cap, b, ~drop, np.random.default_rng([seed, joint.step]))
        else:
            cond = _encode(joint.text, cap)
        loss = joint_step(joint, sched, z, noise, t, cond, min_snr)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)   # the bar redraws at its own interval
        if joint.step % ckpt_every == 0 or joint.step == steps:
            atomic.save_torch(ckpt_path, joint.state())
        if joint.step % export_every == 0 or joint.step == steps:
            on_export(joint)
            joint.unet.train()
            joint.text.train()


@torch.no_grad()
def quick_sample(unet, text, vae, tokenizer, sched, prompts: list[str], guidance: float = 5.0,
                 steps: int = 20, seed: int = 0) -> torch.Tensor:
    """DDIM with classifier-free guidance, for monitoring during training: [N, 3, 32, 32] in [0, 1]."""
    from diffusers import DDIMScheduler
    unet.eval()
    text.eval()
    ddim = DDIMScheduler.from_config(sched.config)
    ddim.set_timesteps(steps)
    tok = lambda p: tokenizer(p, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    cond, unc = _encode(text, tok(prompts)), _encode(text, tok([""] * len(prompts)))
    x = torch.randn((len(prompts), 4, nets.LATENT_SIDE, nets.LATENT_SIDE), generator=torch.Generator().manual_seed(seed))
    for t in ddim.timesteps:
        e_unc, e_cond = unet(torch.cat([x, x]), t, torch.cat([unc, cond])).sample.chunk(2)
        x = ddim.step(e_unc + guidance * (e_cond - e_unc), t, x).prev_sample
    return ((vae.decode(x / vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)


def text_following(oracle_net, unet, text, vae, tokenizer, sched, n: int = 48, guidance: float = 5.0) -> dict:
    """Oracle accuracy of shape, colour, background and style on samples of fixed prompts."""
    pairs = captions.generation_prompts(n)
    imgs = quick_sample(unet, text, vae, tokenizer, sched, [p for p, _ in pairs], guidance)
    pred = oracle.Oracle(oracle_net).predict(imgs)
    return {k: float(np.mean([pred[k][i] == a[k] for i, (_, a) in enumerate(pairs)]))
            for k in ("shape", "color", "background", "style")}


def save_pipeline(folder: Path, vae, text, unet, tokenizer, sched) -> None:
    """A standard StableDiffusionPipeline folder, weights stored in fp16, loading as fp32."""
    import copy

    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline(vae=copy.deepcopy(vae).half(), text_encoder=copy.deepcopy(text).half(),
                                   tokenizer=tokenizer, unet=copy.deepcopy(unet).half(), scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    cfg_file = folder / "text_encoder" / "config.json"   # fp16 only on disk: load as float32 by default
    cfg = json.loads(cfg_file.read_text())
    for key in ("torch_dtype", "dtype"):
        if key in cfg:
            cfg[key] = "float32"
    cfg_file.write_text(json.dumps(cfg, indent=2))


def seed_from_shipped(out: Path, pool, tokenizer, seed: int, pipeline: str = "pipeline") -> None:
    """Fill an empty work folder with the shipped weights, so the later stages continue them.

    The shipped folder holds EMA weights only (no optimizer state, no online weights): the
    joint stage restarts from the EMA pair with a fresh AdamW, as the ToyWorld 2 stage was
    first added to the step-20,000 weights. `pipeline` names the shipped folder the UNet and
    text encoder come from ("pipeline_sd": continue ToyWorld 4 from its shipped step); the
    VAE is always ToyWorld 3's (both pipelines ship the same one)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel
    pipe = SHIP_DIR / "pipeline"
    for name in ("oracle", "evaluator"):
        if not (out / name).exists():
            shutil.copytree(SHIP_DIR / name, out / name)
    if not (out / "vae" / "config.json").exists():
        vae = AutoencoderKL.from_pretrained(pipe / "vae", torch_dtype=torch.float32).eval()
        lat_mean, lat_std = cache_latents(vae, pool)
        torch.save({"mean": lat_mean, "std": lat_std}, out / "latents.pt")
        marker = json.dumps({"from_shipped": str(pipe / "vae")})
        _atomic_dir(out / "vae", lambda tmp: (vae.save_pretrained(tmp), (tmp / "oracle_check.json").write_text(marker),
                                              (tmp / "decoder_finetune.json").write_text(marker)))
    pipe = SHIP_DIR / pipeline
    unet = UNet2DConditionModel.from_pretrained(pipe / "unet", torch_dtype=torch.float32)
    joint = Joint(tokenizer, seed, nets.layout_of(unet.config))
    unet = unet.state_dict()
    text = CLIPTextModel.from_pretrained(pipe / "text_encoder", torch_dtype=torch.float32).state_dict()
    for net, state in ((joint.unet, unet), (joint.ema_unet, unet), (joint.text, text), (joint.ema_text, text)):
        net.load_state_dict(state)
    joint.step = joint.fresh_at = json.loads((pipe / "training.json").read_text())["step"]
    torch.save(joint.state(), out / "joint.pt")
    log.info("seeded %s from the shipped weights at UNet step %d", out, joint.step)


# ------------------------------------------------------------------ main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="work folder (resumable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ship", action="store_true", help="copy finished weights into tinv/toyworld/weights/")
    p.add_argument("--pool", type=int, default=20000, help="pretraining pictures rendered once")
    p.add_argument("--oracle-steps", type=int, default=3000)
    p.add_argument("--ae-steps", type=int, default=3000)
    p.add_argument("--decoder-steps", type=int, default=1500, help="decoder-only fine-tuning after the autoencoder")
    p.add_argument("--evaluator-steps", type=int, default=4000)
    p.add_argument("--unet-steps", type=int, default=42500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--offset-noise", type=float, default=0.1, help="offset-noise strength (0: plain noise)")
    p.add_argument("--offset-from", type=int, default=8000,
                   help="first UNet step with offset noise (the shipped weights added it at 8000, when "
                        "samples showed backgrounds following x_T rather than the caption)")
    p.add_argument("--compound-p", type=float, default=0.25,
                   help="share of captions whose colour, pattern and shape are one compound input vector")
    p.add_argument("--compound-from", type=int, default=17000,
                   help="first UNet step with compound words (the shipped weights added them at 17,000, "
                        "when textual inversion could not move off its initializer word)")
    p.add_argument("--identity-from", type=int, default=20000,
                   help="ToyWorld 2: first UNet step whose compound words also carry the unnamed accent and "
                        "outline along side directions (see Compounds)")
    p.add_argument("--identity-p", type=float, default=0.5, help="share of compound captions from --identity-from")
    p.add_argument("--identity-scale", type=float, default=SIDE_SCALE,
                   help="side-direction scale S, relative to the words' mean norm")
    p.add_argument("--identity-ema", type=float, default=0.995,
                   help="EMA decay from --identity-from (0.999 lags a 3,000-step stage by about 1,000 steps)")
    p.add_argument("--style-from", type=int, default=24500,
                   help="ToyWorld 3: first UNet step where a share of the compound captions are style compounds "
                        "(\"a red star in the style of sks\": style, background and outline in one vector)")
    p.add_argument("--style-share", type=float, default=0.5, help="share of compound captions that are style "
                   "compounds from --style-from")
    p.add_argument("--reshape-from", type=int, default=30500,
                   help="ToyWorld 4: the UNet step where the UNet is reshaped into Stable Diffusion's layout "
                        "(nets.LAYOUTS['sd'], reshape_unet) and training goes on with the style stage's captions")
    p.add_argument("--position-from", type=int, default=32800,
                   help="ToyWorld 4: from this step the pool is recaptioned with position mentioned at "
                        "--position-p (captions.MENTION_P says 0.3): the SD layout can place objects, the "
                        "ToyWorld 3 model never followed position (chance)")
    p.add_argument("--position-p", type=float, default=0.7)
    p.add_argument("--from-shipped", nargs="?", const="pipeline", default=None, choices=["pipeline", "pipeline_sd"],
                   help="seed an empty --out with the shipped weights (oracle, evaluator, VAE, and the pipeline's "
                        "UNet and text encoder at their step, fresh optimizer warmed up again) and continue from "
                        "there: how the ToyWorld 2 stage was added to the step-20,000 weights; "
                        "'--from-shipped pipeline_sd' continues ToyWorld 4 from its shipped step")
    p.add_argument("--export-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; on a CPU shared with other jobs 1 is several times faster than 2 "
                        "(OpenMP threads spin-wait for each other); 0 keeps torch's default")
    p.add_argument("--redo", default="", help="comma-separated stages to retrain although their outputs "
                   "exist: oracle, evaluator (the pipeline stages resume instead)")
    p.add_argument("--stop-after", default="", choices=["", "oracle", "autoencoder", "evaluator"],
                   help="stop after this stage (e.g. to retrain the oracle alone)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    times = json.loads((out / "times.json").read_text()) if (out / "times.json").exists() else {}

    def timed(stage, fn):
        t0 = time.time()
        result = fn()
        times[stage] = times.get(stage, 0) + time.time() - t0
        (out / "times.json").write_text(json.dumps(times, indent=2))
        log.info("stage %s took %.0f s", stage, time.time() - t0)
        return result

    def ship(name):
        if args.ship:
            _atomic_dir(SHIP_DIR / name, lambda tmp: [shutil.copy(f, tmp / f.name) for f in (out / name).iterdir()]
                        if (out / name).is_dir() else None)

    from diffusers import AutoencoderKL

    from tinv.engine.models import tiny_clip_tokenizer
    tokenizer = tiny_clip_tokenizer()

    # 1. data
    pool_file = out / "pool.pt"
    if pool_file.exists():
        pool = torch.load(pool_file, weights_only=False)
    else:
        pool = timed("render", lambda: render_pool(args.pool, args.seed))
        ids = tokenizer([c for caps in pool["captions"] for c in caps], padding="max_length", max_length=77,
                        truncation=True, return_tensors="pt").input_ids
        pool["ids"] = ids.view(args.pool, N_CAPTIONS, 77).to(torch.int32)
        torch.save(pool, pool_file)
    val = render_pool(1000, args.seed + 10_000, desc="render validation")
    if args.from_shipped and not (out / "joint.pt").exists():
        timed("from-shipped", lambda: seed_from_shipped(out, pool, tokenizer, args.seed, args.from_shipped))

    redo = set(filter(None, args.redo.split(",")))
    # 2. oracle
    if (out / "oracle" / "oracle.safetensors").exists() and "oracle" not in redo:
        oracle_net = oracle.load_oracle(folder=out / "oracle").net
    else:
        oracle_net = timed("oracle", lambda: train_oracle(pool, val, args.oracle_steps, args.seed, out))
    ship("oracle")
    if args.stop_after == "oracle":
        return

    # 3. autoencoder, checked by the oracle before anything is trained on its latents
    if (out / "vae" / "config.json").exists():
        vae = AutoencoderKL.from_pretrained(out / "vae")
    else:
        vae, acc = timed("autoencoder", lambda: train_autoencoder(pool, val, oracle_net, args.ae_steps, args.seed, out))
        bad = {k: v for k, v in acc.items() if k in attributes.NAMED and v < 0.95}
        if bad:
            log.warning("autoencoder loses named attributes (oracle < 0.95): %s", _fmt(bad))
        lat_mean, lat_std = cache_latents(vae, pool)
        vae.register_to_config(scaling_factor=float(1 / lat_mean.std()))
        torch.save({"mean": lat_mean, "std": lat_std}, out / "latents.pt")   # before vae/: resume keys on it
        _atomic_dir(out / "vae", lambda tmp: (vae.save_pretrained(tmp),
                                              (tmp / "oracle_check.json").write_text(json.dumps(acc, indent=2))))
    vae.eval().requires_grad_(False)
    if args.decoder_steps and not (out / "vae" / "decoder_finetune.json").exists():
        timed("decoder", lambda: finetune_decoder(vae, pool, args.decoder_steps, args.seed))
        acc = accuracy(oracle_net, reconstruct(vae, _to_images(val["images"])), val["attrs"])
        log.info("oracle on reconstructions after decoder fine-tuning: %s", _fmt(acc))
        check = (out / "vae" / "oracle_check.json").read_text()
        _atomic_dir(out / "vae", lambda tmp: (vae.save_pretrained(tmp), (tmp / "oracle_check.json").write_text(check),
                                              (tmp / "decoder_finetune.json").write_text(
                                                  json.dumps({"steps": args.decoder_steps, "oracle": acc}))))
    lat = torch.load(out / "latents.pt")
    if args.stop_after == "autoencoder":
        return

    # 4. evaluator
    if not (out / "evaluator" / f"{evaluator.NAME}.safetensors").exists() or "evaluator" in redo:
        timed("evaluator", lambda: train_evaluator(pool, args.evaluator_steps, args.seed, out))
    ship("evaluator")
    if args.stop_after == "evaluator":
        return

    # 5. UNet + text encoder
    sched = nets.scheduler()
    sched.scale = vae.config.scaling_factor
    joint = Joint(tokenizer, args.seed)
    ckpt = out / "joint.pt"
    if ckpt.exists():
        joint.load(torch.load(ckpt, weights_only=False))
        log.info("resumed joint training at step %d", joint.step)
    empty = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids

    def export(j: Joint):
        t0 = time.time()
        acc = text_following(oracle_net, j.ema_unet, j.ema_text, vae, tokenizer, sched)
        log.info("step %d text following (EMA, 48 prompts, guidance 5, DDIM 20): %s", j.step, _fmt(acc))
        _atomic_dir(out / "pipeline", lambda tmp: save_pipeline(tmp, vae, j.ema_text, j.ema_unet, tokenizer, sched))
        identity = {"from": args.identity_from, "p": args.identity_p, "scale": args.identity_scale,
                    "ema": args.identity_ema, "side_seed": SIDE_SEED,
                    "style_from": args.style_from, "style_share": args.style_share,
                    "reshape_from": args.reshape_from, "layout": j.layout,
                    "position_from": args.position_from, "position_p": args.position_p}
        (out / "pipeline" / "training.json").write_text(json.dumps({"step": j.step, "text_following": acc,
                                                                     "seed": args.seed, "identity": identity,
                                                                     "times": times}, indent=2))
        if args.ship:
            shipped = "pipeline_sd" if j.layout == "sd" else "pipeline"   # ToyWorld 4 ships beside ToyWorld 3
            _atomic_dir(SHIP_DIR / shipped, lambda tmp: shutil.copytree(out / "pipeline", tmp, dirs_exist_ok=True))
        times["exports"] = times.get("exports", 0) + time.time() - t0

    common = dict(offset_noise=args.offset_noise, offset_from=args.offset_from)
    first = min(args.unet_steps, args.identity_from)
    if joint.step < first:
        timed("unet+text", lambda: train_joint(joint, lat["mean"], lat["std"], pool["ids"].long(), empty, sched,
                                                first, args.batch, args.seed, export, args.export_every, ckpt,
                                                compounds=Compounds(tokenizer, pool["attrs"], args.compound_p)
                                                if args.compound_p else None,
                                                compound_from=args.compound_from, **common))
    stages = (("unet+text identity", args.identity_from, min(args.unet_steps, args.style_from), 0.0),
              ("unet+text style", args.style_from, min(args.unet_steps, args.reshape_from), args.style_share),
              ("unet+text sd layout", args.reshape_from, min(args.unet_steps, args.position_from), args.style_share),
              ("unet+text sd layout, position", args.position_from, args.unet_steps, args.style_share))
    for stage, start, end, style in stages:
        if joint.step >= end:
            continue
        ids = pool["ids"].long()
        if start == args.position_from:
            ids = recaption(pool, tokenizer, args.seed + 7, {"position": args.position_p}).long()
        if start == args.reshape_from and joint.layout != "sd":
            # ToyWorld 4: cross-attention at three scales, no pooled text (docs/toyworld.md)
            report = joint.reshape("sd")
            log.info("reshaped the UNet into the SD layout: %d of %d tensors carried; fresh: %s",
                     report["carried"], report["of"], ", ".join(report["fresh"]))
            atomic.save_torch(ckpt, joint.state())
        # ToyWorld 2: the unnamed details become renderable; ToyWorld 3: so do styles
        joint.ema_decay = args.identity_ema
        timed(stage, lambda: train_joint(
            joint, lat["mean"], lat["std"], ids, empty, sched, end, args.batch,
            args.seed, export, args.export_every, ckpt,
            compounds=Compounds(tokenizer, pool["attrs"], args.identity_p, side=args.identity_scale, style=style),
            # each stage warms up (it may start a fresh AdamW), as does a run seeded mid-stage
            compound_from=start, warmup_from=max(start, joint.fresh_at),
            **common))
    log.info("done; stage times (s): %s", json.dumps(times))


if __name__ == "__main__":
    main()
