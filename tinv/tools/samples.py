"""Draw the README's sample grid: a few prompts and, optionally, one inverted concept.

    python -m tinv.tools.samples --out docs/toyworld_samples.png [--invert red_star]

Each row is one prompt (seeds across); the inversion rows show the concept's training
pictures, then samples of "a photo of a <S*>", of an edit, and of the coarse word alone.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from tinv.core import atomic

from tinv.toyworld import DEFAULT_DIR

PROMPTS = ("a photo of a red star on grass", "a photo of a blue heart in the sky",
           "a sketch of a green triangle at night", "a painting of a yellow circle on water",
           "pixel art of a purple square in front of a brick wall", "a photo of two white crosses on sand")
SCALE = 3  # 32 px pictures are tiny: draw them 3x larger, pixel for pixel


def _row(label: str, images: list[np.ndarray]) -> Image.Image:
    tiles = np.concatenate(images, axis=1)
    pic = Image.fromarray(tiles).resize((tiles.shape[1] * SCALE, tiles.shape[0] * SCALE), Image.NEAREST)
    row = Image.new("RGB", (pic.width + 330, pic.height), "white")
    ImageDraw.Draw(row).text((4, pic.height // 2 - 6), label, fill="black")
    row.paste(pic, (330, 0))
    return row


def _u8(x: torch.Tensor) -> list[np.ndarray]:
    return [(im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for im in x]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("docs/toyworld_samples.png"))
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--invert", default="", help="a built-in object concept to invert and show")
    p.add_argument("--invert-steps", type=int, default=None,
                   help="inversion steps (default: what `python run.py` uses on the toy world)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from tinv.engine import sampling
    from tinv.engine.models import load_parts
    parts = load_parts(DEFAULT_DIR)
    seeds = list(range(args.seeds))
    imgs = sampling.sample(parts, list(PROMPTS), seeds, steps=25)
    rows = [_row(pr, _u8(imgs[i * len(seeds):(i + 1) * len(seeds)])) for i, pr in enumerate(PROMPTS)]
    if args.invert:
        import yaml

        from tinv import PACKAGE_DIR
        from tinv.engine.inversion import invert

        from tinv.tools.gates import default_inversion
        c = yaml.safe_load((PACKAGE_DIR.parent / "conf" / "concept" / f"{args.invert}.yaml").read_text())
        folder = PACKAGE_DIR / c["path"]
        train = [np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.png"))]
        rows.append(_row(f"{args.invert}: training images", train))
        steps = {} if args.invert_steps is None else {"steps": args.invert_steps}
        invert(parts, folder, default_inversion(args.invert, **steps))
        for pr in ("a photo of a <S*>", "a sketch of a <S*> on grass", f"a photo of a {c['initializer']}"):
            rows.append(_row(pr, _u8(sampling.sample(parts, [pr], seeds, steps=25))))
    grid = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        grid.paste(r, (0, y))
        y += r.height
    with atomic.replacing(args.out, suffix=".png") as tmp:
        grid.save(tmp)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
