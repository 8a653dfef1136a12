"""The method registry (tinv/methods.py): every method YAML is one kind, read in one place;
the YAMLs inherit a base; and a setup added through the registry alone runs end to end."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tinv import methods
from tinv.core.errors import InputError
from tinv.harness.plan import make_plan
from tinv.metrics import protocol

from .conftest import FAST, REPO, rows, run_cli
from .test_config import METHODS, _compose

KIND = {"single_word": "learned word", "two_word": "learned word", "three_word": "learned word",
        "progressive": "learned word", "regularized": "learned word", "per_image_tokens": "learned word",
        "high_lr": "learned word", "low_lr": "learned word", "single_word_dvar": "learned word",
        "pivotal_tuning": "tuned generator", "bipartite_inversion": "bipartite inversion",
        "human_captions_short": "human captions in turn", "human_captions_long": "human captions in turn",
        "image_only": "image-only", "prompt_only": "prompt-only", "initializer_word": "initializer word",
        "xti": "learned word", "custom_diffusion": "word and class noun", "dreambooth_lora": "word and class noun",
        "neti": "learned word", "neti_no_bypass": "learned word", "dreambooth": "word and class noun",
        "masked_word": "learned word"}


def test_every_method_yaml_is_one_kind_and_every_kind_is_used():
    assert set(METHODS) == set(KIND)
    for m in METHODS:
        cfg = OmegaConf.to_container(_compose(f"method={m}"), resolve=True)
        assert methods.kind_of(cfg["method"]).name == KIND[m], m
    # every caption at every seed: the captions' other draw, a field of the same YAMLs
    each = OmegaConf.to_container(_compose("method=human_captions_short", "method.caption_seeds=each"), resolve=True)
    assert methods.kind_of(each["method"]).name == "human captions"
    assert set(KIND.values()) | {"human captions"} == set(methods.KINDS)


def test_method_yamls_inherit_a_base_and_state_only_what_differs():
    bases = {b: yaml.safe_load((REPO / "conf" / "method" / "base" / f"{b}.yaml").read_text())
             for b in ("learned", "fixed")}
    for m in METHODS:
        own = yaml.safe_load((REPO / "conf" / "method" / f"{m}.yaml").read_text())
        [base] = [d.split("/")[1].split("@")[0] for d in own.pop("defaults") if d != "_self_"]
        for key, value in own.items():
            if key == "inversion":
                for k, v in value.items():      # an inversion field restated with the base's value
                    assert bases[base]["inversion"].get(k) != v, (m, k)
            else:
                assert bases[base].get(key, object()) != value, (m, key)
    assert "inversion" not in bases["fixed"]        # references and captions carry no inversion block


def test_the_captions_in_turn_give_each_prompt_the_seeds_every_setup_gets():
    """caption_seeds=in_turn: one cell per prompt, seed i under caption i mod 5, as many
    samples as the single word's cell; `each`: a cell per caption, every seed in each."""
    def plan(*extra):
        return make_plan(OmegaConf.to_container(_compose("concept=red_star", *extra), resolve=True), {})
    word, turn = plan("method=single_word"), plan("method=human_captions_short")
    each = plan("method=human_captions_short", "method.caption_seeds=each")
    caps, seeds = turn.fillers, turn.eval.seeds
    assert len(caps) == 5 and len(seeds) > len(caps)
    assert [(c.prompt, c.caption) for c in turn.cells()] == [(c.prompt, c.caption) for c in word.cells()]
    for cell, p in zip(turn.cells(), [turn.recon] + turn.prompts):
        assert cell.texts == [p.fill(caps[i % 5]) for i in range(len(seeds))]
        assert protocol.drawn_texts(cell) == [p.fill(c) for c in caps]
    assert len(each.cells()) == 5 * len(word.cells()) and all(c.texts is None for c in each.cells())
    with pytest.raises(InputError, match="caption_seeds='twice' is none of each, in_turn"):
        methods.kind_of({"name": "x", "captions": "short", "caption_seeds": "twice"})


def test_flags_that_name_no_kind_are_refused():
    with pytest.raises(InputError, match="reference='images' is none of image_only, initializer, prompt_only"):
        methods.kind_of({"name": "x", "learns": False, "reference": "images"})
    with pytest.raises(InputError, match="learns nothing and names no reference or captions"):
        methods.kind_of({"name": "x", "learns": False})


def test_the_initializer_word_fills_the_prompts_with_the_concepts_coarse_word():
    cfg = OmegaConf.to_container(_compose("method=initializer_word", "concept=red_star"), resolve=True)
    plan = make_plan(cfg, {})
    assert plan.icfg is None and plan.fillers == [cfg["concept"]["initializer"]]
    texts = [c.text for c in plan.cells()]
    assert all(cfg["concept"]["initializer"] in t and "<" not in t for t in texts), texts


