"""The issue's acceptance gates, measured on the shipped weights with fixed seeds.

Thresholds are the issue's; `python -m tinv.tools.gates` prints the same numbers. The gates
that sample and invert for minutes are marked `gates`: `python -m pytest -m gates` runs them
(CI does, after the suite); the quick ones run with every `python -m pytest`.
"""
import json

import pytest
import torch

from tinv.toyworld import MODEL_DIR, WEIGHTS_DIR
from tinv.tools import gates
from tinv.toyworld.attributes import NAMED, UNNAMED
from tinv.toyworld.oracle import load_oracle, oracle_editability, oracle_reconstruction


def test_weights_ship_inside_the_package_within_40_mb():
    total = sum(f.stat().st_size for f in WEIGHTS_DIR.rglob("*") if f.is_file())
    assert total <= 40 * 2 ** 20, f"shipped weights take {total / 2 ** 20:.1f} MB"
    index = json.loads((MODEL_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index)


def test_pipeline_loads_as_parts():
    from tinv.engine.models import load_parts
    parts = load_parts(MODEL_DIR)
    assert parts.family == "sd" and parts.resolution == 32
    assert parts.tokenizer.convert_ids_to_tokens(parts.tokenizer("star").input_ids)[1] == "star</w>"
    assert parts.text_encoder.dtype == torch.float32


def test_oracle_metrics_count_shares():
    pred = {"shape": ["star", "star", "heart"], "color": ["red", "blue", "red"], "accent": ["white"] * 3}
    assert oracle_reconstruction(pred, {"shape": "star", "color": "red", "accent": "white"}) == pytest.approx(
        [1.0, 2 / 3, 2 / 3])
    assert oracle_editability(pred, {"color": "red"}) == [1.0, 0.0, 1.0]
    # the strict form: a sample counts only when every asked attribute is there
    from tinv.toyworld.oracle import oracle_editability_all
    assert oracle_editability(pred, {"shape": "star", "color": "red"}) == [1.0, 0.5, 0.5]
    assert oracle_editability_all(pred, {"shape": "star", "color": "red"}) == [1.0, 0.0, 0.0]
    with pytest.raises(KeyError, match="texture"):
        oracle_editability(pred, {"texture": "rough"})


def test_oracle_splits_group_named_unnamed_and_each_attribute():
    from tinv.toyworld.oracle import splits
    truth = {"shape": "star", "color": "red", "accent": "white", "outline": "black"}
    groups = splits(truth)
    assert groups[""] == truth and groups["_named"] == {"shape": "star", "color": "red"}
    assert groups["_unnamed"] == {"accent": "white", "outline": "black"} and groups["_accent"] == {"accent": "white"}
    assert set(splits({"style": "pixel"})) == {"", "_named", "_style"}   # no empty unnamed group


def test_oracle_predict_names_values():
    pred = load_oracle().predict(torch.rand(3, 3, 32, 32))
    assert set(pred) == set(NAMED) | set(UNNAMED)
    assert all(len(v) == 3 and all(x in (NAMED | UNNAMED)[k] for x in v) for k, v in pred.items())
    with pytest.raises(ValueError, match="shape"):
        load_oracle().predict(torch.rand(3, 32, 32))


def test_oracle_is_right_on_fresh_renders():
    acc = gates.oracle_gate(1000)
    low = {k: v for k, v in acc.items() if v < (0.95 if k in NAMED else 0.90)}
    assert not low, f"oracle accuracy below the gate: {low} (all: {acc})"


def test_autoencoder_keeps_named_attributes():
    acc = gates.autoencoder_gate(1000)
    low = {k: v for k, v in acc.items() if v < 0.95}
    assert not low, f"oracle on autoencoder reconstructions below 0.95: {low} (all: {acc})"


@pytest.mark.gates
@pytest.mark.slow
def test_generation_follows_text():
    acc = gates.generation_gate(n_prompts=128, steps=20)
    low = {k: v for k, v in acc.items() if v < (0.75 if k == "style" else 0.85)}
    assert not low, f"text following below the gate: {low} (all: {acc})"


def test_evaluator_zero_shot_and_pairs():
    res = gates.evaluator_gate(1000)
    low = {k: v for k, v in res.items() if k.startswith("zero_shot") and v < 0.80}
    assert not low, f"evaluator zero-shot top-1 below 0.80: {low} (all: {res})"
    assert res["pairs_match_beats_other"] >= 0.95, res


def test_evaluator_uses_open_clip_code_path():
    import open_clip

    from tinv.toyworld.evaluator import NAME, load_evaluator
    model, preprocess, tokenizer = load_evaluator()
    assert NAME in open_clip.list_models()
    assert isinstance(model, open_clip.CLIP)
    assert tokenizer(["a red star"]).shape[0] == 1


@pytest.fixture(scope="module")
def inversion():
    # all 8 object concepts, `python run.py`'s single_word config, 16 samples each
    return gates.inversion_gate(keep_vectors=True)


@pytest.mark.gates
@pytest.mark.slow
def test_inversion_beats_the_coarse_word(inversion):
    passing = [k for k, v in inversion.items() if v["gain"] >= 0.2]
    assert len(passing) >= 7, f"only {passing} beat the coarse word by >= 0.2: {inversion}"


@pytest.mark.gates
@pytest.mark.slow
def test_unnamed_details_exist_in_the_input_space(inversion):
    # Positive control: a vector that draws each concept's accent and outline exists (chosen
    # among the compound vectors and the learned word on some seeds, scored on others).
    res = gates.existence_gate(inverted={k: v["vector"] for k, v in inversion.items()})
    low = {k: v["unnamed"] for k, v in res.items() if v["unnamed"] < 0.8}
    assert not low, f"unnamed details not reachable (< 0.8) for {low}: {res}"


@pytest.mark.gates
@pytest.mark.slow
def test_inversion_learns_what_no_caption_says(inversion):
    unnamed = [v["inverted_unnamed"] for v in inversion.values()]
    assert sum(unnamed) / len(unnamed) >= 0.6, inversion
    lo, hi = gates.paired_interval([v["inverted_unnamed"] - v["captions_long_unnamed"] for v in inversion.values()])
    assert lo > 0, f"single-word vs long captions on the unnamed details: [{lo:.3f}, {hi:.3f}] covers 0: {inversion}"


@pytest.mark.gates
@pytest.mark.slow
def test_overfitted_word_loses_editability():
    # Positive control: the instrument sees a trade-off where one is built in. A word of 10
    # vectors at 20x the rate for 5x the steps carries its photos' shared context and look into
    # every edit prompt. Its control: the same 10 vectors untrained, paired cell by cell, so the
    # gap is seen to be the fitting's and not the tokens'. (Their distance to prompt-only is
    # what the class word itself costs an appearance edit, "a plain star" against "a plain": a
    # property of the prompts, reported by the gate, not a gate.)
    res = gates.editability_gate()
    concepts = {k: v for k, v in res.items() if isinstance(v, dict) and "gap" in v}
    gap = sum(v["gap"] for v in concepts.values()) / len(concepts)
    assert gap >= 0.15, f"over-fitted word only {gap:.3f} below prompt-only: {res}"
    lo, hi = gates.paired_interval(res["cell_gaps"])
    assert lo > 0, f"over-fitted word vs prompt-only: [{lo:.3f}, {hi:.3f}] covers 0: {res}"
    lo, hi = gates.paired_interval(res["cell_gaps_untrained"])
    assert lo > 0, f"over-fitted word vs the same vectors untrained: [{lo:.3f}, {hi:.3f}] covers 0: {res}"
    assert all(v["fit_gap"] > 0 for v in concepts.values()), res
    assert all(v["image_only"] <= 0.3 for v in concepts.values()), res
    # prompt-only follows every asked attribute, most at once, well above chance (<= 0.5):
    # the edits are drawable, off the ceiling (conf/eval/prompts/toyworld4.yaml)
    assert min(res["followed"]["prompt_only"].values()) >= 0.6, res
    assert res["prompt_only"] <= 0.9, res


def test_gates_cli_refuses_unknown_gates_and_arguments_before_running(capsys):
    for argv, named in ((["--only", "editability", "--set", "vectorz=3"], "vectorz"),
                        (["--only", "editabilty"], "editabilty"), (["--set", "vectors"], "vectors")):
        with pytest.raises(SystemExit) as exc:
            gates.main(argv)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert exc.value.code == 2 and "error:" in err, err
        assert named in err, err


@pytest.mark.gates
@pytest.mark.slow
def test_regularizer_halves_the_distance_to_the_initializer():
    res = gates.regularizer_gate()
    ratios = [v["ratio"] for k, v in res.items() if k != "reg_weight"]
    assert 0.3 <= sum(ratios) / len(ratios) <= 0.7, res


def test_pivotal_stage_moves_the_loss():
    res = gates.pivotal_gate()
    assert res["params"] == "all" and res["tuned_tensors"] > 100, res
    assert res["fall"] >= 0.01, f"the calibrated pivotal stage moved the fixed-batch loss by {res['fall']:.2%}: {res}"
