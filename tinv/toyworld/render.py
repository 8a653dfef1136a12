"""Deterministic renderer of toy-world scenes: 32x32 RGB pictures from attributes and a seed.

Everything is drawn at twice the final size and box-filtered down, so edges are
anti-aliased. Objects are large (13 or 21 px across in a 32 px picture) so that shape and
pattern survive the autoencoder and stay learnable by a small diffusion model.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .attributes import validate

SIZE = 32           # final picture side (px)
SS = 2              # supersampling factor
G = SIZE * SS       # drawing grid side

COLORS = {"red": (0.86, 0.10, 0.10), "orange": (1.0, 0.55, 0.05), "yellow": (0.98, 0.88, 0.10),
          "green": (0.15, 0.78, 0.20), "blue": (0.10, 0.25, 0.92), "purple": (0.58, 0.15, 0.78),
          "pink": (1.0, 0.52, 0.76), "white": (0.97, 0.97, 0.97)}
ACCENTS = {"white": (0.98, 0.98, 0.98), "black": (0.05, 0.05, 0.05), "cyan": (0.10, 0.88, 0.92)}
OUTLINES = {"black": (0.02, 0.02, 0.02), "white": (1.0, 1.0, 1.0)}
DIAMETER = {"small": 13, "large": 21}          # object side in final px
OUTLINE_PX = 2                                 # outline thickness in final px
X_CENTER = {"small": {"left": 8, "center": 16, "right": 24},
            "large": {"left": 11, "center": 16, "right": 21}}


def _polygon(shape: str) -> list[tuple[float, float]] | None:
    """Outline of `shape` in unit coordinates ([-1, 1], y down); None for the circle."""
    if shape == "square":
        return [(-.85, -.85), (.85, -.85), (.85, .85), (-.85, .85)]
    if shape == "triangle":
        return [(0, -1), (1, .85), (-1, .85)]
    if shape == "diamond":
        return [(0, -1), (.8, 0), (0, 1), (-.8, 0)]
    if shape == "star":
        ang = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return list(zip(r * np.cos(ang), -r * np.sin(ang) + 0.08))
    if shape == "cross":
        a, b = .34, 1.0
        return [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a),
                (-b, a), (-b, -a), (-a, -a)]
    if shape == "arrow":
        return [(0, -1), (.95, 0), (.38, 0), (.38, 1), (-.38, 1), (-.38, 0), (-.95, 0)]
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return list(zip(x / 17, -y / 15 - 0.12))
    if shape == "circle":
        return None
    raise ValueError(f"unknown shape {shape!r}")


@lru_cache(maxsize=None)
def shape_mask(shape: str, side: int) -> np.ndarray:
    """Anti-aliased coverage [side, side] in [0, 1] of `shape` filling a side x side box."""
    k = 4  # draw 4x larger, then box-filter: smooth edges at any size
    img = Image.new("L", (side * k, side * k), 0)
    d = ImageDraw.Draw(img)
    half = side * k / 2
    poly = _polygon(shape)
    if poly is None:
        d.ellipse([0, 0, side * k - 1, side * k - 1], fill=255)
    else:
        d.polygon([(half + x * half, half + y * half) for x, y in poly], fill=255)
    return np.asarray(img.resize((side, side), Image.BOX), dtype=np.float32) / 255.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled bilinearly."""
    h, w = shape
    coarse = rng.uniform(-1, 1, (h // cell + 2, w // cell + 2)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((w + 2 * cell, h + 2 * cell), Image.BILINEAR)
    return np.asarray(img)[cell:cell + h, cell:cell + w]


def _background(name: str, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:G, 0:G].astype(np.float32) / G
    img = np.zeros((G, G, 3), np.float32)
    if name == "grass":
        blades = np.repeat(rng.uniform(-1, 1, (G // 6 + 1, G)), 6, axis=0)[:G]  # vertical streaks
        img[:] = (0.20, 0.52, 0.14)
        img += (0.07 * blades + 0.05 * _smooth_noise(rng, (G, G), 8) - 0.06 * yy)[..., None]
    elif name == "sky":
        img[:] = np.stack([0.35 + 0.35 * yy, 0.60 + 0.25 * yy, 0.95 + 0.05 * yy], -1)
        for _ in range(rng.integers(1, 3)):  # a cloud or two
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0.1, 0.9), rng.uniform(0.12, 0.2)
            cloud = np.clip(1.2 - (((xx - cx) / r) ** 2 + ((yy - cy) / (0.5 * r)) ** 2), 0, 1)
            img = img * (1 - cloud[..., None]) + cloud[..., None] * 0.97
    elif name == "water":
        phase = rng.uniform(0, 2 * np.pi)
        waves = np.sin(yy * 40 + 2.5 * np.sin(xx * 9 + phase))
        img[:] = (0.05, 0.36, 0.56)
        img += (0.09 * (waves > 0.6) + 0.03 * yy)[..., None]
    elif name == "night":
        img[:] = (0.08, 0.10, 0.28)
        for _ in range(10):  # stars
            y, x = rng.integers(0, G, 2)
            img[y, x] = (0.9, 0.9, 0.8)
        cx, cy = (0.15 if rng.random() < .5 else 0.85), 0.16   # the moon, a crescent in a top corner
        moon = ((xx - cx) ** 2 + (yy - cy) ** 2 < 0.11 ** 2) & ((xx - cx - .05) ** 2 + (yy - cy + .03) ** 2 > 0.09 ** 2)
        img[moon] = (0.98, 0.93, 0.65)
    elif name == "brick":
        img[:] = (0.80, 0.77, 0.70)   # mortar
        row_h, brick_w = 10, 20
        for r in range(G // row_h + 1):
            off = (r % 2) * brick_w // 2
            for c in range(-1, G // brick_w + 1):
                x0, y0 = c * brick_w + off, r * row_h
                tint = rng.uniform(-0.06, 0.06)
                img[y0 + 1:y0 + row_h - 1, max(x0 + 1, 0):max(x0 + brick_w - 1, 0)] = (0.66 + tint, 0.25 + tint / 2, 0.15)
    elif name == "sand":
        img[:] = (0.87, 0.77, 0.55)
        img += (0.05 * rng.uniform(-1, 1, (G, G)) + 0.04 * _smooth_noise(rng, (G, G), 16))[..., None]
    elif name == "gray":
        img[:] = 0.55
        img += (-0.12 * ((xx - .5) ** 2 + (yy - .5) ** 2))[..., None]
    else:
        raise ValueError(f"unknown background {name!r}")
    return img


def _pattern(name: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """Where the accent colour goes inside a side x side object box (bool), grid px."""
    yy, xx = np.mgrid[0:side, 0:side]
    ox, oy = rng.integers(0, 12, 2)  # the pattern's phase: another nuisance
    if name == "solid":
        return np.zeros((side, side), bool)
    if name == "striped":
        return ((xx + yy + ox) % 12) < 6
    if name == "dotted":
        return ((xx + ox) % 12 - 5.5) ** 2 + ((yy + oy) % 12 - 5.5) ** 2 < 3.2 ** 2
    if name == "checkered":
        return (((xx + ox) // 6) + ((yy + oy) // 6)) % 2 == 0
    raise ValueError(f"unknown pattern {name!r}")


def _place(canvas_alpha: np.ndarray, patch: np.ndarray, cx: float, cy: float) -> None:
    """Max-composite `patch` (square, grid px) centred at (cx, cy) grid px into `canvas_alpha`."""
    s = patch.shape[0]
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    xs, ys = slice(max(x0, 0), min(x0 + s, G)), slice(max(y0, 0), min(y0 + s, G))
    sub = patch[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    canvas_alpha[ys, xs] = np.maximum(canvas_alpha[ys, xs], sub)


def _object_centres(a: dict, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Object centres in final px: horizontal from `position`, small vertical jitter."""
    cx = X_CENTER[a["size"]][a["position"]] + (rng.uniform(-1, 1) if a["size"] == "small" else 0)
    if a["count"] == "two":
        return [(cx, 8.5 + rng.uniform(-.5, .5)), (cx, 23.5 + rng.uniform(-.5, .5))]
    jitter = 4 if a["size"] == "small" else 2
    return [(cx, 16 + rng.uniform(-jitter, jitter))]


def _compose(a: dict, rng: np.random.Generator) -> np.ndarray:
    """The scene before styling, float [G, G, 3]."""
    return _scene(a, rng)[0]


def _scene(a: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The scene before styling, float [G, G, 3], and the object's coverage [G, G] in [0, 1]
    (its body and, when it has one, its outline: every pixel the concept itself paints)."""
    img = _background(a["background"], rng)
    side = DIAMETER[a["size"]] * SS
    body, ring, fill = (np.zeros((G, G), np.float32) for _ in range(3))
    accent_mask = np.zeros((G, G), np.float32)
    pattern = _pattern(a["pattern"], side, rng).astype(np.float32)
    grown = shape_mask(a["shape"], side + 2 * OUTLINE_PX * SS)
    for cx, cy in _object_centres(a, rng):
        m = shape_mask(a["shape"], side)
        _place(body, m, cx * SS, cy * SS)
        _place(accent_mask, m * pattern, cx * SS, cy * SS)
        _place(ring, grown, cx * SS, cy * SS)
    if a["style"] == "photo":  # a soft drop shadow grounds the object
        shadow = np.roll(np.roll(np.maximum(ring, body), 3, 0), 3, 1)
        img *= (1 - 0.35 * shadow)[..., None]
    if a["outline"] != "none":
        img = img * (1 - ring[..., None]) + ring[..., None] * np.array(OUTLINES[a["outline"]], np.float32)
    color = np.array(COLORS[a["color"]], np.float32)
    obj = np.broadcast_to(color, (G, G, 3)).copy()
    if a["accent"] != "none":
        acc = accent_mask[..., None] / np.maximum(body[..., None], 1e-3)
        obj = obj * (1 - acc) + acc * np.array(ACCENTS[a["accent"]], np.float32)
    if a["style"] == "photo":  # light from the top left
        yy, xx = np.mgrid[0:G, 0:G].astype(np.float32) / G
        obj *= (1.12 - 0.25 * (xx + yy) / 2)[..., None]
    cover = np.maximum(body, ring) if a["outline"] != "none" else body
    return img * (1 - body[..., None]) + obj * body[..., None], cover


def _downsample(img: np.ndarray) -> np.ndarray:
    return img.reshape(SIZE, SS, SIZE, SS, 3).mean(axis=(1, 3))


def _stylize(img: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    """Apply the picture's style to the grid-size scene; returns the final [32, 32, 3]."""
    if style == "photo":
        return _downsample(img) + rng.normal(0, 0.015, (SIZE, SIZE, 3))
    if style == "painting":
        # Wobbly strokes: every pixel takes its colour from a smoothly displaced neighbour.
        dy = np.round(2.5 * _smooth_noise(rng, (G, G), 6)).astype(int)
        dx = np.round(2.5 * _smooth_noise(rng, (G, G), 6)).astype(int)
        yy, xx = np.mgrid[0:G, 0:G]
        img = img[np.clip(yy + dy, 0, G - 1), np.clip(xx + dx, 0, G - 1)]
        grey = img.mean(-1, keepdims=True)
        img = grey + 1.4 * (img - grey)                      # richer paint
        theta = rng.uniform(0, np.pi)
        strokes = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 1.3 + 2 * _smooth_noise(rng, (G, G), 4))
        return _downsample(img * (1 + 0.10 * strokes[..., None]))
    small = _downsample(img)
    if style == "pixel":
        blocks = small.reshape(SIZE // 2, 2, SIZE // 2, 2, 3).mean(axis=(1, 3))
        blocks = np.round(np.clip(blocks, 0, 1) * 3) / 3      # a four-level palette per channel
        return blocks.repeat(2, 0).repeat(2, 1)
    if style == "sketch":
        grey = small.mean(-1)
        gy, gx = np.gradient(grey)
        edges = np.clip(np.hypot(gx, gy) * 5, 0, 1)[..., None]
        paper = np.array((0.96, 0.95, 0.90), np.float32)
        pale = 0.5 * small + 0.5 * paper
        return pale * (1 - edges) + 0.45 * small * edges
    raise ValueError(f"unknown style {style!r}")


def render(attrs: dict, seed: int) -> Image.Image:
    """Render the scene `attrs` (every named and unnamed attribute) as a 32x32 RGB picture.

    The same attributes and seed always give the same pixels; the seed drives the
    nuisances that no attribute names (jitter, pattern phase, textures, clouds, stars).
    """
    return Image.fromarray(render_array(attrs, seed))


def render_array(attrs: dict, seed: int) -> np.ndarray:
    """`render` as a uint8 array [32, 32, 3] (the fast path for building data sets)."""
    a = validate(dict(attrs))
    rng = np.random.default_rng(seed)
    img = _stylize(_compose(a, rng), a["style"], rng)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_mask(attrs: dict, seed: int) -> np.ndarray:
    """Where the object of `render(attrs, seed)` lies: float [32, 32] in [0, 1], its coverage
    (body and outline, anti-aliased) before styling, from the same draws as the picture. Exact
    for photos; a painting's wobble and a sketch's edges move pixels it does not follow."""
    a = validate(dict(attrs))
    _, cover = _scene(a, np.random.default_rng(seed))
    return cover.reshape(SIZE, SS, SIZE, SS).mean(axis=(1, 3))
