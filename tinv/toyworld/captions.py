"""Captions of toy-world scenes, as people write them: varying verbosity, attributes dropped.

Only named attributes ever reach a caption; the unnamed ones (accent, outline) never do.
"""
from __future__ import annotations

import numpy as np

STYLE_PREFIX = {"photo": ("a photo of", "a photograph of"), "sketch": ("a sketch of", "a drawing of"),
                "painting": ("a painting of", "an oil painting of"), "pixel": ("pixel art of", "a pixel art picture of")}
NEUTRAL_PREFIX = ("", "", "an image of", "a picture of")
BACKGROUND = {"grass": ("on grass", "on the grass"), "sky": ("in the sky", "against a blue sky"),
              "water": ("on water", "on the water"), "night": ("at night", "under the moon at night"),
              "brick": ("in front of a brick wall", "by a brick wall"), "sand": ("on sand", "on the beach sand"),
              "gray": ("on a gray background", "on plain gray")}
PATTERN = {"solid": "plain", "striped": "striped", "dotted": "dotted", "checkered": "checkered"}
POSITION = {"left": "on the left", "center": "in the center", "right": "on the right"}
# How often a caption mentions each attribute: shape nearly always, position rarely.
MENTION_P = {"shape": 0.95, "color": 0.8, "background": 0.7, "style": 0.6, "pattern": 0.5,
             "size": 0.4, "position": 0.3}


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def describe(attrs: dict, mention: set, rng: np.random.Generator | None = None) -> str:
    """A caption of `attrs` naming exactly the attributes in `mention` (and always the count).

    With `rng` None the canonical wording is used (first synonym, no neutral prefix).
    """
    pick = (lambda opts: opts[0]) if rng is None else (lambda opts: opts[rng.integers(len(opts))])
    words = []
    if "size" in mention:
        words.append(attrs["size"])
    if "color" in mention:
        words.append(attrs["color"])
    if "pattern" in mention:
        words.append(PATTERN[attrs["pattern"]])
    two = attrs["count"] == "two"
    noun = attrs["shape"] if "shape" in mention else "shape"
    words.append(_plural(noun) if two else noun)
    head = ("two" if two else ("an" if words[0][0] in "aeiou" else "a"))
    phrase = " ".join([head] + words)
    if "position" in mention:
        phrase += " " + POSITION[attrs["position"]]
    if "background" in mention:
        phrase += " " + pick(BACKGROUND[attrs["background"]])
    prefix = pick(STYLE_PREFIX[attrs["style"]]) if "style" in mention else (
        "" if rng is None else pick(NEUTRAL_PREFIX))
    return f"{prefix} {phrase}".strip()


def caption(attrs: dict, rng: np.random.Generator, mention_p: dict | None = None) -> str:
    """A random human-style caption: each named attribute mentioned with its own probability
    (`MENTION_P`, or `mention_p` where it says otherwise)."""
    mention = {k for k, p in (MENTION_P | (mention_p or {})).items() if rng.random() < p}
    return describe(attrs, mention, rng)


# The stand-in word of a compound caption; its input vector is replaced by the compound's.
COMPOUND_MARK = "sks"


def compound_caption(attrs: dict, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A random caption whose colour, pattern and shape words are one compound word.

    Returns the caption, with `COMPOUND_MARK` where the compound stands, and the words the
    compound merges (colour, pattern, shape). Pretraining gives that slot the merged vector of
    those words' embeddings, so a single input vector can carry an object's whole look.
    """
    mention = {k for k, p in MENTION_P.items() if rng.random() < p} - {"color", "pattern"}
    text = describe({**attrs, "shape": COMPOUND_MARK}, mention | {"shape"}, rng)
    text = text.replace(_plural(COMPOUND_MARK), COMPOUND_MARK)
    return text, [attrs["color"], PATTERN[attrs["pattern"]], attrs["shape"]]


# Heads that name no style: "a picture in the style of sks" must not say painting or photo.
# "a picture" is listed twice, so drawn twice as often: it is the toy world's style-template
# noun (model.style_noun); the ToyWorld 3 weights were trained with this list.
STYLE_HEADS = ("a picture", "an image", "a rendering", "a rendition", "a picture")


def style_words(attrs: dict) -> list[str]:
    """The words a style compound merges: the style's and the background's, each value being
    the word itself ("pixel", "brick")."""
    return [attrs["style"], attrs["background"]]


def style_compound_caption(attrs: dict, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A random caption "<object or neutral head> in the style of sks": the look (style,
    background) is one compound word, the object is said in words with the usual chances.

    Returns the caption and the words the compound merges (style, background)."""
    if rng.random() < 0.4:
        head = STYLE_HEADS[rng.integers(len(STYLE_HEADS))]
    else:
        mention = {k for k, p in MENTION_P.items() if rng.random() < p} - {"style", "background", "position"}
        head = describe(attrs, mention | {"shape"}, None)
    return f"{head} in the style of {COMPOUND_MARK}", style_words(attrs)


def full_caption(attrs: dict) -> str:
    """The canonical caption naming every named attribute."""
    return describe(attrs, set(MENTION_P))


def attribute_prompt(attr: str, value: str) -> str:
    """The canonical prompt naming one attribute value alone (zero-shot classification)."""
    base = {"shape": "star", "count": "one"}
    base[attr] = value
    fill = {"shape": base["shape"], "color": "red", "pattern": "solid", "size": "small", "position": "center",
            "count": base["count"], "background": "gray", "style": "photo", **base}
    mention = {attr} | ({"shape"} if attr == "shape" else set())
    return describe(fill, mention)


def prompt(shape: str, color: str, background: str, style: str) -> str:
    """The generation-test prompt naming shape, colour, background and style."""
    a = {"shape": shape, "color": color, "background": background, "style": style, "count": "one"}
    return describe(a, {"shape", "color", "background", "style"})


def generation_prompts(n: int = 128, seed: int = 12345) -> list[tuple[str, dict]]:
    """`n` fixed (prompt, asked attributes) pairs naming shape, colour, background and style.

    Shapes, colours and backgrounds cycle so that every value is asked about equally often.
    """
    from .attributes import NAMED
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        asked = {"shape": NAMED["shape"][i % 8], "color": NAMED["color"][rng.integers(8)],
                 "background": NAMED["background"][i % 7], "style": NAMED["style"][rng.integers(4)]}
        out.append((prompt(**asked), asked))
    return out
