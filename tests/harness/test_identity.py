"""Job identity follows what the job reads: the concept's files, not only their path."""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image

from tinv.harness import plan

from .test_config import _compose


def _folder_cfg(folder: Path) -> dict:
    return OmegaConf.to_container(_compose("concept=folder", f"concept.path={folder}",
                                           "concept.initializer=cat"), resolve=True)


def test_replacing_a_concepts_images_changes_the_job_id(tmp_path):
    folder = tmp_path / "cat"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(folder / f"{i}.png")
    cfg = _folder_cfg(folder)
    first, place = plan.job_location(cfg)
    os.utime(folder / "0.png", (1, 1))                           # touched, same bytes: same job
    assert plan.job_location(cfg) == (first, place)
    Image.new("RGB", (16, 16), "blue").save(folder / "0.png")     # replaced in place: a new job
    second = plan.job_location(cfg)[0]
    assert second != first
    (folder / "captions.yaml").write_text("short: [a blue cat]\n")  # captions read from the folder
    assert plan.job_location(cfg)[0] not in (first, second)
    Image.new("RGB", (16, 16), "green").save(folder / "3.png")      # one more image
    assert len({first, second, plan.job_location(cfg)[0]}) == 3


def test_the_toy_evaluator_is_what_the_config_says_and_unused_settings_are_not_identity():
    a = OmegaConf.to_container(_compose(), resolve=True)                     # the toy world
    b = OmegaConf.to_container(_compose("eval.clip.model=ViT-L-14"), resolve=True)
    eff = plan.effective_config(a)
    assert eff["eval"]["clip"]["model"] == "toyworld" and eff["eval"]["dino"] is None
    assert plan.effective_config(eff) == eff
    assert plan.job_location(a)[0] == plan.job_location(b)[0]     # eval.clip is unused on the toy world
    sd = OmegaConf.to_container(_compose("model=sd15"), resolve=True)
    assert plan.effective_config(sd)["eval"]["clip"]["model"] == "ViT-B-32"


def _with_new_field(cls, name: str, default):
    """`cls` with one more field, as its author would add it."""
    import dataclasses
    return dataclasses.make_dataclass(cls.__name__, [(name, type(default), dataclasses.field(default=default))],
                                      bases=(cls,), frozen=cls.__dataclass_params__.frozen)


def test_a_new_setting_at_its_default_moves_no_job_id_or_inversion_key(monkeypatch):
    """A key added with a default (to InversionConfig, to a learner's settings, to eval, to the
    model) keeps every id of the presets' jobs (tests/harness/fixtures/job_ids.json); set to
    another value, it makes new jobs."""
    import dataclasses
    import json

    from tinv.engine import inversion_config
    from tinv.engine.learners import specs
    from tinv.harness import identity

    from .job_ids import FIXTURE, compute
    want = json.loads(FIXTURE.read_text())
    pick = lambda name: name.endswith("/red_star") or name.endswith("/default")     # noqa: E731
    monkeypatch.setattr(inversion_config, "InversionConfig",
                        _with_new_field(inversion_config.InversionConfig, "mask_weight", 0.0))
    neti = specs.LEARNERS["neti"]
    monkeypatch.setitem(specs.LEARNERS, "neti", dataclasses.replace(neti, args=_with_new_field(neti.args, "scale", 1.0)))
    monkeypatch.setitem(identity.LATER, "eval.min_snr", (None,))
    monkeypatch.setitem(identity.LATER, "model.offset_noise", (0.0,))

    def add(snr=None, offset=0.0, mask=None):
        def edit(cfg):
            cfg = {**cfg, "eval": {**cfg["eval"], "min_snr": snr}, "model": {**cfg["model"], "offset_noise": offset}}
            if mask is not None and cfg["method"].get("inversion") is not None:
                cfg["method"] = {**cfg["method"], "inversion": {**cfg["method"]["inversion"], "mask_weight": mask}}
            return cfg
        return edit
    got = compute(want["weights"], select=pick, edit=add(mask=0.0))
    assert len(got["ids"]) > 20 and len(got["inversions"]) > 10
    assert got["ids"] == {n: want["ids"][n] for n in got["ids"]}
    assert got["inversions"] == {n: want["inversions"][n] for n in got["inversions"]}
    # the positive control: each new key, set to another value, is a new job
    name = "toyworld/successors/neti/red_star"
    one = lambda n: n == name      # noqa: E731
    for edit in (add(snr=5.0), add(offset=0.1), add(mask=1.0)):
        assert compute(want["weights"], select=one, edit=edit)["ids"][name] != want["ids"][name]


def test_the_identity_policy_names_the_configs_default_placeholder_and_real_fields():
    import dataclasses

    from tinv.engine.inversion_config import InversionConfig
    from tinv.engine.pivotal import PivotalConfig
    from tinv.harness import identity, validate
    assert identity.LATER["concept.placeholder"][1] == validate.DEFAULT_PLACEHOLDER
    # the frozen lists name fields that exist (a field renamed or removed moves ids: the fixture says so)
    assert identity.JOB_ID_INVERSION_FIELDS <= {f.name for f in dataclasses.fields(InversionConfig)}
    assert identity.INVERSION_KEY_FIELDS < identity.JOB_ID_INVERSION_FIELDS
    assert identity.PIVOTAL_KEY_FIELDS <= {f.name for f in dataclasses.fields(PivotalConfig)}


def test_a_row_names_the_cpu_model_not_only_its_instruction_set(tmp_path):
    """Two CPUs can give a job's floats different last bits, so the row's device says which."""
    from tinv.harness import results
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")
    assert results.cpu_model(str(info)).startswith("AMD EPYC 7B13, ")
    assert results.cpu_model(str(tmp_path / "absent")) != ""          # no /proc: the ISA, as before
    assert results.device_name("cpu").startswith("cpu (") and "cores" in results.device_name("cpu")
