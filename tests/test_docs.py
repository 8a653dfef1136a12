"""The docs against the repository (issue 30, item 6): the README stays a guide that names
what exists, its test command is the one CI runs, and docs/DESIGN.md names every module."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
DESIGN = (REPO / "docs" / "DESIGN.md").read_text()
LIBRARY = ("tinv", "analysis", "hydra_plugins")   # the folders whose modules DESIGN.md names


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[str]:
    """A bash block's commands, comments dropped."""
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_is_a_guide_of_at_most_220_lines():
    assert len(README.splitlines()) <= 220


def test_the_quick_start_is_the_readmes_first_block_and_ci_runs_its_test_command():
    first = commands(code_blocks(README)[0])
    assert first == ['pip install -e ".[dev]" && python run.py', "python -m pytest -q"]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    ci_commands = [line.strip().replace("python3 ", "python ") for line in ci]
    assert first[1] in ci_commands, ".ci/run no longer runs the README's test command"
    assert any(line.startswith("python -m pip install") and '-e ".[dev]"' in line for line in ci_commands)


def unnamed(paths: list[str], text: str) -> list[str]:
    """The module files `text` does not name: a file by its path in backticks, a package's
    `__init__.py` by its folder (`tinv/engine/learners/`)."""
    named = set(re.findall(r"`([^`\s]+)`", text))
    out = []
    for p in paths:
        want = p[: -len("__init__.py")] if p.endswith("/__init__.py") else p
        if want not in named:
            out.append(p)
    return out


def test_the_module_check_finds_a_missing_module():
    text = "| `tinv/engine/` | the engine |\n| `tinv/engine/objective.py` | Eq. 2 |"
    assert unnamed(["tinv/engine/__init__.py", "tinv/engine/objective.py"], text) == []
    assert unnamed(["tinv/engine/inversion.py", "tinv/core/__init__.py"], text) == \
        ["tinv/engine/inversion.py", "tinv/core/__init__.py"]


def test_design_names_every_module():
    paths = sorted(str(p.relative_to(REPO)) for folder in LIBRARY for p in (REPO / folder).rglob("*.py")
                   if "__pycache__" not in p.parts)
    assert len(paths) > 50
    missing = unnamed(paths, DESIGN)
    assert not missing, f"docs/DESIGN.md, 'Modules', does not name: {missing}"


def test_design_names_only_modules_that_exist():
    named = set(re.findall(r"`((?:tinv|analysis|hydra_plugins)/[\w/]*\.py)`", DESIGN))   # not templates (`<name>.py`)
    assert named
    gone = sorted(p for p in named if not (REPO / p).exists())
    assert not gone, f"docs/DESIGN.md names modules that do not exist: {gone}"


def test_the_readme_lists_every_method_and_preset():
    methods = sorted(p.stem for p in (REPO / "conf" / "method").glob("*.yaml"))
    presets = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))
    table = README[README.index("| `method=` |"):]
    assert [m for m in methods if f"`{m}`" not in table] == []
    assert [e for e in presets if f"`{e}`" not in README] == []
    listed = set(re.findall(r"^\| `([a-z0-9_]+)`(?:, `([a-z0-9_]+)`)?", table, flags=re.M))
    assert {m for pair in listed for m in pair if m} <= set(methods), "the table lists a method with no YAML"


def test_the_readme_commands_name_tools_that_exist():
    scripts = set(re.findall(r"python (analysis/\w+\.py)", README))
    modules = set(re.findall(r"python -m (tinv\.tools\.\w+)", README))
    assert "analysis/plot_tradeoff.py" in scripts and "analysis/claims.py" in scripts
    assert [s for s in scripts if not (REPO / s).exists()] == []
    assert [m for m in modules if not ((REPO / (m.replace(".", "/") + ".py")).exists()
                                       or (REPO / m.replace(".", "/") / "__main__.py").exists())] == []


def test_local_links_in_the_docs_resolve():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken, checked = [], 0
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            checked += 1
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert checked > 10 and not broken, broken
