"""The plan: everything a job will do, checked without the model (concept, method,
prompts, cells, seeds), and where the job lands (its id and folder)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tinv.harness import identity, prompts as P, results, store
from tinv.harness.concepts import Concept, resolve_concept
from tinv.core.errors import InputError
from tinv.harness.loading import model_fingerprint
from tinv.methods import Kind, kind_of
from tinv.metrics.settings import EvalSettings, ModelSettings, eval_settings, model_settings
from tinv.harness.prompts import EvalPrompt
from tinv.harness.validate import DEFAULT_PLACEHOLDER, placeholder

if TYPE_CHECKING:
    import torch

PLACEHOLDER = DEFAULT_PLACEHOLDER


# ----------------------------------------------------------------------------- method
def inversion_config(cfg: Mapping[str, Any], concept: Concept):
    """The InversionConfig a job of `cfg` runs (None when its method learns nothing): the
    method's kind makes it (tinv.methods)."""
    return kind_of(cfg["method"]).inversion_config(cfg, concept, placeholder(cfg))


# ----------------------------------------------------------------------------- the plan
@dataclass
class Cell:
    """One set of samples scored together: a prompt, or a prompt x caption."""
    prompt: int                     # -1 = reconstruction, else index into the prompt list
    caption: int | None             # index of the human caption, if any
    text: str                       # what the model was asked (its label)
    images: torch.Tensor | None = None   # [S, 3, H, W] in [0, 1]
    texts: list[str] | None = None  # one text per seed where the seeds were asked different texts

    @property
    def key(self) -> str:
        base = "reconstruction" if self.prompt < 0 else f"p{self.prompt:02d}"
        return base if self.caption is None else f"{base}_c{self.caption}"


@dataclass
class Plan:
    cfg: dict
    concept: Concept                # resolved once per job: everything after reads this one
    recon: EvalPrompt
    prompts: list[EvalPrompt]
    fillers: list[str | None]       # what replaces {}: [placeholder], captions, or [""]
    icfg: Any = None                # InversionConfig when the method learns
    pcfg: Any = None                # PivotalConfig for pivotal tuning
    kind: Kind = field(default_factory=Kind)    # what the method does (tinv.methods)
    choices: dict = field(default_factory=dict)
    eval: EvalSettings | None = None    # the protocol, typed (sampling and metrics read it)
    model: ModelSettings | None = None  # what the model brings to it (evaluator, DINO, oracle, weights)
    concept_files: str | None = None    # the concept folder's fingerprint (the job id, the inversion's key, the row)

    @property
    def weights(self) -> str:
        """The model's fingerprint (tinv.harness.loading.model_fingerprint): what its samples depend on."""
        return self.model.weights

    @property
    def results_root(self) -> str:
        return str(self.cfg["results_root"])

    def cells(self) -> list[Cell]:
        out = []
        for p_i, p in enumerate([self.recon] + self.prompts):
            if self.kind.in_turn:
                # seed i under filler i mod n: one cell per prompt holding the protocol's seeds,
                # as every other setup's does (not n cells of them: n times the sampling)
                texts = [p.fill(self.fillers[i % len(self.fillers)]) for i in range(len(self.eval.seeds))]
                n = len(dict.fromkeys(texts))
                out.append(Cell(p_i - 1, None, f"{texts[0]} (+{n - 1} more in turn)" if n > 1 else texts[0],
                                texts=texts))
                continue
            for c_i, filler in enumerate(self.fillers):
                text = p.fill(filler) if filler is not None else p.template
                caption = c_i if self.kind.captions else None
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
    kind = kind_of(method)
    try:
        settings = eval_settings(cfg["eval"]), model_settings(cfg["model"], model_fingerprint(cfg["model"]))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"eval or model settings: {type(e).__name__}: {e}") from e
    plan = Plan(cfg, concept, recon, prompts, kind.fillers(method, concept, placeholder(cfg)), kind=kind,
                choices=choices, eval=settings[0], model=settings[1], concept_files=folder_fingerprint(concept.folder))
    plan.icfg = kind.inversion_config(cfg, concept, placeholder(cfg))
    plan.pcfg = kind.pivotal_config(cfg, plan.icfg, recon.template)
    return plan


def check_initializer(plan: Plan, tokenizer) -> None:
    """The initializer word must be ONE token the model knows: a word the tokenizer splits
    would start the learned vector from a fragment, and one it reads as [UNK] (LDM-BERT's
    vocabulary) from the unknown-word vector. Needs only the model's tokenizer (tinv.harness.tokens
    loads it alone, before the model)."""
    icfg = plan.icfg
    if icfg is None or icfg.init != "word" or not icfg.initializer_word:
        return
    word = icfg.initializer_word
    ids = tokenizer(word, add_special_tokens=False).input_ids
    pieces = tokenizer.convert_ids_to_tokens(ids)
    if len(ids) != 1:
        words = word.split()
        known = [w for w in words if len(tokenizer(w, add_special_tokens=False).input_ids) == 1
                 and tokenizer(w, add_special_tokens=False).input_ids[0] != tokenizer.unk_token_id]
        hint = f" (e.g. concept.initializer={known[-1]})" if len(words) > 1 and known else \
            " (a coarser word for the concept: cat, toy, sculpture, painting)"
        raise InputError(f"concept.initializer={word!r} is {len(ids)} tokens {pieces} for this model's "
                         f"tokenizer; give one word that is a single token{hint}")
    if tokenizer.unk_token_id is not None and ids[0] == tokenizer.unk_token_id:
        raise InputError(f"concept.initializer={word!r} is not in this model's vocabulary (its tokenizer "
                         f"reads it as {tokenizer.unk_token}); give a word the model knows (cat, toy, sculpture)")


