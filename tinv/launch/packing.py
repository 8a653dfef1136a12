"""Packing a sweep: several jobs' inversions through ONE `invert_packed` call.

The frozen model is shared: K concepts (or setups) learn in one process and one call, each
job's micro-batch through the UNet in its own batch shape (`one_batch`: all K in one UNet
batch of K x batch_size, for about the price of a few single ones; docs/speed.md, "Exact or
one batch"). Everything after the
inversion stays per job: `tinv.harness.job.run_job` samples, scores and writes the row exactly as
for an unpacked job. The hand-over is a tinv.harness.learned.Shares the launcher holds:
`packed_inversion` yields it with each job's share in it, the launcher passes it to the jobs'
task function (run.py's `packed=`), and each job takes its own where it would invert.

Equivalence: each set draws from its own generator and is trained under its own
placeholder (`<S*0>`, `<S*1>`, ...), renamed back to `<S*>` afterwards, and runs the UNet
in the batch shape it has alone, so a packed job learns bit for bit the vectors it learns
alone (tests/harness/test_packing.py); with `one_batch` only up to the float error of a
bigger UNet batch (the kernels are not batch invariant).

Checkpoints: a group checkpoints to `<results_root>/jobs/_packed/<hash of its job ids>/`
(in the job store: the group is named by its jobs, not by the sweep) and a rerun of the
same group resumes there. A group is the jobs not yet done, so after
an interruption between the inversion and the last row, the unfinished jobs form a new
group and invert again (their samples are not lost: none were written).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tinv.harness import joblock, learned, preflight, results
from tinv.harness.concepts import training_images
from tinv.core.errors import InputError
from tinv.harness.loading import choose_device, load_model, set_cpu_threads, set_sample_streams
from tinv.engine.progress import third_party as third_party_bars
from tinv.harness.plan import PLACEHOLDER, check_initializer, finished_row, job_location, make_plan

log = logging.getLogger(__name__)

# The fields that must match for jobs to share one model and one optimizer-step rhythm
# (invert_packed refuses mixed grad_accum / checkpoint_every).
_SHARED_INVERSION = ("grad_accum", "checkpoint_every")


def check_pack(size: int) -> int:
    """`hydra.launcher.pack` as an int, or a ValueError naming it (every launcher's check)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"hydra.launcher.pack={size!r} (an integer >= 1)")
    return size


def check_one_batch(value: Any) -> bool:
    """`hydra.launcher.one_batch` as a bool, or a ValueError naming it."""
    if not isinstance(value, bool):
        raise ValueError(f"hydra.launcher.one_batch={value!r} (true or false)")
    return value


# ----------------------------------------------------------------------------- configs
def resolve_tasks(launcher: Any, job_overrides, initial_job_idx: int) -> tuple[list, list[dict]]:
    """Each sweep job's Hydra config (hydra.job.id/num set) and the plain resolved config its
    task function will get, computed where the sweep is launched, so jobs can be grouped
    before any of them runs. Leaves HydraConfig as it found it."""
    import copy

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict, read_write
    before = HydraConfig.instance().cfg
    configs, tasks = [], []
    try:
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = idx
            HydraConfig.instance().set_config(config)   # for ${hydra:...} in the job's config
            task = copy.deepcopy(config)
            with read_write(task), open_dict(task):
                del task["hydra"]                        # what the task function gets
            configs.append(config)
            tasks.append(OmegaConf.to_container(task, resolve=True))
    finally:
        HydraConfig.instance().cfg = before
    return configs, tasks


# ----------------------------------------------------------------------------- grouping
def pack_key(cfg: dict) -> str | None:
    """Jobs with the same key can share one `invert_packed` call; None: the job runs alone
    (done already, does not learn, or bad input, which its own run then reports)."""
    return _packable(cfg)[0]


def _packable(cfg: dict):
    """(pack_key, the job's plan); the plan (its concept resolved once) is None where the key is."""
    try:
        plan = make_plan(cfg, {})
        if finished_row(job_location(cfg, plan.concept_files)[1]):
            return None, None
        preflight.check(cfg)
    except (InputError, KeyError, TypeError, ValueError):
        return None, None
    if plan.icfg is None or learned.stored(plan):   # nothing to learn, or learned already
        return None, None
    if plan.icfg.learner != "word":
        return None, None   # a successor trains the shared model or conditions per layer: it runs alone
    if plan.icfg.placeholder != PLACEHOLDER:
        return None, None   # packed words are renamed back to the default placeholder: another runs alone
    return json.dumps({"model": cfg["model"], "device": cfg.get("device", "auto"),
                       "where": cfg["results_root"],
                       **{k: getattr(plan.icfg, k) for k in _SHARED_INVERSION}},
                      sort_keys=True, default=str), plan


def schedule(cfgs: list[dict], pack: int) -> list[list[int]]:
    """The sweep's jobs (indices into `cfgs`) as units to run in order: groups of at most
    `pack` compatible learning jobs, in sweep order, and every other job alone. A unit runs
    where its first job stands in the sweep. A job that needs the same word as a job already
    grouped (they differ only in eval.*, or only after the word is learned: tinv.harness.learned)
    rides in that job's unit, after it, and reuses its word: one unit, so even units running at
    once on a cluster never wait on each other's inversion."""
    check_pack(pack)
    units: list[list[int]] = []
    open_group: dict[str, list[int]] = {}
    learners: dict[int, int] = {}          # id(unit) -> how many jobs it inverts
    unit_of: dict[str, list[int]] = {}     # inversion key -> the unit that inverts it
    for i, cfg in enumerate(cfgs):
        key, plan = _packable(cfg)
        if key is None:
            units.append([i])
            continue
        inversion = learned.key(plan)
        if inversion in unit_of:
            unit_of[inversion].append(i)
            continue
        group = open_group.get(key)
        if group is None or learners[id(group)] >= pack:
            group = open_group[key] = []
            learners[id(group)] = 0
            units.append(group)
        group.append(i)
        learners[id(group)] += 1
        unit_of[inversion] = group
    return units


# ----------------------------------------------------------------------------- the inversion
def packed_name(i: int) -> str:
    return f"<{PLACEHOLDER.strip('<>')}{i}>"


def renamed(result, i: int, icfg):
    """Set i's result as if it had been trained under the job's own placeholder."""
    old, new = packed_name(i)[:-1], PLACEHOLDER[:-1]          # "<S*3" -> "<S*" (and "<S*3-img0>")
    embeds = {name.replace(old, new, 1): v for name, v in result.embeds.items()}
    return dataclasses.replace(result, embeds=embeds, config=dataclasses.asdict(icfg), token_ids={})


@contextmanager
def packed_inversion(cfgs: list[dict], one_batch: bool = False) -> Iterator[learned.Shares]:
    """Invert the jobs of `cfgs` (plain configs of one group) together; yields their shares
    (tinv.harness.learned.Shares), which `tinv.harness.job.run_job(..., packed=shares)` of each
    job takes instead of inverting. If the packed inversion fails, the shares are empty and the
    jobs run alone (each then fails, or not, on its own row).
    one_batch: the jobs' micro-batches in one UNet call (faster; rows then equal the lone
    job's only to float error); else each job's in its own call, bit-identical to alone."""
    shares = learned.Shares()
    try:
        if len(cfgs) > 1:
            _invert_group(cfgs, shares, one_batch)
    except Exception:   # noqa: BLE001 - the jobs' own runs will report a real error
        log.exception("packed inversion of %d jobs failed; running them one by one", len(cfgs))
        shares.clear()
    try:
        yield shares
    finally:
        shares.clear()


def _invert_group(cfgs: list[dict], shares: learned.Shares, one_batch: bool = False) -> None:
    from tinv.engine.inversion import invert_packed
    plans, ids, folders, seen = [], [], [], set()
    for cfg in cfgs:
        plan = make_plan(cfg, {})
        job_id, folder = job_location(cfg, plan.concept_files)
        inversion = learned.key(plan) if plan.icfg is not None else None
        if inversion is None or inversion in seen or learned.stored(plan):
            continue        # learns nothing, or reuses another job's inversion (tinv.harness.learned)
        if joblock.held_elsewhere(folder) or joblock.held_elsewhere(learned.folder(plan)):
            continue        # another process computes it now: the job will wait for it
        seen.add(inversion)
        plans.append(plan)
        ids.append(job_id)
        folders.append(folder)
    if len(plans) < 2:      # nothing to pack: the job inverts alone, as unpacked
        return
    t0 = time.perf_counter()
    first = cfgs[0]
    device = choose_device(str(first.get("device", "auto")))
    set_cpu_threads(first.get("cpu_threads", "auto"), device)
    set_sample_streams(first.get("sample_streams", "auto"), device)
    third_party_bars(first.get("progress") is True)
    parts = load_model(first["model"], device)
    for plan in plans:
        check_initializer(plan, parts.tokenizer)
    root = Path(first["results_root"])
    sets = [(training_images(p, parts, root), dataclasses.replace(p.icfg, placeholder=packed_name(i)))
            for i, p in enumerate(plans)]
    # one_batch computes other floats: its checkpoint is another group's
    name = ",".join(ids) + ("|one_batch" if one_batch else "")
    ckpt = root / results.STORE / "_packed" / hashlib.sha256(name.encode()).hexdigest()[:12]
    log.info("packed inversion of %d jobs (%s) -> %s", len(ids), ", ".join(ids), ckpt)
    t = time.perf_counter()
    out = invert_packed(parts, sets, ckpt_dir=ckpt, progress=bool(first.get("progress", True)),
                        class_images=[learned.class_images(p, parts) for p in plans], one_batch=one_batch)
    group_s = time.perf_counter() - t
    for i, (res, plan, folder) in enumerate(zip(out, plans, folders)):
        shares.offer(folder, learned.Packed(ids[i], renamed(res, i, plan.icfg), group_s, ids, prep_s=t - t0,
                                            one_batch=one_batch))