def test_a_setup_added_through_the_registry_runs_and_differs_from_its_neighbours(tmp_path):
    res = run_cli(["-m", "method=initializer_word,prompt_only,single_word", "concept=red_star", *FAST,
                   "sweep=kinds"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    by = {r["choices"]["method"]: r for r in rows(tmp_path, "kinds")}
    assert set(by) == {"initializer_word", "prompt_only", "single_word"}
    init = by["initializer_word"]
    assert init["status"] == "ok" and "embeddings" not in init["artifacts"]     # nothing learned
    key = "reconstruction_clip"
    assert key in init["metrics"]
    # its samples are its own: not prompt-only's, not the learned word's
    assert init["metrics"][key] != by["prompt_only"]["metrics"][key]
    assert init["metrics"][key] != by["single_word"]["metrics"][key]


# The paper's successors (tinv/engine/learners): each a method YAML over the one loop
SUCCESSORS = ("xti", "neti", "custom_diffusion", "dreambooth_lora", "dreambooth")


def test_the_successors_run_through_the_packed_launcher_alone_beside_a_packed_word(tmp_path):
    """Single words pack; a successor's job inverts alone; every row is ok and its own, its
    learner's files are written, and the closing lines say how they load."""
    methods = ",".join(("single_word", "two_word") + SUCCESSORS)
    res = run_cli(["-m", f"method={methods}", "concept=red_star", *FAST, "cpu_threads=1", "sweep=succ",
                   "hydra/launcher=packed", "hydra.launcher.pack=8", "hydra.launcher.workers=1"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    by = {r["choices"]["method"]: r for r in rows(tmp_path, "succ")}
    assert set(by) == {"single_word", "two_word", *SUCCESSORS}
    assert by["single_word"]["timings"]["packed_with"] == [by["two_word"]["job_id"]]
    for m in SUCCESSORS:
        row = by[m]
        assert row["status"] == "ok" and "packed_with" not in row["timings"], m
        assert row["training"]["learner"]["name"] == methods_learner(m)
        assert row["artifacts"]["learner"] and all((Path(row["folder"]) / rel).is_file()
                                                   for rel in row["artifacts"]["learner"].values())
        key = "reconstruction_clip"
        assert row["metrics"][key] != by["single_word"]["metrics"][key]
        assert "embedding_dist_init" not in row["metrics"] and "embedding" in row["training"]["notes"]
        moved = row["training"]["learner"]["moved"]        # how far the learner's own tensors went
        assert moved > 0 and ("learner" in row["training"]["notes"]) == (moved < 0.01), (m, moved)
        # when it reached the single word's final fixed-batch loss: that row's, if it was written first
        t = row["training"]
        steps = [s for s, _ in t["fixed_batch_curve"]]
        assert steps[0] == 0 and steps[-1] == t["steps"] and steps == sorted(set(steps)), m
        ref = t["reference_loss"]
        if ref is None:
            assert t["steps_to_reference_loss"] is None and "no finished single_word row" in t["notes"]["steps_to_reference_loss"]
        else:
            assert ref["job_id"] == by["single_word"]["job_id"]
            assert ref["eval_loss_after"] == by["single_word"]["training"]["eval_loss_after"]
            assert (t["steps_to_reference_loss"] is None) == ("steps_to_reference_loss" in t["notes"]), m
    own = by["single_word"]["training"]      # the single word is its own reference: it reaches it by its end
    assert own["reference_loss"]["job_id"] == "this job" and 0 <= own["steps_to_reference_loss"] <= 3
    said = res.stderr + res.stdout
    assert all(f in said for f in ("xti.load(pipe", "neti.load(pipe", "load_attn_procs(", "load_lora_weights(",
                                   "UNet2DConditionModel.from_pretrained("))
    # prior preservation, on for DreamBooth and Custom Diffusion: its term in the row, its class
    # images drawn once per class prompt and count in the store (the tiny models' counts differ)
    for m in ("dreambooth_lora", "dreambooth", "custom_diffusion"):
        prior = by[m]["training"]["prior"]
        assert prior["weight"] == 1.0 and prior["loss_last"] > 0 and prior["class_images"] == "generated", m
    assert by["dreambooth"]["training"]["prior"]["class_prompt"] == "a photo of a star"
    assert by["custom_diffusion"]["training"]["prior"]["class_prompt"] == "star"
    assert len(list((tmp_path / "jobs" / "_class_images").iterdir())) == 2


def methods_learner(method: str) -> str:
    cfg = OmegaConf.to_container(_compose(f"method={method}"), resolve=True)
    return cfg["method"]["inversion"]["learner"]
