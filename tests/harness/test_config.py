"""Every method x model composes, every method is valid data for the engine, presets compose."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tinv.core import atomic

from tinv.harness import job, prompts, results

from .conftest import REPO

CONF = REPO / "conf"
METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
MODELS = ["toyworld", "toyworld4", "sd15", "sd21", "ldm14"]
EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))
PAPER_METHODS = {"single_word", "two_word", "three_word", "progressive", "regularized",
                 "per_image_tokens", "high_lr", "low_lr", "pivotal_tuning", "bipartite_inversion",
                 "human_captions_short", "human_captions_long", "image_only", "prompt_only"}


def _compose(*overrides: str, hydra: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def test_every_setup_of_the_paper_has_a_method_config():
    assert PAPER_METHODS <= set(METHODS)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_method_x_model_composes_into_a_valid_plan(method, model):
    cfg = OmegaConf.to_container(_compose(f"method={method}", f"model={model}"), resolve=True)
    assert cfg["method"]["name"] == method and cfg["model"]["name"] == model
    plan = job.make_plan(cfg, job.default_choices(cfg))  # builds InversionConfig / PivotalConfig
    assert (plan.icfg is not None) == bool(cfg["method"]["learns"])
    if plan.icfg is not None:
        # the model's budget (or a method's own, as Custom Diffusion's 250) and the method's
        # own fields both reach the engine
        assert plan.icfg.steps == cfg["method"]["inversion"].get("steps", cfg["model"]["inversion"]["steps"])
        assert plan.icfg.lr == cfg["method"]["inversion"]["lr"]
        assert plan.icfg.initializer_word == "star"
    assert plan.prompts and all("{}" in p.template for p in plan.prompts)


def test_method_data_reaches_the_inversion_config():
    cfg = OmegaConf.to_container(_compose("method=progressive", "model=ldm14"), resolve=True)
    icfg = job.make_plan(cfg, {}).icfg
    # the paper: 2,000 steps per unlocked vector of 5,000; LDM's effective lr 0.04
    assert (icfg.num_vectors, icfg.progressive_interval, icfg.steps) == (3, 2000, 5000)
    assert icfg.lr_effective == pytest.approx(0.04)
    cfg = OmegaConf.to_container(_compose("method=high_lr"), resolve=True)
    assert job.make_plan(cfg, {}).icfg.lr == pytest.approx(2e-2)


def test_dvar_method_differs_from_single_word_only_in_when_it_stops():
    plain, dvar = (job.make_plan(OmegaConf.to_container(_compose(f"method={m}"), resolve=True), {}).icfg
                   for m in ("single_word", "single_word_dvar"))
    assert (plain.stop, dvar.stop) == ("fixed", "dvar")
    # the authors' 310 of 6,100 steps as a share of the toy world's 300; their threshold as is
    assert (dvar.dvar_window, dvar.dvar_threshold) == (15, 0.15)
    differ = {k for k in vars(plain) if getattr(plain, k) != getattr(dvar, k)}
    assert differ == {"stop", "dvar_window"}
    sd = job.make_plan(OmegaConf.to_container(_compose("method=single_word_dvar", "model=sd15"), resolve=True), {})
    assert sd.icfg.dvar_window == round(0.0508 * sd.icfg.steps)
    from tinv.engine import dvar  # the YAML's share is the authors' N over their budget
    assert sd.icfg.dvar_window == dvar.scaled_window(sd.icfg.steps) and dvar.scaled_window(300) == 15


def test_unknown_inversion_field_is_named():
    cfg = OmegaConf.to_container(_compose("+method.inversion.num_vectorz=2"), resolve=True)
    with pytest.raises(job.InputError, match="num_vectorz"):
        job.make_plan(cfg, {})


@pytest.mark.parametrize("concept", sorted(p.stem for p in (CONF / "concept").glob("*.yaml")
                                           if p.stem not in ("folder", "dreambench")))
def test_builtin_concepts_compose_with_their_images(concept):
    cfg = OmegaConf.to_container(_compose(f"concept={concept}"), resolve=True)
    c = job.resolve_concept(cfg["concept"])
    assert c.folder.is_dir() and any(c.folder.iterdir()), c.folder
    assert c.initializer


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_presets_compose(experiment):
    cfg = _compose(f"+experiment={experiment}", hydra=True)
    assert cfg.sweep == experiment.removesuffix("_references")
    assert cfg.hydra.sweeper.params, experiment   # every preset is a sweep
    # a preset that names a concept picks the group's option, not a bare string (setsize did)
    assert OmegaConf.is_dict(cfg.concept), (experiment, cfg.concept)


def test_paper_eval_protocol():
    e = _compose().eval
    assert (e.num_samples, e.steps, e.eta, e.guidance) == (64, 50, 0.0, 5.0)
    assert (e.clip.model, e.clip.pretrained) == ("ViT-B-32", "openai")
    published = [p.text for p in e.prompt_sets.paper if p.source == "paper"]
    assert published == ["A photo of {} on the moon", "An oil painting of {}", "Elmo holding a {}"]
    assert len(e.prompt_sets.dreambench) == 25


def test_toy_prompts_name_real_attributes():
    attrs = pytest.importorskip("tinv.toyworld.attributes")
    for p in _compose().eval.prompt_sets.toyworld:
        for k, v in p.attributes.items():
            assert v in attrs.ALL[k], (p.text, k, v)


def test_prompt_filling():
    p = prompts.EvalPrompt("Elmo holding a {}")
    assert p.fill("<S*>") == "Elmo holding a <S*>"
    assert p.fill("a red star") == "Elmo holding a red star"   # one article, not two
    assert p.edit_text == "Elmo holding a"
    assert prompts.EvalPrompt("A photo of {} on the moon").edit_text == "A photo of on the moon"


def test_identity_ignores_where_and_how_a_job_runs():
    a = OmegaConf.to_container(_compose(), resolve=True)
    b = OmegaConf.to_container(_compose("sweep=other", "logger=none", "results_root=/elsewhere", "cpu_threads=2",
                                        "sample_streams=3"),
                               resolve=True)
    c = OmegaConf.to_container(_compose("method=two_word"), resolve=True)
    d = OmegaConf.to_container(_compose("eval.guidance=7.5"), resolve=True)
    assert results.identity(a) == results.identity(b)
    assert len({results.identity(x) for x in (a, c, d)}) == 3


def test_atomic_row_round_trip(tmp_path: Path):
    row = {"status": "ok", "metrics": {"reconstruction_clip": 0.5}, "nan": float("nan")}
    atomic.write_json(tmp_path / "result.json", row)
    back = results.read_row(tmp_path)
    assert back["metrics"] == row["metrics"] and back["nan"] != back["nan"]
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]   # no temp file left
    (tmp_path / "result.json").write_text('{"status": "ok", "metr')   # a torn write
    assert results.read_row(tmp_path) is None                          # -> the job runs again


def test_concept_all_means_every_built_in_concept():
    from hydra_plugins.tinv_hydra.tinv_hydra import expand_all
    assert expand_all("concept=all") == "concept=glob(*,exclude=[folder,dreambench*])"
    for untouched in ("concept=red_star", "method=all", "concept=glob(*)", "-m"):
        assert expand_all(untouched) == untouched


def test_concept_objects_and_styles_split_the_built_in_concepts_by_kind():
    """`concept=objects` / `styles` expand to globs that Hydra's config repo resolves to the
    concept files of that kind, together every built-in concept, each once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from analysis.collect import WILDCARD_VALUES
    from hydra_plugins.tinv_hydra.tinv_hydra import CONCEPT_SETS, concept_names, expand_all

    options = sorted(p.stem for p in (REPO / "conf" / "concept").glob("*.yaml"))

    def members(name):
        override = OverridesParser.create().parse_override(expand_all(f"concept={name}"))
        assert set(concept_names(name)) == set(override.value().filter(options))   # the suite counts by it
        return set(override.value().filter(options))

    kinds = {p.stem: yaml.safe_load(p.read_text())["kind"] for p in (REPO / "conf" / "concept").glob("*.yaml")}
    objects, styles, every = members("objects"), members("styles"), members("all")
    assert objects and styles and objects | styles == every and not objects & styles
    assert {kinds[n] for n in objects} == {"object"} and {kinds[n] for n in styles} == {"style"}
    assert not every & {"folder", "dreambench"}        # they need a path from the user
    assert WILDCARD_VALUES == set(CONCEPT_SETS)        # collect matches what the sweeper expands
    assert concept_names("red_star,blue_heart") == ["red_star", "blue_heart"]
    assert concept_names("white_circle") == ["white_circle"]


