"""The job ids of the committed presets, computed from their composed configs without running
a job (the sweeper's expansion, Hydra's compose, tinv.harness.plan.job_location): the fixture
tests/harness/fixtures/job_ids.json pins them, so a change to how a job's identity is computed
that moves an existing job's id fails tests/harness/test_job_ids.py.

The weights' fingerprint is pinned to the one recorded in the fixture: retraining the toy
weights in place changes every id by design (loading.model_fingerprint), not by the id scheme.

    PYTHONPATH=$PWD python -m tests.harness.job_ids      # rewrite the fixture (after a deliberate change)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "job_ids.json"
MODELS = ("toyworld", "toyworld4")
EXPERIMENTS = ("quickstart", "successors", "successors_controls")
# Concepts a preset's committed example adds on the command line: the sweeps' example runs
# the quickstart's styles into its sweep (`concept=styles`, docs/results.md).
ADDED = {"quickstart": "styles"}
sys.path.insert(0, str(REPO))             # the tinv Hydra plugins (`concept=all`, the `experiment` group)
from hydra_plugins.tinv_hydra.tinv_hydra import concept_names  # noqa: E402

BUILT_IN = concept_names("all")


def _compose(overrides: list[str]) -> dict:
    sys.path.insert(0, str(REPO))         # the tinv Hydra plugins (the `experiment` group)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)


def jobs() -> list[tuple[str, list[str]]]:
    """(name, overrides) of every job: each preset's sweep (its methods x concepts) on each
    model, and the default job."""
    out = []
    for model in MODELS:
        out.append((f"{model}/default", [f"model={model}"]))
        for exp in EXPERIMENTS:
            params = yaml.safe_load((REPO / "experiments" / f"{exp}.yaml").read_text())["hydra"]["sweeper"]["params"]
            concepts = concept_names(params["concept"])
            if exp in ADDED:
                concepts += [c for c in concept_names(ADDED[exp]) if c not in concepts]
            for method in params["method"].split(","):
                for concept in concepts:
                    out.append((f"{model}/{exp}/{method}/{concept}",
                                [f"+experiment={exp}", f"model={model}", f"method={method}", f"concept={concept}"]))
    return out


def configs(full: bool, select=lambda name: True) -> dict[str, dict]:
    """Every job's composed config. `full`: one Hydra compose per job (about 0.15 s each);
    else one per (model, preset, method) and one per concept, the concept's block put in
    (what `concept=<c>` changes; `main` checks the two agree before it writes the fixture)."""
    if full:
        return {name: _compose(overrides) for name, overrides in jobs() if select(name)}
    blocks = {c: _compose([f"concept={c}"])["concept"] for c in BUILT_IN}
    base: dict[tuple, dict] = {}
    out = {}
    for name, overrides in jobs():
        if not select(name):
            continue
        key = tuple(o for o in overrides if not o.startswith("concept="))
        if key not in base:
            base[key] = _compose(list(key))
        concept = next((o.partition("=")[2] for o in overrides if o.startswith("concept=")), None)
        out[name] = base[key] if concept is None else {**base[key], "concept": blocks[concept]}
    return out


def compute(weights: dict[str, str] | None = None, full: bool = False, select=lambda name: True,
            edit=lambda cfg: cfg) -> dict:
    """{"weights": {model: fingerprint}, "ids": {job name: id}, "inversions": {job name: the key
    of its learned word in the job store (tinv.harness.learned.key), for jobs that learn},
    "tunings": {job name: the key of its pivotal tuning (learned.tuned_key), for jobs that tune}};
    `weights` pins the fingerprints; `select` picks jobs by name, `edit` changes each config."""
    from tinv.harness import learned, loading, plan
    real = loading.model_fingerprint
    pinned = dict(weights or {})

    def fingerprint(m):
        if m["name"] not in pinned:
            pinned[m["name"]] = real(m)
        return pinned[m["name"]]
    ids, keys, tunings = {}, {}, {}
    # the plan holds the weights' fingerprint (plan.model.weights) the inversion key reads
    with mock.patch.object(plan, "model_fingerprint", fingerprint):
        for name, cfg in configs(full, select).items():
            cfg = edit(cfg)
            p = plan.make_plan(plan.effective_config(cfg), {})     # as tinv.harness.job makes it
            ids[name] = plan.job_location(cfg, p.concept_files)[0]
            assert ids[name] == plan.job_location(cfg)[0]          # the plan's concept = the config's
            if p.icfg is not None:
                keys[name] = learned.key(p)
            if p.pcfg is not None:
                tunings[name] = learned.tuned_key(p)
    return {"weights": pinned, "ids": ids, "inversions": keys, "tunings": tunings}


def main() -> None:
    fast, full = configs(full=False), configs(full=True)
    wrong = [n for n in full if fast[n] != full[n]]
    assert not wrong, f"the concept block alone does not make these jobs' configs: {wrong[:5]}"
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(compute(full=True), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
