"""What a job is: the one policy for job ids and inversion keys.

A job's id is 12 hex digits of the sha256 of its resolved config (tinv.harness.plan.
effective_config) without the keys that say where and how it runs (NON_IDENTITY_KEYS), plus
the fingerprints of what it reads (the weights, the concept's files). The job store's keys
(tinv.harness.learned): a learned word's is the same without `eval` and `method`, plus the
InversionConfig (word_key); pivotal tuning's, without `eval` only, plus the InversionConfig
and PivotalConfig (inversion_key).

The rule that keeps computed rows found: a setting added after an identity was fixed counts
only where it differs from the value every earlier job had (its default). So
- a new field of InversionConfig, or of a learner's settings (tinv.engine.learners.specs),
  needs nothing: its dataclass default is the value earlier jobs had, and a field not in the
  frozen lists below counts only when set to something else;
- a new config key (conf/*.yaml: eval, model, concept, top level) goes into LATER with the
  value earlier jobs had; tests/harness/test_job_ids.py fails, naming this table, until it does;
- a checkpoint made before a field existed reads as made with its default
  (tinv.engine.inversion, `_Set.load_state`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping

# Top-level config keys that do not change what a job computes.
NON_IDENTITY_KEYS = ("sweep", "results_root", "logger", "progress", "cpu_threads", "sample_streams", "hydra",
                     "launcher", "cluster")
_DEFAULT_PLACEHOLDER = "<S*>"       # tinv.harness.validate.DEFAULT_PLACEHOLDER (a test keeps them equal)
# Config keys added after job ids were fixed -> the values that mean "as before": at one of
# them the key is left out of the job id.
LATER: dict[str, tuple] = {
    "concept.placeholder": (None, _DEFAULT_PLACEHOLDER),   # before it, every job's word was <S*>
    "eval.neti_truncation": (None,),                        # NeTI's truncation: unset = none
    "concept.heldout_path": (None,),                        # appendix B's held-out images: unset = none
}
# Evaluation-only concept keys: never in an inversion's key (a job with a held-out set reuses
# the inversion of the same job without one).
EVAL_ONLY_CONCEPT_KEYS = ("heldout_path",)
# InversionConfig's fields when each identity was fixed: a field outside the list counts only
# where it differs from its default. Job ids hash the YAML's inversion blocks as written;
# inversion keys hash the whole InversionConfig.
JOB_ID_INVERSION_FIELDS = frozenset((
    "placeholder", "initializer_word", "num_vectors", "init", "progressive_interval", "reg_weight", "reg_form",
    "per_image_tokens", "per_image_prob", "lr", "scale_lr", "weight_decay", "batch_size", "grad_accum",
    "n_devices", "steps", "seed", "templates", "style_noun", "center_crop", "flip_p", "checkpoint_every", "stop",
    "dvar_window", "dvar_threshold", "dvar_batch", "learner", "learner_args", "class_noun",
    "prior_preservation", "prior_loss_weight", "num_class_images", "class_prompt", "class_images"))
INVERSION_KEY_FIELDS = JOB_ID_INVERSION_FIELDS - {
    "learner", "learner_args", "class_noun", "prior_preservation", "prior_loss_weight", "num_class_images",
    "class_prompt", "class_images"}
PIVOTAL_KEY_FIELDS = frozenset(("params", "lr", "steps", "batch_size", "weight_decay", "flip_p", "seed",
                                "placeholder", "prompt"))      # PivotalConfig's


def digest(spec: Mapping[str, Any]) -> str:
    """12 hex digits of the sha256 of `spec` (NON_IDENTITY_KEYS removed, keys sorted)."""
    core = {k: v for k, v in spec.items() if k not in NON_IDENTITY_KEYS}
    blob = json.dumps(core, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def defaults(cls) -> dict[str, Any]:
    """A dataclass's field defaults (fields without one are left out)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _later_dropped(values: Mapping[str, Any], known: frozenset, cls) -> dict:
    """`values` without the fields of `cls` outside `known` that hold their default."""
    d = defaults(cls)
    return {k: v for k, v in values.items() if k in known or k not in d or v != d[k]}


def _inversion_config():
    from tinv.engine.inversion_config import InversionConfig     # light: no torch, no diffusers
    return InversionConfig


# The inversion key came after the placeholder setting: it hashes concept.placeholder as it is.
_NOT_LATER_FOR_INVERSIONS = ("concept.placeholder",)


def _config(cfg: Mapping[str, Any], later: Mapping[str, tuple]) -> dict:
    """`cfg` without the keys of `later` at an old value, and the inversion blocks without
    InversionConfig's later fields at their default."""
    spec = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in cfg.items()}
    for path, before in later.items():
        *parents, key = path.split(".")
        node: Any = spec
        for p in parents:          # copied on the way down: `cfg` stays as it was
            node[p] = dict(node[p]) if isinstance(node.get(p), Mapping) else node.get(p)
            node = node[p]
            if not isinstance(node, dict):
                break
        if isinstance(node, dict) and key in node and any(node[key] == b and type(node[key]) is type(b)
                                                           for b in before):
            node.pop(key)
    icls = _inversion_config()
    for section in ("model", "method"):
        block = (spec.get(section) or {}).get("inversion")
        if isinstance(block, Mapping):
            spec[section] = {**spec[section], "inversion": _later_dropped(block, JOB_ID_INVERSION_FIELDS, icls)}
    return spec


def job_spec(cfg: Mapping[str, Any], weights: str, concept: str | None, heldout: str | None = None) -> dict:
    """What a job's id hashes: the effective config (tinv.harness.plan.effective_config) with
    the later keys at their old value left out, and the fingerprints of what it reads (the
    held-out images' only when it has some)."""
    return {**_config(cfg, LATER), "_weights": weights, "_concept": concept,
            **({"_heldout": heldout} if heldout else {})}


def job_id(cfg: Mapping[str, Any], weights: str, concept: str | None, heldout: str | None = None) -> str:
    return digest(job_spec(cfg, weights, concept, heldout))


def inversion_key(cfg: Mapping[str, Any], weights: str, concept: str | None, icfg, pcfg) -> str:
    """The key of the inversion a job runs: the job's config without `eval` (as its id hashes
    it, but with the placeholder whatever its value), the InversionConfig (later fields at
    their default left out) and the PivotalConfig. Pivotal tuning's artifact is stored under it."""
    later = {k: v for k, v in LATER.items() if k not in _NOT_LATER_FOR_INVERSIONS}
    base = {k: v for k, v in _config(cfg, later).items() if k != "eval"}
    if isinstance(base.get("concept"), Mapping):
        base["concept"] = {k: v for k, v in base["concept"].items() if k not in EVAL_ONLY_CONCEPT_KEYS}
    spec = {**base, "_weights": weights, "_concept": concept,
            "_inversion": _later_dropped(dataclasses.asdict(icfg), INVERSION_KEY_FIELDS, type(icfg)),
            "_pivotal": _later_dropped(dataclasses.asdict(pcfg), PIVOTAL_KEY_FIELDS, type(pcfg))
            if pcfg is not None else None}
    return digest(spec)


def word_key(cfg: Mapping[str, Any], weights: str, concept: str | None, icfg) -> str:
    """The key of the learned word alone: inversion_key without `method` and without pivotal
    tuning. Everything a method sets for learning reaches the loop through its InversionConfig
    (tinv.methods.Kind.inversion_config), so setups that differ only after the word is learned
    (bipartite inversion and pivotal tuning start from the single word's) share one word."""
    return inversion_key({k: v for k, v in cfg.items() if k != "method"}, weights, concept, icfg, None)