DREAMBENCH_FILE = """Classes

subject_name,class
bear_plushie,stuffed animal
dog2,dog

Prompts

Object Prompts

prompt_list = [
'a {0} {1} in the jungle'.format(unique_token, class_token),
'a cube shaped {0} {1}'.format(unique_token, class_token)
]

Live Subject Prompts

prompt_list = [
'a {0} {1} wearing a red hat'.format(unique_token, class_token)
]
"""


@pytest.mark.parametrize("subject, initializer, first_prompt", [
    ("bear_plushie", "animal", "a {} in the jungle"), ("dog2", "dog", "a {} wearing a red hat")])
def test_dreambench_subject_brings_its_class_word_and_prompts(tmp_path, subject, initializer, first_prompt):
    (tmp_path / "dataset" / subject).mkdir(parents=True)
    (tmp_path / "dataset" / "prompts_and_classes.txt").write_text(DREAMBENCH_FILE)
    cfg = OmegaConf.to_container(_compose("concept=dreambench", f"concept.root={tmp_path}",
                                          f"concept.subject={subject}", "model=sd15"), resolve=True)
    plan = job.make_plan(cfg, {})
    assert plan.concept.name == f"dreambench_{subject}"
    assert plan.concept.folder == tmp_path / "dataset" / subject
    assert plan.icfg.initializer_word == initializer
    assert plan.prompts[0].template == first_prompt and plan.prompts[0].fill("<S*>") == first_prompt.format("<S*>")
    cfg["concept"]["subject"] = "no_such_subject"
    with pytest.raises(job.InputError, match="no_such_subject"):
        job.make_plan(cfg, {})


