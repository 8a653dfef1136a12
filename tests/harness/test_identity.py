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
