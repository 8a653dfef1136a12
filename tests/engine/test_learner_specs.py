"""The learner registry (tinv/engine/learners/specs.py): each learner declared once, and what
reads it (the config check, the suite, the analysis) sees the same learners, settings and rules."""
from __future__ import annotations

import importlib

import pytest
import yaml

from tinv.engine.inversion_config import InversionConfig
from tinv.engine.learners import specs
from tinv.harness import validate

from ..harness.conftest import REPO


@pytest.mark.parametrize("spec", specs.SUCCESSORS, ids=lambda s: s.name)
def test_each_learner_is_its_module_its_setup_and_its_settings(spec):
    mod = importlib.import_module(f"tinv.engine.learners.{spec.module}")
    assert mod.LEARNER.name == spec.name
    method = yaml.safe_load((REPO / "conf" / "method" / f"{spec.method}.yaml").read_text())
    assert method["inversion"]["learner"] == spec.name and method["name"] == spec.method
    # the settings a setup states are settings of its learner, each within its rule
    stated = {k: v for k, v in (method["inversion"].get("learner_args") or {}).items()
              if not (isinstance(v, str) and v.startswith("${"))}
    assert specs.check_args(spec.name, stated) == []
    assert spec.label and spec.label != spec.name


def test_a_setting_out_of_its_range_is_named_with_its_rule():
    assert specs.check_args("lora", {"rank": 0}) == ["learner_args.rank=0 must be a whole number >= 1, e.g. 4"]
    assert "must be true or false" in specs.check_args("dreambooth", {"train_text_encoder": "yes"})[0]
    assert "is not a setting of learner 'neti'" in specs.check_args("neti", {"rank": 4})[0]
    with pytest.raises(ValueError, match="nested_dropout_prob=1.5 must be a number >= 0 and <= 1"):
        InversionConfig(initializer_word="cat", learner="neti", learner_args={"nested_dropout_prob": 1.5})


def test_the_config_check_reads_its_rules_from_the_dataclasses():
    # a field, its default and its range are written once: the rule's example is the default
    assert float(validate.INVERSION["lr"].example) == InversionConfig.lr == 5e-3
    assert set(validate.INVERSION) <= {f for f in InversionConfig.__dataclass_fields__}
    assert all(validate.INVERSION["learner"].ok(n) for n in specs.LEARNERS)
    assert not validate.INVERSION["learner"].ok("lora2")
    # each successor's calibration: its learner's settings and the loop's, by the same rules
    for s in specs.SUCCESSORS:
        assert validate.FIELDS[f"model.calibration.{s.method}.steps"] is validate.INVERSION["steps"]
    bad = validate.problems({"model": {"calibration": {"dreambooth_lora": {"rank": 0, "lr": -1.0}}}})
    assert sorted(p.split("=")[0] for p in bad) == ["model.calibration.dreambooth_lora.lr",
                                                    "model.calibration.dreambooth_lora.rank"]


def test_the_suite_and_the_analysis_list_the_registrys_learners():
    from analysis import style
    from tinv.tools.suite import parts
    assert parts.SUCCESSORS == tuple(specs.LEARNERS)
    assert {s.method for s in specs.SUCCESSORS} <= set(parts.DRYRUN_METHODS)
    assert style.SUCCESSORS == tuple(s.method for s in specs.SUCCESSORS)
    assert [style.style(s.method).label for s in specs.SUCCESSORS] == [s.label for s in specs.SUCCESSORS]
    assert len({style.style(s.method).color for s in specs.SUCCESSORS}) == len(specs.SUCCESSORS)