# ----------------------------------------------------------------------------- where the job lands
def _plain(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def default_choices(cfg: dict) -> dict:
    return {"model": cfg["model"]["name"], "method": cfg["method"]["name"],
            "concept": cfg["concept"].get("name"), "eval": cfg["eval"]["name"],
            "logger": cfg["logger"]["name"]}


def effective_config(cfg: dict) -> dict:
    """The config as the job will run it: evaluator settings a model does not use are
    replaced by what it does use (the toy world scores with its own CLIP, not eval.clip;
    a model with `dino: false` computes no DINO), so the row says what was used and those
    settings do not split one job into several ids; an LDM-BERT model's initializer is
    lower-cased, as its tokenizer reads it. Idempotent."""
    e, m, c = dict(cfg["eval"]), cfg["model"], dict(cfg["concept"])
    if m.get("evaluator") == "toyworld":
        e["clip"] = {"model": "toyworld", "pretrained": "tinv/toyworld/weights/evaluator"}
    if not m.get("dino"):
        e["dino"] = None
    if m.get("family") == "ldm" and isinstance(c.get("initializer"), str):
        c["initializer"] = c["initializer"].lower()     # LDM-BERT lower-cases: Cat and cat are one job
    return {**cfg, "eval": e, "concept": c}


_CONCEPT_PRINTS: dict[str, str] = {}


def concept_fingerprint(c: Mapping[str, Any]) -> str | None:
    """The fingerprint of a concept config's folder (`folder_fingerprint`); None when the
    config names no folder that can be found (validation then names the problem)."""
    try:
        folder = resolve_concept(c).folder
    except (InputError, KeyError, TypeError, ValueError):
        return None
    return folder_fingerprint(folder)


def folder_fingerprint(folder: Path) -> str | None:
    """The sha256 of what the job reads from its concept folder: every file's name and bytes
    (images and captions), so replacing the images in place is a new job. None when the
    folder does not exist. Hashed once per process per (path, sizes, modification times)."""
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    stamp = str(folder) + "|" + ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    if stamp not in _CONCEPT_PRINTS:
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
        _CONCEPT_PRINTS[stamp] = "sha256:" + h.hexdigest()[:16]
    return _CONCEPT_PRINTS[stamp]


def heldout_fingerprint(c: Mapping[str, Any]) -> str | None:
    """concept_fingerprint of the concept.heldout_path folder (new held-out images: a new job)."""
    return concept_fingerprint({**c, "path": c["heldout_path"], "initializer": "-"})


_RESOLVE = object()


def job_location(cfg: dict, concept_files: str | None | object = _RESOLVE) -> tuple[str, Path]:
    """The job's id and folder. `concept_files`: the concept folder's fingerprint when the
    caller holds the plan already (plan.concept_files), else it is computed from the config."""
    # The id hashes the resolved config AND what the job reads: the weights (a fixed
    # model.path or the shipped toy world, retrained in place, is a different job) and
    # the concept's files (new images in the same folder are a different job).
    # What counts (and what a key added later must do to keep old ids): tinv.harness.identity.
    cfg = effective_config(cfg)
    c = cfg["concept"]
    # a held-out folder (evaluation only) counts by its files, as the concept's do
    files = concept_fingerprint(c) if concept_files is _RESOLVE else concept_files
    job_id = identity.job_id(cfg, model_fingerprint(cfg["model"]), files,
                             heldout=heldout_fingerprint(c) if c.get("heldout_path") else None)
    concept_name = c.get("name") or (f"dreambench_{c['subject']}" if c.get("subject") else None) \
        or Path(str(c.get("path") or "concept")).name
    # The folder is in the job store, whatever the sweep (tinv/harness/store.py: the sweep's view),
    # unless an old runs folder holds the job's own folder in the sweep's folder: the job
    # then stays there, as before the store (done, or resumed from its checkpoint there)
    folder = results.job_folder(cfg["results_root"], concept_name, cfg["method"]["name"], job_id)
    return job_id, store.legacy_folder(cfg["results_root"], cfg["sweep"], folder) or folder


def finished_row(folder: Path) -> dict | None:
    """The job's row if it finished ("ok"): then the job is done and does no work."""
    row = results.read_row(folder)
    return row if row and row.get("status") == "ok" else None
