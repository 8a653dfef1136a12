"""One job: config -> concept and model -> invert -> sample -> score -> one result row.

Hydra stops here: `run_job` takes the composed config (a DictConfig or a plain dict)
and hands the engine plain values. The stages:

1. identity: the job folder is named by a hash of the config (tinv.results); a folder
   holding an "ok" row means the job is done, and its row is returned with no work.
2. validation: concept folder, model, method fields and prompts are checked BEFORE the
   job folder is made, so bad input raises InputError and leaves no row behind.
3. the work, timed: invert (when the method learns; pivotal tuning and DDIM inversion
   count here too), sample, evaluate. A failure here writes a row with status "failed".
   Under `hydra/launcher=packed` the inversion was done already, together with other
   jobs' (tinv/packing.py); the job takes its share and does the rest alone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from tinv import PACKAGE_DIR, prompts as P, results
from tinv.prompts import EvalPrompt

log = logging.getLogger(__name__)

PLACEHOLDER = "<S*>"
CAPTION_FILES = ("captions.yaml", "captions.yml", "captions.json")


class InputError(ValueError):
    """Bad input found before any work: the message names it; no row is written."""


# ----------------------------------------------------------------------------- concept
@dataclass
class Concept:
    name: str
    kind: str                      # object | style
    folder: Path
    initializer: str | None
    captions: dict | None = None   # {"short": [...], "long": [...]}
    attributes: dict | None = None  # toy world ground truth
    prompts: list[dict] | None = None  # a concept's own prompt list (DreamBench live subjects)


def _concept_path(path: str) -> Path:
    """Absolute paths as given; relative ones against the tinv package (built-in toy
    concepts ship there) when they exist there, else against the working directory."""
    p = Path(str(path)).expanduser()
    if p.is_absolute():
        return p
    return PACKAGE_DIR / p if (PACKAGE_DIR / p).exists() else p.resolve()


def _read_captions(folder: Path) -> dict | None:
    for name in CAPTION_FILES:
        f = folder / name
        if f.is_file():
            try:
                data = yaml.safe_load(f.read_text())   # YAML reads JSON too
            except yaml.YAMLError as e:
                raise InputError(f"captions file {str(f)!r} is not valid YAML/JSON: {e}") from e
            if not isinstance(data, dict) or not set(data) & {"short", "long"}:
                raise InputError(f"captions file {str(f)!r} must map 'short' and/or 'long' to "
                                 "lists of captions")
            return data
    return None


def read_dreambench(root: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """({subject: class}, {"object": [...], "live": [...]}) from prompts_and_classes.txt."""
    f = root / "dataset" / "prompts_and_classes.txt"
    if not f.is_file():
        raise InputError(f"DreamBench root {str(root)!r} has no dataset/prompts_and_classes.txt; "
                         "give concept.root=<a clone of github.com/google/dreambooth>")
    classes, lists, current = {}, {"object": [], "live": []}, None
    for line in f.read_text().splitlines():
        line = line.strip()
        if line.startswith("Object Prompts"):
            current = "object"
        elif line.startswith("Live Subject Prompts"):
            current = "live"
        elif current and line.startswith("'"):
            lists[current].append(line.split("'")[1].replace("{0} {1}", "{}"))
        elif current is None and "," in line and line != "subject_name,class":
            subject, cls = line.split(",", 1)
            classes[subject.strip()] = cls.strip()
    return classes, lists


def resolve_concept(c: Mapping[str, Any]) -> Concept:
    """The concept config as a Concept, or an InputError naming what is missing."""
    c = dict(c)
    prompts = None
    if c.get("subject") is not None and "root" in c:          # DreamBench
        if not c.get("root"):
            raise InputError("concept=dreambench needs the dataset: concept.root=<clone of "
                             "github.com/google/dreambooth> (or DREAMBENCH_ROOT)")
        root = Path(str(c["root"])).expanduser()
        classes, lists = read_dreambench(root)
        subject = str(c["subject"])
        if subject not in classes:
            raise InputError(f"DreamBench has no subject {subject!r}; choose one of {sorted(classes)}")
        cls = classes[subject]
        c.setdefault("name", None)
        c["name"] = c["name"] or f"dreambench_{subject}"
        c["path"] = c.get("path") or str(root / "dataset" / subject)
        c["initializer"] = c.get("initializer") or cls.split()[-1]
        live = cls in ("dog", "cat")
        if lists["live" if live else "object"]:
            prompts = [{"text": t, "source": "dreambench"} for t in lists["live" if live else "object"]]
    for key in ("path", "initializer"):
        if c.get(key) in (None, "???"):
            raise InputError(f"concept.{key} is required (e.g. concept=folder concept.path=/my/images "
                             f"concept.initializer=cat)")
    if c.get("kind", "object") not in ("object", "style"):
        raise InputError(f"concept.kind={c.get('kind')!r}: use object or style")
    folder = _concept_path(c["path"])
    captions = c.get("captions") or (_read_captions(folder) if folder.is_dir() else None)
    return Concept(name=c.get("name") or folder.name, kind=c.get("kind", "object"), folder=folder,
                   initializer=str(c["initializer"]), captions=captions,
                   attributes=c.get("attributes"), prompts=prompts)


# ----------------------------------------------------------------------------- model
def choose_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def set_cpu_threads(setting, device: str) -> int:
    """Torch's CPU threads: an int, or "auto" = the cores no one else is using (>= 1).

    On a shared machine this matters more than anything else: the toy model's many small
    ops each end in a thread barrier, and with one of two cores busy elsewhere a 2-thread
    forward pass measured 2.5 s where 1 thread took 9 ms.
    """
    if device.startswith("cuda") or setting in (None, "none"):
        return torch.get_num_threads()
    if setting == "auto":
        import os
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        setting = max(1, cores - int(os.getloadavg()[0] + 0.5))
    torch.set_num_threads(int(setting))
    return int(setting)


def _dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() \
            else torch.float32
    return getattr(torch, name)


def model_path(m: Mapping[str, Any]) -> str:
    if m.get("path"):
        return str(m["path"])
    from tinv.toyworld import MODEL_DIR
    return str(MODEL_DIR)


def load_model(m: Mapping[str, Any], device: str):
    """Parts for the model config: a hub id / folder, or "tiny:sd" / "tiny:ldm" for tests."""
    from tinv import models
    path = model_path(m)
    if path.startswith("tiny:"):
        build = {"sd": models.tiny_sd_parts, "ldm": models.tiny_ldm_parts}.get(path[5:])
        if build is None:
            raise InputError(f"model.path={path!r}: tiny models are tiny:sd and tiny:ldm")
        return build(device=device)
    try:
        return models.load_parts(path, family=m.get("family"), device=device,
                                 dtype=_dtype(m.get("dtype", "float32"), device))
    except ValueError as e:
        raise InputError(f"model {m.get('name')!r}: {e}") from e


_FINGERPRINTS: dict[str, str] = {}


def model_fingerprint(m: Mapping[str, Any]) -> str:
    """Names the weights a job runs on: a hub id as it is, a local folder by the sha256 of its
    weight and config files (so retrained toy weights never reuse old rows or samples, and a
    fresh clone of the same weights finds the same job ids). Hashed once per process."""
    path = model_path(m)
    folder = Path(path)
    if not folder.is_dir():
        return path
    files = sorted(f for f in folder.rglob("*") if f.suffix in (".safetensors", ".bin", ".json")
                   and f.name != "training.json")
    stamp = path + "|" + ";".join(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    if stamp not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes())
        _FINGERPRINTS[stamp] = "sha256:" + h.hexdigest()[:16]
    return _FINGERPRINTS[stamp]


# ----------------------------------------------------------------------------- method
def inversion_config(cfg: Mapping[str, Any], concept: Concept):
    """InversionConfig = defaults < model.inversion (budget) < method.inversion (setup)."""
    from tinv.inversion import InversionConfig
    method = cfg["method"]
    fields = {**dict(cfg["model"].get("inversion") or {}), **dict(method.get("inversion") or {})}
    known = {f.name for f in dataclasses.fields(InversionConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InputError(f"method {method['name']!r}: unknown inversion field(s) {unknown}; "
                         f"InversionConfig has {sorted(known)}")
    fields.update(seed=int(cfg["seed"]), templates=concept.kind, placeholder=PLACEHOLDER,
                  initializer_word=concept.initializer)
    if method.get("progressive_fraction"):
        steps = int(fields.get("steps", InversionConfig.steps))
        fields["progressive_interval"] = max(1, round(float(method["progressive_fraction"]) * steps))
    try:
        return InversionConfig(**fields)
    except (TypeError, ValueError) as e:
        raise InputError(f"method {method['name']!r}: {e}") from e


def pivotal_config(cfg: Mapping[str, Any], icfg, recon: EvalPrompt):
    from tinv.pivotal import PivotalConfig
    p = dict(cfg["method"]["pivotal"])
    frac = p.pop("steps_fraction", None)
    if frac is not None:
        p["steps"] = max(1, round(float(frac) * icfg.steps))
    p.setdefault("batch_size", icfg.batch_size)
    try:
        return PivotalConfig(**p, seed=icfg.seed, placeholder=icfg.placeholder, prompt=recon.template)
    except (TypeError, ValueError) as e:
        raise InputError(f"method {cfg['method']['name']!r}: pivotal settings {p}: {e}") from e


# ----------------------------------------------------------------------------- the plan
@dataclass
class Cell:
    """One set of samples scored together: a prompt, or a prompt x caption."""
    prompt: int                     # -1 = reconstruction, else index into the prompt list
    caption: int | None             # index of the human caption, if any
    text: str                       # what the model was asked
    images: torch.Tensor | None = None   # [S, 3, H, W] in [0, 1]

    @property
    def key(self) -> str:
        base = "reconstruction" if self.prompt < 0 else f"p{self.prompt:02d}"
        return base if self.caption is None else f"{base}_c{self.caption}"


@dataclass
class Plan:
    cfg: dict
    concept: Concept
    recon: EvalPrompt
    prompts: list[EvalPrompt]
    fillers: list[str | None]       # what replaces {}: [PLACEHOLDER], captions, or [""]
    icfg: Any = None                # InversionConfig when the method learns
    pcfg: Any = None                # PivotalConfig for pivotal tuning
    choices: dict = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        out = []
        for p_i, p in enumerate([self.recon] + self.prompts):
            for c_i, filler in enumerate(self.fillers):
                text = p.fill(filler) if filler is not None else p.template
                caption = c_i if self.cfg["method"].get("captions") else None
                out.append(Cell(p_i - 1, caption, text))
        return out


def make_plan(cfg: dict, choices: dict) -> Plan:
    """Everything checkable without the model; raises InputError."""
    concept = resolve_concept(cfg["concept"])
    method = cfg["method"]
    if concept.prompts is not None and not cfg["eval"].get("prompt_set"):
        cfg = {**cfg, "eval": {**cfg["eval"], "prompt_sets": {**cfg["eval"]["prompt_sets"],
                                                             "dreambench": concept.prompts}}}
    try:
        prompts = P.eval_prompts(cfg, concept.kind)
        recon = P.reconstruction_prompt(cfg, concept.kind)
    except (ValueError, KeyError) as e:
        raise InputError(str(e)) from e
    if not prompts:
        raise InputError(f"prompt list {P.prompt_set_name(cfg)!r} is empty")
    if method.get("captions"):
        which = method["captions"]
        caps = (concept.captions or {}).get(which)
        if not caps:
            raise InputError(f"method {method['name']!r} needs {which} captions for concept "
                             f"{concept.name!r}: add concept.captions.{which} (or a captions.yaml "
                             f"in {str(concept.folder)!r})")
        fillers = list(caps)
    elif method.get("reference") == "prompt_only":
        fillers = [""]
    elif method.get("reference") == "image_only":
        fillers = [None]
    else:
        fillers = [PLACEHOLDER]
    plan = Plan(cfg, concept, recon, prompts, fillers, choices=choices)
    if method.get("learns"):
        plan.icfg = inversion_config(cfg, concept)
        if method.get("pivotal"):
            plan.pcfg = pivotal_config(cfg, plan.icfg, recon)
    return plan


# ----------------------------------------------------------------------------- stages
def seeds(cfg: Mapping[str, Any]) -> list[int]:
    """The same noise seeds for every setup, prompt and concept (section 5.1)."""
    e = cfg["eval"]
    return list(range(int(e["seed"]), int(e["seed"]) + int(e["num_samples"])))


def generate(plan: Plan, parts, texts: list[str], progress: bool) -> list[torch.Tensor]:
    from tinv.sampling import sample
    e = plan.cfg["eval"]
    s = seeds(plan.cfg)
    images = sample(parts, texts, s, steps=int(e["steps"]), guidance=float(e["guidance"]),
                    eta=float(e["eta"]), batch_size=int(e["batch_size"]), progress=progress)
    return list(images.split(len(s)))


def prompt_only_cached(plan: Plan, parts, texts: list[str], cache_dir: Path,
                       progress: bool) -> list[torch.Tensor]:
    """Prompt-only samples do not depend on the concept or setup: one file per
    (model weights, text, seeds, sampler settings), shared by every job under results_root."""
    e = plan.cfg["eval"]
    spec = {"model": model_fingerprint(plan.cfg["model"]), "dtype": str(plan.cfg["model"].get("dtype")),
            "device": str(parts.device.type), "seeds": seeds(plan.cfg),
            **{k: e[k] for k in ("steps", "guidance", "eta")}}
    files = {t: cache_dir / (hashlib.sha256(json.dumps({**spec, "text": t}, sort_keys=True)
                                            .encode()).hexdigest()[:20] + ".pt") for t in texts}
    missing = [t for t in texts if not files[t].exists()]
    if missing:
        log.info("prompt-only: sampling %d uncached prompt(s)", len(missing))
        for t, imgs in zip(missing, generate(plan, parts, missing, progress)):
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = files[t].with_suffix(f".{time.time_ns()}.tmp")
            # uint8 as an image file holds it; +0.5 on load makes the round trip exact
            torch.save({"spec": {**spec, "text": t}, "images": (imgs * 255).to(torch.uint8)}, tmp)
            tmp.replace(files[t])
    return [(torch.load(files[t])["images"].float() + 0.5) / 255 for t in texts]


def training_images(plan: Plan, parts, results_root: Path):
    """The concept's images at the model's resolution; `train_images=N` keeps the first N.

    A built-in toy concept asked for more images than it ships renders the extra ones the
    way its own five were made (appendix B's set-size sweep goes to 25)."""
    from tinv.data import ConceptError, load_concept_images
    concept, n = plan.concept, plan.cfg.get("train_images")
    crop = bool(getattr(plan.icfg, "center_crop", False))
    try:
        images = load_concept_images(concept.folder, parts.resolution, crop)
        if n and n > len(images):
            concept.folder = _render_toy_concept(concept, int(n), results_root, len(images))
            images = load_concept_images(concept.folder, parts.resolution, crop)
    except ConceptError as e:
        raise InputError(f"concept {concept.name!r}: {e}") from e
    if n:
        if n < 1:
            raise InputError(f"train_images={n}: give a count >= 1 (or null for all)")
        images.pixels, images.paths = images.pixels[:n], images.paths[:n]
    return images


def _render_toy_concept(concept: Concept, n: int, results_root: Path, have: int) -> Path:
    try:
        from tinv.toyworld import concepts as toy
        from tinv.toyworld.render import render
    except ImportError:
        toy = None
    if toy is None or concept.name not in toy.CONCEPTS:
        raise InputError(f"train_images={n} but concept {concept.name!r} has only {have} images "
                         f"in {str(concept.folder)!r}")
    folder = results_root / "_cache" / "toyworld_concepts" / f"{concept.name}-{n}"
    if len(list(folder.glob("*.png"))) != n:
        tmp = folder.with_name(folder.name + f".{time.time_ns()}.tmp")
        tmp.mkdir(parents=True)
        for i in range(n):   # seeds as tinv.toyworld.concepts.write: the first five match
            render(toy.image_attributes(concept.name, i), seed=1000 + i).save(tmp / f"{i:02d}.png")
        if folder.exists():
            import shutil
            shutil.rmtree(folder)
        tmp.rename(folder)
    return folder


def pivotal_moved(before: float, after: float) -> float:
    """Relative fall of the fixed-batch loss over the pivotal stage (negative if it rose)."""
    return (before - after) / before if before and before == before else float("nan")


def export_embeddings(result, folder: Path) -> dict:
    """The learned vectors in the diffusers, AUTOMATIC1111 and authors' formats."""
    from tinv.embeddings_io import export_result
    return dict(export_result(result, folder))


def save_grids(cells: list[Cell], folder: Path) -> dict[str, Path]:
    from torchvision.utils import save_image
    folder.mkdir(parents=True, exist_ok=True)
    grids = {}
    for c in cells:
        path = folder / f"{c.key}.png"
        save_image(c.images, path, nrow=min(8, len(c.images)), padding=1)
        grids[c.key] = path
    return grids


# ----------------------------------------------------------------------------- the job
def _plain(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def default_choices(cfg: dict) -> dict:
    return {"model": cfg["model"]["name"], "method": cfg["method"]["name"],
            "concept": cfg["concept"].get("name"), "eval": cfg["eval"]["name"],
            "logger": cfg["logger"]["name"]}


def job_location(cfg: dict) -> tuple[str, Path]:
    # The id hashes the resolved config AND the weights behind it: a fixed model.path or
    # the shipped toy world, retrained in place, is a different job.
    job_id = results.identity({**cfg, "_weights": model_fingerprint(cfg["model"])})
    c = cfg["concept"]
    concept_name = c.get("name") or (f"dreambench_{c['subject']}" if c.get("subject") else None) \
        or Path(str(c.get("path") or "concept")).name
    return job_id, results.job_folder(cfg["results_root"], cfg["sweep"], concept_name,
                                      cfg["method"]["name"], job_id)


def finished_row(folder: Path) -> dict | None:
    """The job's row if it finished ("ok"): then the job is done and does no work."""
    row = results.read_row(folder)
    return row if row and row.get("status") == "ok" else None


def run_job(cfg, choices: dict | None = None) -> dict:
    """Run (or find) one job and return its result row. InputError: nothing written."""
    cfg = _plain(cfg)
    start, t0 = results.now(), time.perf_counter()
    job_id, folder = job_location(cfg)
    done = finished_row(folder)
    if done:
        log.info("job %s is done already: %s", job_id, folder / results.ROW_NAME)
        return done
    choices = {**default_choices(cfg), **(choices or {})}
    plan = make_plan(cfg, choices)
    device = choose_device(str(cfg.get("device", "auto")))
    log.info("torch CPU threads: %d", set_cpu_threads(cfg.get("cpu_threads", "auto"), device))
    parts = load_model(cfg["model"], device)
    images = training_images(plan, parts, Path(cfg["results_root"]))

    from tinv.wandb_log import tracking
    folder.mkdir(parents=True, exist_ok=True)
    row = {"schema": results.SCHEMA, "job_id": job_id, "status": "running", "error": None,
           "sweep": cfg["sweep"], "choices": choices, "config": cfg,
           "folder": str(folder.resolve()), "timings": {}}
    log.info("job %s (%s on %s) -> %s", job_id, choices["method"], plan.concept.name, folder)
    try:
        with tracking(cfg["logger"], folder, name=f"{plan.concept.name}-{choices['method']}",
                      group=cfg["sweep"], job_type=choices["method"],
                      tags=[f"method:{choices['method']}", f"concept:{plan.concept.name}",
                            f"model:{choices['model']}"], config=cfg) as tracker:
            row.update(execute(plan, parts, images, folder, device, bool(cfg.get("progress", True)),
                               tracker, row["timings"]))
            row["timings"]["total_s"] = _total_s(row["timings"], t0)
            row["status"] = "ok"
            tracker.summary({**row["metrics"], **{f"time/{k}": v for k, v in row["timings"].items()}})
    except Exception as e:
        # A failed row tells collect.py what went wrong; the next run tries the job again.
        # An interrupt (SIGTERM, Ctrl-C) writes nothing: the requeued job resumes instead.
        row.update(status="failed", error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc(limit=20))
        row["timings"]["total_s"] = _total_s(row["timings"], t0)   # with the stages that finished
        _write_row(row, folder, device, start)
        raise
    _write_row(row, folder, device, start)
    log.info("job %s: %s", job_id, {k: round(v, 4) for k, v in row["metrics"].items()})
    return row


def _write_row(row: dict, folder: Path, device: str, start: str) -> None:
    row["provenance"] = results.provenance(device, start, weights=model_fingerprint(row["config"]["model"]))
    results.write_json_atomic(folder / results.ROW_NAME, row)


def _total_s(timings: dict, t0: float) -> float:
    """Wall time since the job started, plus its share of a packed inversion (run before)."""
    from tinv.packing import share_s
    return time.perf_counter() - t0 + share_s(timings)


def execute(plan: Plan, parts, images, folder: Path, device: str, progress: bool, tracker,
            timings: dict) -> dict:
    """invert -> sample -> evaluate; returns the row's metrics, artifacts, ...; fills
    `timings` stage by stage, so a failed row shows how far the job got."""
    cfg, method = plan.cfg, plan.cfg["method"]
    artifacts: dict[str, Any] = {}
    training: dict[str, Any] = {}
    train01 = (images.pixels + 1) / 2

    t = time.perf_counter()
    packed = None
    if plan.icfg is not None:
        from tinv import packing
        from tinv.inversion import invert
        packed = packing.take(folder)      # inverted already, with other jobs (tinv/packing.py)
        result = packing.adopt(parts, packed) if packed else \
            invert(parts, images, plan.icfg, ckpt_dir=folder / "checkpoint", progress=progress)
        training = {"steps": result.steps, "lr_effective": result.lr_effective, "lr_rule": result.lr_rule,
                    "loss_first": result.losses[0] if result.losses else None,
                    "loss_last": result.losses[-1] if result.losses else None,
                    "eval_loss_before": result.eval_loss_before, "eval_loss_after": result.eval_loss_after,
                    "embedding_norm": result.embedding_norm, "embedding_dist_init": result.embedding_dist_init,
                    "notes": dict(result.notes)}
        results.write_json_atomic(folder / "losses.json", {"losses": result.losses,
                                                           "diffusion_losses": result.diffusion_losses})
        artifacts["losses"] = "losses.json"
        tracker.log_losses(result.losses)
        exported = export_embeddings(result, folder / "embeddings")
        artifacts["embeddings"] = {k: str(Path(v).relative_to(folder)) for k, v in exported.items()}
        if plan.pcfg is not None:
            from tinv.pivotal import pivotal_tune, save_tuned
            piv = pivotal_tune(parts, images, plan.pcfg, progress=progress)
            save_tuned(parts, piv, folder / "embeddings", plan.pcfg)
            training["pivotal"] = {"steps": plan.pcfg.steps, "lr": plan.pcfg.lr, "params": plan.pcfg.params,
                                   "tuned_tensors": len(piv.tuned),
                                   "loss_last": piv.losses[-1] if piv.losses else None,
                                   "eval_loss_before": piv.eval_loss_before,
                                   "eval_loss_after": piv.eval_loss_after}
            moved = pivotal_moved(piv.eval_loss_before, piv.eval_loss_after)
            if moved < 0.01:   # a pivotal row that equals single-word's must say why
                training["notes"]["pivotal"] = (
                    f"the pivotal stage moved the fixed-batch loss by {moved:.2%} (< 1%): the tuned UNet is "
                    f"practically the untuned one; raise model.calibration.pivotal.lr or .steps")
    timings["invert_s"] = time.perf_counter() - t
    if packed:
        timings.update(packing.timings(packed, timings["invert_s"]))

    t = time.perf_counter()
    cells = plan.cells()
    texts = [c.text for c in cells]
    if method.get("reference") == "image_only":
        for c in cells:
            c.images = train01
    elif method.get("bipartite"):
        from tinv.data import cache_latents
        from tinv.ddim_inversion import bipartite
        t_inv = time.perf_counter()
        latents = cache_latents(parts, images).mean[:, 0]
        res = bipartite(parts, latents, texts, [float(cfg["eval"]["guidance"])], PLACEHOLDER,
                        steps=int(cfg["eval"]["steps"]), progress=progress, source_prompt=plan.recon.template)
        for c, imgs in zip(cells, res.images[0]):
            c.images = imgs
        training["bipartite_s"] = time.perf_counter() - t_inv
    elif method.get("reference") == "prompt_only":
        cache = Path(cfg["results_root"]) / "_cache" / "prompt_only"
        for c, imgs in zip(cells, prompt_only_cached(plan, parts, texts, cache, progress)):
            c.images = imgs
    else:
        for c, imgs in zip(cells, generate(plan, parts, texts, progress)):
            c.images = imgs
    grids = save_grids(cells, folder / "samples")
    artifacts["samples"] = {k: str(p.relative_to(folder)) for k, p in grids.items()}
    tracker.log_images(grids)
    timings["sample_s"] = time.perf_counter() - t

    t = time.perf_counter()
    from tinv.metrics.protocol import evaluate
    scored = evaluate(plan, cells, train01, device)
    if "embedding_norm" in training:   # where the word went, beside what it draws
        scored["metrics"].update(embedding_norm=training["embedding_norm"],
                                 embedding_dist_init=training["embedding_dist_init"])
    timings["evaluate_s"] = time.perf_counter() - t
    tracker.log_table(scored["per_prompt"])
    return {**scored, "artifacts": artifacts, "training": training,
            "concept": {"name": plan.concept.name, "kind": plan.concept.kind,
                        "folder": str(plan.concept.folder), "initializer": plan.concept.initializer,
                        "n_images": len(images)},
            "eval_protocol": {"prompt_set": P.prompt_set_name(cfg), "seeds": [seeds(cfg)[0], len(seeds(cfg))],
                              "reconstruction_prompt": plan.recon.template,
                              "editability_text": "prompt with the placeholder deleted",
                              "editability_paper": "editability_clip_meanemb",
                              "evaluator": (cfg["eval"]["clip"] if cfg["model"]["evaluator"] == "clip"
                                            else "toyworld")}}
