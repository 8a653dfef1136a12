"""The command line before Hydra runs: every override read and applied once, and each of
Hydra's own errors turned into one InputError that names the override, the valid keys
or options, and the closest one.

Hydra reports a misspelled field as "not in struct" with the advice to add it with `+`
(which would make a job that silently ignores it), an unreadable value as a lexer
exception, and both with exit code 1; here each is one sentence, and run.py exits 2.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from tinv.core.errors import InputError

HYDRA_GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


# ----------------------------------------------------------------------------- did you mean
def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def _prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n].lower() == b[n].lower():
        n += 1
    return n


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option nearest `word`: one it begins (toy: toyworld), else the fewest edits, then
    the longest shared prefix (sd16: sd15, not sd21); None when nothing is near (more edits
    than half the word)."""
    w = word.lower()
    ranked = sorted(options, key=lambda o: (not o.lower().startswith(w), edit_distance(w, o.lower()),
                                            -_prefix(w, o), o))
    if not ranked:
        return None
    best = ranked[0]
    near = edit_distance(word.lower(), best.lower()) <= max(1, len(word) // 2)
    return best if near or best.lower().startswith(w) or w.startswith(best.lower()) else None


def _did_you_mean(word: str, options: Iterable[str], spell=lambda o: o) -> str:
    near = closest(word, options)
    return f" (did you mean {spell(near)}?)" if near else ""


# ----------------------------------------------------------------------------- the checks
def parse(args: list[str]) -> list:
    """Hydra's parsed overrides, or an InputError naming the one it cannot read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    parser = OverridesParser.create()
    out = []
    for arg in args:
        try:
            out.extend(parser.parse_overrides([arg]))
        except Exception as e:  # noqa: BLE001 - Hydra's parse errors have several classes
            key, _, value = arg.partition("=")
            hint = (f"; quote the value for Hydra: '{key}=\"{value}\"'" if value and '"' not in value else "")
            raise InputError(f"{arg!r} is not an override Hydra can read ({_first_line(e)}){hint}; the "
                             f"grammar: {HYDRA_GRAMMAR}") from e
    return out


def check_choices(overrides: list, groups: dict[str, Path]) -> None:
    """Every option named for a config group exists (in every value of a sweep)."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob
    for o in overrides:
        folder = groups.get(o.key_or_group)
        if folder is None or o.is_delete() or isinstance(o.value(), Glob):
            continue
        value = o.value()
        values = value.list if isinstance(value, ChoiceSweep) else [value]
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        for v in values:
            if isinstance(v, str) and v not in options:
                raise InputError(f"{o.key_or_group}={v}: no such {o.key_or_group}{_did_you_mean(v, options)}; "
                                 f"the options: {', '.join(options)}")


def _first_values(overrides: list, groups: dict[str, Path]) -> list[str]:
    """The overrides as one job of the sweep would get them (each sweep's first value)."""
    from hydra.core.override_parser.types import Glob
    out = []
    for o in overrides:
        if not o.is_sweep_override():
            out.append(o.input_line)
            continue
        if isinstance(o.value(), Glob):
            folder = groups.get(o.key_or_group)
            if folder is None:
                continue
            matches = o.value().filter(sorted(p.stem for p in folder.glob("*.yaml")))
            if not matches:
                raise InputError(f"{o.input_line}: matches no {o.key_or_group}")
            first = matches[0]
        else:
            first = next(iter(o.sweep_string_iterator()))
        if re.fullmatch(r"[\w.+\-/:@%*?|$]+", first) is None:
            first = f'"{first}"'
        out.append(f"{o.get_key_element()}={first}")
    return out


def _compose(conf_dir: Path, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def _missing_key(base: Any, key: str) -> str | None:
    """None when `key` is in the composed config; else a sentence naming the first missing
    part, the keys valid there, and the closest one."""
    from omegaconf import DictConfig
    node, path = base, []
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return None          # below a value (a list index, a dict-valued field): Hydra decides
        if part not in node:
            here = ".".join(path)
            keys = sorted(str(k) for k in node.keys())
            owner = f"{here} has no field {part!r}" if here else f"there is no top-level key {part!r}"
            spell = (lambda k: f"{here}.{k}") if here else (lambda k: k)
            launcher = ("; the launcher's fields come with its choice: hydra/launcher=slurm (or packed, local)"
                        if here == "hydra.launcher" else "")
            return f"{owner}{_did_you_mean(part, keys, spell)}; valid here: {', '.join(keys)}{launcher}"
        node, path = node._get_node(part), path + [part]
        node = node if isinstance(node, DictConfig) else None
    return None


def check(argv: list[str], conf_dir: Path, groups: dict[str, Path]) -> None:
    """Raise one InputError for the first override Hydra would refuse (see the module)."""
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    if not args:
        return
    overrides = parse(args)
    check_choices(overrides, groups)
    plain = _first_values(overrides, groups)
    try:
        composed = _compose(conf_dir, plain)
    except Exception as e:  # noqa: BLE001 - Hydra and OmegaConf raise many classes; each becomes one line
        error = e
    else:
        _check_fields(composed, None)
        _check_sweep_values(conf_dir, overrides, plain)
        return
    # Which override: a key (no +, not a group) missing from the config the groups compose.
    def is_group(o) -> bool:
        return o.key_or_group in groups or "/" in o.key_or_group
    picks = [p for p, o in zip(plain, overrides) if is_group(o)]
    try:
        base = _compose(conf_dir, picks)
    except Exception:  # noqa: BLE001 - the groups alone fail: say Hydra's own first line
        base = None
    if base is not None:
        for o in overrides:
            if is_group(o) or o.is_force_add():
                continue
            problem = _missing_key(base, o.key_or_group)
            if o.is_add():
                if problem is None:
                    raise InputError(f"{o.input_line}: {o.key_or_group} exists already; drop the + "
                                     f"({o.input_line[1:]})")
                continue
            if o.is_delete():
                continue
            if problem:
                raise InputError(f"{o.input_line}: {problem}")
    missing = _missing_option(error)
    if missing:
        raise InputError(missing)
    raise InputError(f"{' '.join(args)}: {_hydra_message(error)}")


def _missing_option(e: BaseException) -> str | None:
    """Hydra's "Could not find 'group/option'" (a group outside conf/, e.g. hydra/launcher)
    as the line check_choices gives for tinv's own groups."""
    text = str(e)
    found = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    listed = re.search(r"Available options in '[^']+':\n((?:\s+\S+\n?)+)", text)
    if not found or not listed:
        return None
    group, option = found.groups()
    options = sorted(listed.group(1).split())
    return f"{group}={option}: no such {group}{_did_you_mean(option, options)}; the options: {', '.join(options)}"


def _check_fields(composed: Any, sweep: str | None) -> None:
    """tinv.harness.validate on the composed job config, before Hydra makes a log folder (the job
    checks again: run_job is also called without run.py)."""
    from omegaconf import OmegaConf

    from tinv.harness.validate import problems
    try:    # without the hydra node, whose sweep fields resolve only inside a launched job
        job = OmegaConf.to_container(OmegaConf.masked_copy(composed, [k for k in composed if k != "hydra"]),
                                     resolve=True)
    except Exception:  # noqa: BLE001 - an interpolation the job reports itself
        return
    found = problems(job)
    if found:
        where = f" (in the sweep {sweep})" if sweep else ""
        raise InputError("; ".join(found) + f"{where} (nothing was run)")


# Each value of a swept field is composed and checked before the sweep starts: a bad
# value in job 7 must not cost jobs 0-6 first. Values past this many are left to the jobs.
MAX_SWEEP_CHECKS = 64


def _check_sweep_values(conf_dir: Path, overrides: list, plain: list[str]) -> None:
    budget = MAX_SWEEP_CHECKS
    for i, o in enumerate(overrides):
        if not o.is_sweep_override() or "/" in o.key_or_group:
            continue
        try:
            values = list(o.sweep_string_iterator())[1:]
        except Exception:  # noqa: BLE001 - globs and intervals: checked by the jobs
            continue
        for v in values:
            if budget == 0:
                return
            budget -= 1
            if re.fullmatch(r"[\w.+\-/:@%*?|$]+", v) is None:
                v = f'"{v}"'
            one = plain[:i] + [f"{o.get_key_element()}={v}"] + plain[i + 1:]
            try:
                composed = _compose(conf_dir, one)
            except Exception as e:  # noqa: BLE001
                raise InputError(f"{o.get_key_element()}={v} (in the sweep {o.input_line}): {_hydra_message(e)}") from e
            _check_fields(composed, o.input_line)


def _first_line(e: BaseException) -> str:
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


def _hydra_message(e: BaseException) -> str:
    """Hydra's message on one line, without its `+key` advice for a key that does not exist."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip() and "full_key:" not in line
             and "object_type=" not in line and not line.startswith("To append to your config")]
    return "; ".join(lines) or type(e).__name__
