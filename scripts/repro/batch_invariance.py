"""Is the toy UNet batch invariant and thread-count invariant? (docs/speed.md, "Exact or one batch")

The same 4 samples (latents, timesteps, prompt) through the text encoder and UNet, with a
learnable offset on the token embeddings as the word: alone, inside a batch of 8 and of 40;
the max |difference| of the UNet output, of the offset's gradient and of the text encoding.
Then each leaf module of the UNet fed its own batch-40 input cut to 4 rows: the modules
whose output differs. With --threads-vs N: the batch of 4 with 1 thread and with N.

    python scripts/repro/batch_invariance.py [--threads-vs 2] [--no-mkldnn]
"""
from __future__ import annotations

import argparse

import torch

from tinv.engine.models import load_parts
from tinv.toyworld import MODEL_DIR

N, B = 4, 40


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads-vs", type=int, default=0, help="also compare 1 thread with this many")
    ap.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False")
    args = ap.parse_args()
    torch.backends.mkldnn.enabled = not args.no_mkldnn
    torch.set_num_threads(1)
    parts = load_parts(str(MODEL_DIR)).freeze()
    torch.manual_seed(0)
    z, t = torch.randn(B, 4, 16, 16), torch.randint(1000, (B,))
    ids = parts.tokenize(["a photo of a star"] * B, expand=False)
    emb = parts.text_encoder.get_input_embeddings()
    offset = torch.zeros(emb.weight.shape[1], requires_grad=True)
    emb.register_forward_hook(lambda m, i, o: o + offset)

    def step(k: int):
        offset.grad = None
        cond = parts.text_encoder(ids[:k])[0]
        out = parts.unet(z[:k], t[:k], encoder_hidden_states=cond).sample
        ((out[:N] - 0.1) ** 2).mean().backward()
        return out[:N].detach(), offset.grad.clone(), cond[:N].detach()

    alone = step(N)
    for k in (8, B):
        other = step(k)
        print(f"batch {N} vs {N} inside {k}: " + ", ".join(
            f"{name} {float((a - b).abs().max()):.2e}" for name, a, b in zip(("UNet output", "gradient", "text"),
                                                                           alone, other)))
    if args.threads_vs:
        torch.set_num_threads(args.threads_vs)
        other = step(N)
        torch.set_num_threads(1)
        print(f"batch {N}, 1 vs {args.threads_vs} threads: " + ", ".join(
            f"{name} {float((a - b).abs().max()):.2e}" for name, a, b in zip(("UNet output", "gradient", "text"),
                                                                           alone, other)))

    seen: dict[str, tuple] = {}
    hooks = [m.register_forward_hook(lambda m, a, kw, o, name=name: seen.__setitem__(name, (a, kw, o)),
                                     with_kwargs=True)
             for name, m in parts.unet.named_modules() if not list(m.children())]
    cond = parts.text_encoder(ids)[0]
    with torch.no_grad():
        parts.unet(z, t, encoder_hidden_states=cond)
    for h in hooks:
        h.remove()
    modules = dict(parts.unet.named_modules())

    def cut(x):
        return x[: x.shape[0] // B * N].contiguous() if torch.is_tensor(x) and x.dim() and x.shape[0] % B == 0 else x

    with torch.no_grad():
        for name, (a, kw, out) in seen.items():
            o = modules[name](*[cut(x) for x in a], **{k: cut(v) for k, v in kw.items()})
            if torch.is_tensor(o) and (d := float((o - cut(out)).abs().max())) > 0:
                print(f"  differs: {type(modules[name]).__name__:8s} {name} {tuple(a[0].shape)} {d:.2e}")


if __name__ == "__main__":
    main()
