"""Concept resolution: a concept config -> a Concept (folder, initializer, captions), and
the concept's training images at the model's resolution."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from tinv import PACKAGE_DIR

from tinv.core import atomic
from tinv.core.errors import InputError

log = logging.getLogger(__name__)

CAPTION_FILES = ("captions.yaml", "captions.yml", "captions.json")


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
    heldout: Path | None = None    # concept.heldout_path: images no training set uses (reconstruction_clip_heldout)


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
    heldout = _concept_path(c["heldout_path"]) if c.get("heldout_path") else None
    return Concept(name=c.get("name") or folder.name, kind=c.get("kind", "object"), folder=folder,
                   initializer=str(c["initializer"]), captions=captions,
                   attributes=c.get("attributes"), prompts=prompts, heldout=heldout)


# ----------------------------------------------------------------------------- images
def training_images(plan, parts, results_root: Path):
    """The concept's images at the model's resolution; `train_images=N` keeps the first N.
    `plan` is a tinv.harness.plan.Plan (not imported: the plan imports this module).

    A built-in toy concept asked for more images than it ships renders the extra ones the
    way its own five were made (appendix B's set-size sweep goes to 25)."""
    from tinv.engine.data import ConceptError, load_concept_images
    concept, n = plan.concept, plan.cfg.get("train_images")
    crop = bool(getattr(plan.icfg, "center_crop", False))
    try:
        images = load_concept_images(concept.folder, parts.resolution, crop)
        if n and n > len(images):
            concept.folder = _render_toy_concept(concept, int(n), results_root, len(images))
            images = load_concept_images(concept.folder, parts.resolution, crop)
    except ConceptError as e:
        raise InputError(f"concept {concept.name!r}: {e}") from e
    _warn_small(images.paths, parts.resolution)
    if n:
        if n < 1:
            raise InputError(f"train_images={n}: give a count >= 1 (or null for all)")
        images.pixels, images.paths = images.pixels[:n], images.paths[:n]
    return images


def _warn_small(paths: list[Path], resolution: int) -> None:
    """An image far below the model's resolution is upscaled into a blur the word then
    learns; it trains, so it is a warning, not an error."""
    from PIL import Image
    small = []
    for p in paths:
        with Image.open(p) as im:
            if min(im.size) < resolution / 4:
                small.append(f"{p.name} ({im.size[0]}x{im.size[1]})")
    if small:
        log.warning("concept images far below the model's %d px are upscaled to blurs the word learns: %s",
                    resolution, ", ".join(small))


def scan_images(plan) -> int:
    """Read every file of the concept folder (junk named at once) before any model loads, and
    check `train_images`; returns how many images the job will train on."""
    from tinv.engine.data import ConceptError, load_concept_images
    concept, n = plan.concept, plan.cfg.get("train_images")
    try:
        have = len(load_concept_images(concept.folder, 8))   # decoded in full; the size is the model's later
    except ConceptError as e:
        raise InputError(f"concept {concept.name!r}: {e}") from e
    if n and n > have and not _toy_concept(concept.name):
        raise InputError(f"train_images={n} but concept {concept.name!r} has only {have} images "
                         f"in {str(concept.folder)!r}; give train_images={have} or fewer (or null for all)")
    if n and _toy_concept(concept.name):
        from tinv.toyworld import concepts as toy
        if n > toy.HELDOUT_FIRST:
            raise InputError(f"train_images={n}: a built-in toy concept trains on at most {toy.HELDOUT_FIRST} "
                             "images (the ones after are its held-out set)")
    if concept.heldout is not None:
        _scan_heldout(concept)
    return int(n) if n else have


def _scan_heldout(concept: Concept) -> None:
    """concept.heldout_path: a readable image folder that shares no image with the training set
    (a held-out image the word trained on would score its own training)."""
    from tinv.engine.data import ConceptError, load_concept_images
    try:
        held = load_concept_images(concept.heldout, 8).paths
    except ConceptError as e:
        raise InputError(f"concept.heldout_path: {e}") from e
    if concept.heldout.resolve() == concept.folder.resolve():
        raise InputError(f"concept.heldout_path={str(concept.heldout)!r} is the concept's own folder; "
                         "give a folder of other images of the concept")
    trained = {p.read_bytes() for p in load_concept_images(concept.folder, 8).paths}
    shared = [p.name for p in held if p.read_bytes() in trained]
    if shared:
        raise InputError(f"concept.heldout_path={str(concept.heldout)!r} holds training images of concept "
                         f"{concept.name!r} ({', '.join(shared)}); held-out images must be other images")


def heldout_images(plan, parts, results_root: Path):
    """(images at the model's resolution, where they come from) for reconstruction against one
    fixed held-out set, the same for every `train_images`; (None, why not) without one.

    concept.heldout_path when given; a built-in toy concept renders its own (images
    HELDOUT_FIRST.. of its sequence, tinv.toyworld.concepts); other concepts have none."""
    from tinv.engine.data import ConceptError, load_concept_images
    concept = plan.concept
    crop = bool(getattr(plan.icfg, "center_crop", False))
    if concept.heldout is not None:
        folder = concept.heldout
    elif _toy_concept(concept.name) and _is_builtin(concept):
        folder = _render_toy_heldout(concept.name, results_root)
    else:
        return None, "none: no concept.heldout_path (a folder of other images of the concept), so no " \
                     "reconstruction_clip_heldout"
    try:
        images = load_concept_images(folder, parts.resolution, crop)
    except ConceptError as e:
        raise InputError(f"concept {concept.name!r}, held-out images: {e}") from e
    return images, f"{len(images)} images in {folder}"


def _is_builtin(concept: Concept) -> bool:
    """A built-in toy concept, not a user's folder that happens to share its name."""
    from tinv.toyworld import concepts as toy
    return concept.attributes is not None and dict(concept.attributes) == toy.CONCEPTS[concept.name]["attributes"]


def _render_toy_heldout(name: str, results_root: Path) -> Path:
    from tinv.toyworld import concepts as toy
    folder = Path(results_root) / "_cache" / "toyworld_concepts" / f"{name}-heldout"
    if len(list(folder.glob("*.png"))) != toy.N_HELDOUT:
        import shutil
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        with atomic.replacing_dir(folder, keep_existing=True) as tmp:
            for i in toy.heldout_indices():
                toy.render_image(name, i).save(tmp / f"{i:05d}.png")
    return folder


def _toy_concept(name: str) -> bool:
    try:
        from tinv.toyworld import concepts as toy
    except ImportError:
        return False
    return name in toy.CONCEPTS


def _render_toy_concept(concept: Concept, n: int, results_root: Path, have: int) -> Path:
    try:
        from tinv.toyworld import concepts as toy
    except ImportError:
        toy = None
    if toy is None or concept.name not in toy.CONCEPTS:
        raise InputError(f"train_images={n} but concept {concept.name!r} has only {have} images "
                         f"in {str(concept.folder)!r}")
    folder = results_root / "_cache" / "toyworld_concepts" / f"{concept.name}-{n}"
    if len(list(folder.glob("*.png"))) != n:
        import shutil
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)     # a partial folder of an older layout
        # keep_existing: another worker of the sweep rendered the same images first
        with atomic.replacing_dir(folder, keep_existing=True) as tmp:
            for i in range(n):   # as tinv.toyworld.concepts.write: the first five match
                toy.render_image(concept.name, i).save(tmp / f"{i:02d}.png")
    return folder
