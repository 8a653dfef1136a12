"""ToyWorld 4 (model=toyworld4): the UNet in Stable Diffusion's layout, its own gates.

The shipped pipeline_sd folder is measured with the same gate functions and seeds as the
default model (`python -m tinv.tools.gates --model toyworld4` prints the same numbers)."""
import pytest

from tinv.engine.conditioning import cross_attention_layers
from tinv.tools import gates
from tinv.toyworld import WEIGHTS_DIR

TW4 = WEIGHTS_DIR / "pipeline_sd"


@pytest.fixture(scope="module")
def parts():
    from tinv.engine.models import load_parts
    return load_parts(TW4)


def test_unet_cross_attends_at_three_resolutions_and_pools_no_text(parts):
    unet = parts.unet
    sides = {gates.layer_resolution(unet, name) for name in cross_attention_layers(unet)}
    assert len(sides) >= 3, sides
    assert unet.config.addition_embed_type is None   # the caption reaches the image only by cross-attention
    down = [name for name in cross_attention_layers(unet) if name.startswith("down_blocks")]
    up = [name for name in cross_attention_layers(unet) if name.startswith("up_blocks")]
    assert {gates.layer_resolution(unet, n) for n in down} == {gates.layer_resolution(unet, n) for n in up}


def test_follows_text(parts):
    acc = gates.generation_gate(n_prompts=64, parts=parts)
    assert min(acc.values()) >= 0.9, acc


def test_the_oracle_grades_every_edit_prompt():
    # Positive control of oracle editability: renders that have a prompt's asked attributes are
    # read as having them, so a sample that misses one is the model's miss (the prompts ask
    # what the model draws less than always: conf/eval/prompts/toyworld4.yaml).
    res = gates.prompt_grading_gate()
    assert len(res) == 13 and "a checkered {}" in res, res   # 9 object and 4 style prompts
    assert min(res.values()) >= 0.95, res


@pytest.mark.gates
def test_coarse_layers_draw_the_shape_and_fine_layers_the_colour():
    # P+'s observation as a positive control: prompt A at every cross-attention layer except
    # the finest (8x8), prompt B (another shape and colour) there. Chance is 1/8 for each.
    res = gates.layer_mixing_gate(model=str(TW4))
    fine = res["fine"]
    assert fine["shape_from_a"] >= 0.6 and fine["color_from_b"] >= 0.5, res
    assert fine["shape_from_b"] <= 0.2 and fine["color_from_a"] <= 0.3, res


# The inversion gates on this model (it is the default, gates.MODEL) are tests/toyworld/test_gates.py's.
