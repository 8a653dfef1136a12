"""The toy world's attribute vocabularies and the sampler of scenes.

Named attributes are the ones captions talk about; unnamed ones (the accent colour of a
pattern, the outline around an object) are never put into words, like the fine details of
the paper's teapot that a caption misses.
"""
from __future__ import annotations

import numpy as np

NAMED: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle", "star", "heart", "cross", "diamond", "arrow"),
    "color": ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white"),
    "pattern": ("solid", "striped", "dotted", "checkered"),
    "size": ("small", "large"),
    "position": ("left", "center", "right"),
    "count": ("one", "two"),
    "background": ("grass", "sky", "water", "night", "brick", "sand", "gray"),
    "style": ("photo", "sketch", "painting", "pixel"),
}
UNNAMED: dict[str, tuple[str, ...]] = {
    # "none" exactly when the pattern is solid: a solid object has no second colour.
    "accent": ("none", "white", "black", "cyan"),
    "outline": ("none", "black", "white"),
}
ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {"named": NAMED, "unnamed": UNNAMED}
ALL: dict[str, tuple[str, ...]] = {**NAMED, **UNNAMED}

# What makes an object concept itself; background, position, size and style are nuisances.
IDENTITY = ("shape", "color", "pattern", "accent", "outline")


def validate(attrs: dict) -> dict:
    """Return `attrs` if it is a complete, consistent scene, else a ValueError naming the key."""
    for name, values in ALL.items():
        if name not in attrs:
            raise ValueError(f"scene attributes lack {name!r} (need all of {sorted(ALL)})")
        if attrs[name] not in values:
            raise ValueError(f"attribute {name}={attrs[name]!r} is not one of {values}")
    if (attrs["pattern"] == "solid") != (attrs["accent"] == "none"):
        raise ValueError(f"accent must be 'none' exactly when pattern is 'solid', got "
                         f"pattern={attrs['pattern']!r} accent={attrs['accent']!r}")
    if attrs["count"] == "two" and attrs["size"] != "small":
        raise ValueError("two objects are always small (they share the canvas)")
    if attrs["color"] == "white" and "white" in (attrs["accent"], attrs["outline"]):
        raise ValueError("a white object cannot have a white accent or outline (it would vanish)")
    return attrs


def matches(attrs: dict, partial: dict) -> bool:
    """True when `attrs` has every attribute value of `partial`."""
    return all(attrs.get(k) == v for k, v in partial.items())


def sample(rng: np.random.Generator, exclude: tuple[dict, ...] = (), **fixed) -> dict:
    """A random valid scene; `fixed` pins attributes; scenes matching any dict in `exclude`
    (the built-in concepts' attribute sets, which pretraining must never show) are redrawn."""
    for _ in range(1000):
        a = {k: fixed.get(k, v[rng.integers(len(v))]) for k, v in NAMED.items()}
        if "count" not in fixed:  # pairs are a quarter of scenes: most pictures show one object
            a["count"] = "two" if rng.random() < 0.25 else "one"
        a["accent"] = fixed.get("accent", "none" if a["pattern"] == "solid"
                                else UNNAMED["accent"][1 + rng.integers(3)])
        a["outline"] = fixed.get("outline", UNNAMED["outline"][rng.integers(3)])
        if a["count"] == "two" and "size" not in fixed:
            a["size"] = "small"
        try:
            validate(a)
        except ValueError:
            continue
        if not any(matches(a, e) for e in exclude):
            return a
    raise ValueError(f"no valid scene with fixed attributes {fixed}")
