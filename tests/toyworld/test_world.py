"""The procedural world: rendering, captions, concepts and the pretraining sampler (no weights)."""
import numpy as np
import pytest
import yaml
from PIL import Image

from tinv import PACKAGE_DIR
from tinv.toyworld import ATTRIBUTES, render
from tinv.toyworld import attributes, captions, concepts
from tinv.toyworld.render import render_array

CONF = PACKAGE_DIR.parent / "conf" / "concept"


def test_vocabularies_meet_the_issue_minimums():
    named = ATTRIBUTES["named"]
    assert len(named["shape"]) >= 8 and len(named["color"]) >= 8 and len(named["background"]) >= 6
    assert {"grass", "sky", "water", "night", "brick"} <= set(named["background"])
    assert {"photo", "sketch", "painting", "pixel"} <= set(named["style"])
    assert {"solid", "striped", "dotted", "checkered"} <= set(named["pattern"])
    assert set(named["count"]) == {"one", "two"}
    assert ATTRIBUTES["unnamed"], "the world needs unnamed attributes"


def test_render_is_deterministic_and_seed_drives_nuisances():
    a = attributes.sample(np.random.default_rng(0))
    img = render(a, seed=3)
    assert isinstance(img, Image.Image) and img.size == (32, 32) and img.mode == "RGB"
    assert np.array_equal(np.asarray(img), np.asarray(render(a, seed=3)))
    assert not np.array_equal(np.asarray(img), np.asarray(render(a, seed=4)))


@pytest.mark.parametrize("attr", list(attributes.ALL))
def test_every_attribute_value_changes_the_picture(attr):
    rng = np.random.default_rng(1)
    base = attributes.sample(rng, color="red", pattern="striped", accent="cyan", outline="black",
                             count="one", size="large")
    seen = []
    for v in attributes.ALL[attr]:
        scene = {**base, attr: v}
        if attr == "accent" and v == "none":
            scene["pattern"] = "solid"
        if attr == "pattern" and v == "solid":
            scene["accent"] = "none"
        if attr == "count" and v == "two":
            scene["size"] = "small"
        seen.append(render_array(scene, seed=5))
    for i in range(len(seen)):
        for j in range(i):
            assert not np.array_equal(seen[i], seen[j]), f"{attr}: two values render identically"


def test_invalid_scene_names_the_bad_attribute():
    a = attributes.sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        render({**a, "shape": "blob"}, 0)
    with pytest.raises(ValueError, match="background"):
        render({k: v for k, v in a.items() if k != "background"}, 0)


def test_captions_never_depend_on_unnamed_attributes():
    rng = np.random.default_rng(2)
    for _ in range(200):
        a = attributes.sample(rng, pattern="striped", color="red")
        seed = int(rng.integers(1 << 30))
        texts = {captions.caption({**a, "accent": acc, "outline": out}, np.random.default_rng(seed))
                 for acc in ("black", "cyan") for out in ("none", "black")}
        assert len(texts) == 1, texts


def test_captions_vary_in_verbosity_and_drop_attributes():
    rng = np.random.default_rng(3)
    a = attributes.sample(rng)
    texts = [captions.caption(a, rng) for _ in range(200)]
    lengths = {len(t.split()) for t in texts}
    assert max(lengths) - min(lengths) >= 5
    assert any(a["color"] not in t for t in texts), "colour should sometimes be dropped"
    assert captions.full_caption(a).count(a["shape"]) == 1


def test_generation_prompts_name_shape_colour_background_and_style():
    pairs = captions.generation_prompts(128)
    assert len({p for p, _ in pairs}) >= 100
    for p, asked in pairs:
        assert asked["shape"] in p and asked["color"] in p


@pytest.mark.parametrize("name", list(concepts.CONCEPTS))
def test_concept_yaml_and_images(name):
    doc = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert doc["name"] == name and doc["kind"] in ("object", "style")
    assert doc["path"] == f"toyworld/concepts/{name}"
    assert len(doc["captions"]["short"]) == 5 and len(doc["captions"]["long"]) == 5
    assert all(len(c.split()) <= 12 for c in doc["captions"]["short"])
    assert all(len(c.split()) <= 30 for c in doc["captions"]["long"])
    files = sorted((PACKAGE_DIR / doc["path"]).glob("*.png"))
    assert len(files) == concepts.N_IMAGES
    scenes = [concepts.image_attributes(name, i) for i in range(concepts.N_IMAGES)]
    for i, (f, s) in enumerate(zip(files, scenes)):
        assert attributes.matches(s, doc["attributes"])
        # the committed picture is exactly what the renderer gives today
        assert np.array_equal(np.asarray(Image.open(f).convert("RGB")), np.asarray(render(s, 1000 + i)))
    nuisance = {(s["background"], s["position"], s["size"], s["shape"], s["color"]) for s in scenes}
    assert len(nuisance) >= 3, "nuisances should vary across a concept's images"


def test_concept_counts():
    kinds = [c["kind"] for c in concepts.CONCEPTS.values()]
    assert kinds.count("object") >= 8 and kinds.count("style") >= 2


def test_pretraining_sampler_never_shows_a_concept():
    rng = np.random.default_rng(4)
    for c in concepts.CONCEPTS.values():  # even when everything else is pinned to the concept
        fixed = {k: v for k, v in c["attributes"].items() if k != "outline"}
        for _ in range(30):
            a = attributes.sample(rng, exclude=concepts.EXCLUDE, **fixed)
            assert not attributes.matches(a, c["attributes"])
