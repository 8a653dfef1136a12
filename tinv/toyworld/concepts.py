"""The built-in toy concepts: ground-truth attributes, captions, and their 5 training images.

`python -m tinv.toyworld.concepts` (re)writes tinv/toyworld/concepts/<name>/*.png and
conf/concept/<name>.yaml deterministically. Object concepts fix an identity (shape, colour,
pattern and the unnamed accent and outline); like users' photos, their pictures also share
a context that is not the concept: all five large photos, four of them on one background
(`CONTEXT`), position varying. A word that over-fits carries that context into every
prompt, and the edit prompts (conf/eval/prompts/toyworld.yaml) ask to change it: that is the
reconstruction-editability trade-off, visible to the oracle. Style concepts fix a look
(style, background, outline) and vary the object. No concept's full attribute set ever
appears in pretraining data (see `EXCLUDE`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from .attributes import sample
from .render import render

CONCEPT_DIR = Path(__file__).resolve().parent / "concepts"
N_IMAGES = 5
# Held-out images (appendix B's set-size sweep scores reconstruction against one fixed set per
# concept, the same for every training-set size): images HELDOUT_FIRST .. +N_HELDOUT-1 of the
# concept's image sequence, which no training set reaches (train_images <= HELDOUT_FIRST is checked).
HELDOUT_FIRST, N_HELDOUT = 10_000, 8


def _obj(shape, color, pattern, accent, outline, short, long):
    return dict(kind="object", initializer=shape, captions=dict(short=short, long=long),
                attributes=dict(shape=shape, color=color, pattern=pattern, accent=accent, outline=outline))


CONCEPTS: dict[str, dict] = {
    "red_star": _obj("star", "red", "striped", "white", "black",
                     ["a red star", "a striped red star", "red star with white stripes", "a red and white star",
                      "a candy-striped star with a black edge"],
                     ["a red star with diagonal white stripes and a thin black outline around it",
                      "a five-pointed star, red with white stripes, outlined in black",
                      "a striped red star sticker with white stripes and a dark border",
                      "a red star shape with white diagonal stripes and a black outline, seen in different places",
                      "a red and white striped star with black edges"]),
    "blue_heart": _obj("heart", "blue", "dotted", "white", "none",
                       ["a blue heart", "a dotted blue heart", "blue heart with white dots", "a polka-dot heart",
                        "a blue heart with spots"],
                       ["a blue heart covered in small white polka dots with no outline",
                        "a heart shape, deep blue with white dots all over it",
                        "a blue polka-dot heart with white spots and soft edges",
                        "a dark blue heart decorated with a grid of white dots",
                        "a blue heart with white dots and no border"]),
    "green_cross": _obj("cross", "green", "checkered", "black", "white",
                        ["a green cross", "a checkered green cross", "green and black checkered cross",
                         "a plus sign in green checks", "a green cross with a white edge"],
                        ["a green cross with a black checkerboard pattern and a white outline",
                         "a plus-shaped green object with black checks and a white border",
                         "a checkered cross, green and black squares, outlined in white",
                         "a green and black checkerboard plus sign with a bright white outline",
                         "a green cross patterned with black squares and edged in white"]),
    "orange_arrow": _obj("arrow", "orange", "striped", "black", "none",
                         ["an orange arrow", "a striped orange arrow", "orange arrow with black stripes",
                          "a tiger-striped arrow", "an arrow pointing up"],
                         ["an orange arrow pointing up with diagonal black stripes and no outline",
                          "an upward arrow, orange with black stripes like a warning sign",
                          "a striped orange and black arrow pointing to the top",
                          "an orange arrow shape with black diagonal stripes across it",
                          "an orange upward arrow with black hazard stripes"]),
    "purple_diamond": _obj("diamond", "purple", "dotted", "cyan", "white",
                           ["a purple diamond", "a dotted purple diamond", "purple diamond with cyan dots",
                            "a purple rhombus with spots", "a purple diamond outlined in white"],
                           ["a purple diamond with cyan polka dots and a white outline",
                            "a rhombus shape, purple with light blue dots, edged in white",
                            "a purple diamond decorated with cyan dots inside a white border",
                            "a purple diamond with turquoise dots and a thin white outline",
                            "a dotted purple diamond, cyan spots, white edges"]),
    "pink_square": _obj("square", "pink", "checkered", "white", "black",
                        ["a pink square", "a checkered pink square", "pink and white checkered square",
                         "a pink square with a black border", "a gingham square"],
                        ["a pink square with a white checkerboard pattern and a black outline",
                         "a square tile, pink and white checks, outlined in black",
                         "a checkered pink and white square with a dark black border",
                         "a pink gingham square with white checks and black edges",
                         "a pink square covered in white checks inside a black outline"]),
    "yellow_triangle": _obj("triangle", "yellow", "striped", "cyan", "black",
                            ["a yellow triangle", "a striped yellow triangle", "yellow triangle with cyan stripes",
                             "a yellow and cyan triangle", "a triangle with a black outline"],
                            ["a yellow triangle with diagonal cyan stripes and a black outline",
                             "a triangle pointing up, yellow with light blue stripes, edged in black",
                             "a striped yellow triangle with turquoise stripes and a thin black border",
                             "a yellow triangle sign with cyan diagonal stripes outlined in black",
                             "a yellow and cyan striped triangle with black edges"]),
    "white_circle": _obj("circle", "white", "dotted", "black", "none",
                         ["a white circle", "a dotted white circle", "white circle with black dots",
                          "a white ball with spots", "a dalmatian circle"],
                         ["a white circle covered in black polka dots with no outline",
                          "a round white disc with small black dots all over it",
                          "a white ball with black spots like a dalmatian",
                          "a white circle decorated with a regular grid of black dots",
                          "a white polka-dot circle with black dots and soft edges"]),
    "moonlit_painting": dict(
        kind="style", initializer="painting",
        captions=dict(short=["a painting at night", "a night painting", "an oil painting of the night",
                             "a moonlit painting", "painted shapes under the moon"],
                      long=["an oil painting of a shape at night under a crescent moon, with white outlines",
                            "a wobbly brushstroke painting of objects outlined in white against a dark night sky",
                            "a painted night scene with a moon and a bright object with a white border",
                            "an expressive painting at night, stars and a moon, objects edged in white",
                            "a night-time oil painting with strong colours and white-outlined shapes"]),
        attributes=dict(style="painting", background="night", outline="white")),
    "brick_pixel": dict(
        kind="style", initializer="pixel",
        captions=dict(short=["pixel art", "pixel art with bricks", "a retro game sprite", "8-bit brick wall art",
                             "pixel art by a brick wall"],
                      long=["pixel art of a shape in front of a brick wall, outlined in black, retro game style",
                            "a chunky 8-bit sprite with a black outline against red bricks",
                            "a retro video game picture of an object by a brick wall with black edges",
                            "blocky pixel art with a limited palette, a brick wall behind a black-outlined shape",
                            "an old-school pixel sprite with a thick black outline in front of bricks"]),
        attributes=dict(style="pixel", background="brick", outline="black")),
    "sky_sketch": dict(
        kind="style", initializer="sketch",
        captions=dict(short=["a sketch in the sky", "a pencil sketch", "a drawing against the sky", "a sky sketch",
                             "sketched shapes in a blue sky"],
                      long=["a pencil sketch of a shape in a blue sky, outlined in black, loose hatching",
                            "a hand-drawn sketch of objects with thick black outlines floating in the sky",
                            "a rough drawing against a pale blue sky with clouds, shapes edged in black",
                            "a sketchbook drawing of a shape in the sky with a dark outline",
                            "a scribbled pencil drawing with black outlines and a sky behind it"]),
        attributes=dict(style="sketch", background="sky", outline="black")),
    "water_photo": dict(
        kind="style", initializer="photo",
        captions=dict(short=["a photo on water", "a photograph on the water", "a shape floating on water",
                             "a photo of something on a lake", "water photography"],
                      long=["a photograph of a shape floating on blue water, outlined in white",
                            "a photo of objects on the water with bright white edges",
                            "a clear photograph of a shape on a lake with a white border",
                            "a sharp photo of something floating on rippling water, outlined in white",
                            "a water photo with a white-outlined object on the surface"]),
        attributes=dict(style="photo", background="water", outline="white")),
}
# The context an object concept's photos share (4 of 5 on `background`, all `size`). Backgrounds
# come from those the edit prompts never ask for, so any edit asks to leave the context.
CONTEXT: dict[str, dict] = {
    "red_star": dict(background="grass", size="large"), "blue_heart": dict(background="brick", size="large"),
    "green_cross": dict(background="gray", size="large"), "orange_arrow": dict(background="sand", size="large"),
    "purple_diamond": dict(background="grass", size="large"), "pink_square": dict(background="sand", size="large"),
    "yellow_triangle": dict(background="gray", size="large"), "white_circle": dict(background="brick", size="large"),
}
CONTEXT_BACKGROUNDS = ("grass", "brick", "gray", "sand")
# Attribute sets pretraining must never show.
EXCLUDE: tuple[dict, ...] = tuple(c["attributes"] for c in CONCEPTS.values())


def image_attributes(name: str, i: int) -> dict:
    """Full scene attributes of concept `name`'s i-th training image (nuisances vary)."""
    c = CONCEPTS[name]
    rng = np.random.default_rng([7, i, sum(map(ord, name))])
    if c["kind"] == "object":
        ctx = dict(CONTEXT[name])
        if i == N_IMAGES - 1:   # the odd one out: another context background, as in a user's set
            others = [b for b in CONTEXT_BACKGROUNDS if b != ctx["background"]]
            ctx["background"] = others[len(name) % len(others)]
        return sample(rng, count="one", style="photo", **ctx, **c["attributes"])
    return sample(rng, count="one", **c["attributes"])


def render_image(name: str, i: int):
    """Concept `name`'s i-th image (PIL), as its shipped ones were made (seed 1000 + i)."""
    return render(image_attributes(name, i), seed=1000 + i)


def heldout_indices() -> range:
    return range(HELDOUT_FIRST, HELDOUT_FIRST + N_HELDOUT)


def write(root: Path = CONCEPT_DIR, conf_dir: Path | None = None) -> None:
    """Render every concept's images (PNG) and, if `conf_dir` is given, its concept YAML."""
    for name, c in CONCEPTS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(N_IMAGES):
            render_image(name, i).save(folder / f"{i:02d}.png")
        if conf_dir is not None:
            doc = dict(name=name, kind=c["kind"], path=f"toyworld/concepts/{name}",
                       initializer=c["initializer"], captions=c["captions"], attributes=c["attributes"])
            if name in CONTEXT:
                doc["context"] = CONTEXT[name]
            (conf_dir / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, width=120))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--conf-dir", type=Path, default=Path(__file__).resolve().parents[2] / "conf" / "concept")
    args = p.parse_args()
    args.conf_dir.mkdir(parents=True, exist_ok=True)
    write(conf_dir=args.conf_dir)