def test_folder_concept_reads_captions_from_the_folder(tmp_path):
    (tmp_path / "captions.yaml").write_text("short: [a tabby cat]\nlong: [a tabby cat with a white chest]\n")
    cfg = OmegaConf.to_container(_compose("concept=folder", f"concept.path={tmp_path}",
                                          "concept.initializer=cat", "method=human_captions_long"),
                                 resolve=True)
    plan = job.make_plan(cfg, {})
    assert plan.fillers == ["a tabby cat with a white chest"]
    assert plan.cells()[0].text == "A photo of a tabby cat with a white chest"   # caption replaces S*
    cfg["concept"]["path"] = str(tmp_path / "elsewhere")
    with pytest.raises(job.InputError, match="captions"):
        job.make_plan(cfg, {})


def test_job_id_follows_the_weights_not_their_file_times(tmp_path: Path):
    cfg = OmegaConf.to_container(_compose(f"model.path={tmp_path / 'model'}"), resolve=True)
    (tmp_path / "model" / "unet").mkdir(parents=True)
    weights = tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"first weights")
    first = job.job_location(cfg)[0]
    os.utime(weights, (1, 1))                       # touched, same bytes: same job
    assert job.job_location(cfg)[0] == first
    weights.write_bytes(b"retrained weights")        # retrained in place: a new job
    assert job.job_location(cfg)[0] != first
