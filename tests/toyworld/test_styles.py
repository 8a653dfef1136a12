"""Styles on the toy world (section 4.3, issue 19): the cause that was found, stays fixed,
and the style gates hold on the shipped weights (`python -m tinv.tools.styles` prints the
same numbers with the same seeds)."""
import pytest

from tinv.engine.templates import STYLE_TEMPLATES, templates_for, with_style_noun
from tinv.tools import styles
from tinv.toyworld.concepts import CONCEPTS


def test_style_noun_replaces_only_the_medium_word():
    plain, dual = templates_for("style", "picture")
    assert plain[0] == "a picture in the style of {}" and dual[0] == "a picture in the style of {} with {}"
    assert not any("painting" in t for t in plain + dual)
    assert templates_for("style")[0] is STYLE_TEMPLATES            # the paper's, untouched by default
    assert templates_for("object", "picture")[0][0] == "a photo of a {}"
    assert with_style_noun("A painting in the style of {}", "picture") == "A picture in the style of {}"


def test_toy_world_jobs_train_and_score_styles_with_its_neutral_noun():
    from tinv.harness.prompts import reconstruction_prompt
    from tinv.tools.gates import composed, default_inversion
    assert reconstruction_prompt(composed("concept=brick_pixel"), "style").template == "A picture in the style of {}"
    assert default_inversion("brick_pixel").style_noun == "picture"
    # a real model keeps the paper's words
    assert reconstruction_prompt(composed("model=sd15"), "style").template == "A painting in the style of {}"


def test_four_style_concepts_differ_in_style_background_and_outline():
    looks = [c["attributes"] for c in CONCEPTS.values() if c["kind"] == "style"]
    assert len(looks) >= 4
    for attr in ("style", "background"):
        assert len({a[attr] for a in looks}) == len(looks), attr
    assert len({a["outline"] for a in looks}) >= 2
    inits = [c["initializer"] for c in CONCEPTS.values() if c["kind"] == "style"]
    assert len(set(inits)) == len(inits)


@pytest.fixture(scope="module")
def style_inversion():
    return styles.inversion_gate()


@pytest.mark.gates
def test_single_word_learns_each_look(style_inversion):
    per = {n: style_inversion[n]["single_word"]["all"] for n in styles.STYLE_CONCEPTS}
    assert min(per.values()) >= 0.6, per
    assert style_inversion["mean_single_word"] >= 0.7, per


@pytest.mark.gates
def test_single_word_beats_prompt_only_and_captions_on_styles(style_inversion):
    for ref in ("prompt_only", "captions_long"):
        gain = style_inversion[f"gain_over_{ref}"]
        assert gain["ci"][0] > 0, (ref, gain)


@pytest.mark.gates
def test_a_vector_draws_each_look():
    res = styles.existence_gate()
    for n in styles.STYLE_CONCEPTS:
        assert min(res[n][a] for a in ("style", "background", "outline")) >= 0.8, (n, res[n])
