"""The structure: imports inside tinv/ flow one way, down the layers of docs/DESIGN.md.
Every import counts: those inside functions (a lazy import is still a dependency) and
those under `if TYPE_CHECKING:` (a type is a dependency of the reader, and a circle there
is a circle in the design)."""
from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "tinv"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, known: set[str]) -> str | None:
    """The tinv module an import of `name` loads (its longest known prefix)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path, known: set[str]) -> set[str]:
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from tinv import job` imports the module tinv.harness.job; `from tinv import X` an attribute
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out |= {m for m in (_resolve(n, known) for n in names) if m and m != me}
    return out


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, known) for f in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "tinv.metrics.protocol" in graph["tinv.harness.job"]      # imported inside execute()
    assert "tinv.toyworld.evaluator" in graph["tinv.metrics.encoders"]


# The layers, lowest first, each a folder of tinv (docs/DESIGN.md draws them): a module
# imports only from its own layer and those below. A module outside these folders fails.
LAYERS = [("ground", ["tinv", "tinv.core"]), ("world", ["tinv.toyworld"]), ("engine", ["tinv.engine"]),
          ("metrics", ["tinv.metrics"]), ("methods", ["tinv.methods"]), ("harness", ["tinv.harness"]),
          ("launching", ["tinv.launch"]), ("tools", ["tinv.tools"])]


def layer_of(module: str, layers=LAYERS) -> int | None:
    """The layer whose folder holds `module` (the package `tinv` itself is the ground)."""
    for i, (_, packages) in enumerate(layers):
        if any(module == p or (p != "tinv" and module.startswith(p + ".")) for p in packages):
            return i
    return None


def upward(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    return [f"{m} ({layers[layer_of(m, layers)][0]}) imports {d} ({layers[layer_of(d, layers)][0]})"
            for m, deps in sorted(graph.items()) for d in sorted(deps) if layer_of(d, layers) > layer_of(m, layers)]


def test_the_layer_check_finds_an_upward_import():
    layers = [("low", ["a"]), ("high", ["b"])]     # packages a and b
    assert upward({"a": {"b"}, "b": set()}, layers) == ["a (low) imports b (high)"]
    assert upward({"a": set(), "b": {"a"}}, layers) == []


def test_every_module_sits_in_a_layer_and_imports_only_downward():
    graph = import_graph()
    outside = sorted(m for m in graph if layer_of(m) is None)
    assert not outside, f"modules in no layer's folder: {outside}"
    bad = upward(graph)
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_engine_and_below_know_nothing_of_hydra():
    # the engine takes dataclasses and works from a notebook; Hydra lives in the harness
    for m in (m for m in import_graph() if layer_of(m) <= 2):
        path = REPO / (m.replace(".", "/") + ".py")
        path = path if path.exists() else path.with_suffix("") / "__init__.py"
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [x for x in names if x.split(".")[0] in ("hydra", "omegaconf")], m


def test_the_graph_sees_type_checking_imports():
    # tinv.engine.pseudo_words names tinv.engine.models only under `if TYPE_CHECKING:` (diffusers is slow to import)
    assert "tinv.engine.models" in import_graph()["tinv.engine.pseudo_words"]


def test_no_import_circle_in_tinv():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)
