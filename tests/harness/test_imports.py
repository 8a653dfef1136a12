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
            # `from tinv import job` imports the module tinv.job; `from tinv import X` an attribute
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
    assert "tinv.metrics.protocol" in graph["tinv.job"]      # imported inside execute()
    assert "tinv.toyworld.evaluator" in graph["tinv.metrics.encoders"]


# The layers, lowest first (docs/DESIGN.md draws them): a module imports only from its own
# layer and those below. A new module must be placed here (the test names it otherwise).
LAYERS = [
    ("ground", ["tinv", "tinv.errors", "tinv.atomic"]),
    ("world", ["tinv.toyworld", "tinv.toyworld.attributes", "tinv.toyworld.render", "tinv.toyworld.captions",
               "tinv.toyworld.nets", "tinv.toyworld.evaluator", "tinv.toyworld.oracle", "tinv.toyworld.concepts"]),
    ("engine", ["tinv.progress", "tinv.templates", "tinv.models", "tinv.pseudo_words", "tinv.data",
                "tinv.conditioning", "tinv.inversion_config", "tinv.dvar", "tinv.checkpoint", "tinv.inversion",
                "tinv.pivotal", "tinv.sampling", "tinv.ddim_inversion", "tinv.embeddings_io"]),
    ("metrics", ["tinv.metrics", "tinv.metrics.bootstrap", "tinv.metrics.encoders", "tinv.metrics.oracle",
                 "tinv.metrics.scores", "tinv.metrics.protocol"]),
    ("methods", ["tinv.methods"]),
    ("harness", ["tinv.results", "tinv.logs", "tinv.prompts", "tinv.loading", "tinv.validate", "tinv.tokens",
                 "tinv.concepts", "tinv.plan", "tinv.preflight", "tinv.joblock", "tinv.attempts", "tinv.store",
                 "tinv.learned", "tinv.wandb_log", "tinv.time_report", "tinv.overrides", "tinv.job"]),
    ("launching", ["tinv.packing", "tinv.workers", "tinv.cluster", "tinv.sweep_watch"]),
    ("tools", ["tinv.bench", "tinv.suite", "tinv.suite.__main__", "tinv.suite.parts", "tinv.suite.report",
               "tinv.toyworld.pretrain", "tinv.toyworld.gates", "tinv.toyworld.samples", "tinv.toyworld.styles"]),
]


def upward(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    level = {m: i for i, (_, modules) in enumerate(layers) for m in modules}
    return [f"{m} ({layers[level[m]][0]}) imports {d} ({layers[level[d]][0]})"
            for m, deps in sorted(graph.items()) for d in sorted(deps) if level[d] > level[m]]


def test_the_layer_check_finds_an_upward_import():
    layers = [("low", ["a"]), ("high", ["b"])]
    assert upward({"a": {"b"}, "b": set()}, layers) == ["a (low) imports b (high)"]
    assert upward({"a": set(), "b": {"a"}}, layers) == []


def test_every_module_sits_in_a_layer_and_imports_only_downward():
    graph = import_graph()
    placed = {m for _, modules in LAYERS for m in modules}
    assert not set(graph) - placed, f"modules in no layer (add them to LAYERS): {sorted(set(graph) - placed)}"
    assert not placed - set(graph), f"LAYERS names modules that do not exist: {sorted(placed - set(graph))}"
    bad = upward(graph)
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_engine_and_below_know_nothing_of_hydra():
    # the engine takes dataclasses and works from a notebook; Hydra lives in the harness
    low = [m for name, modules in LAYERS[:3] for m in modules]
    for m in low:
        path = REPO / (m.replace(".", "/") + ".py")
        path = path if path.exists() else path.with_suffix("") / "__init__.py"
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [x for x in names if x.split(".")[0] in ("hydra", "omegaconf")], m


def test_the_graph_sees_type_checking_imports():
    # tinv.pseudo_words names tinv.models only under `if TYPE_CHECKING:` (diffusers is slow to import)
    assert "tinv.models" in import_graph()["tinv.pseudo_words"]


def test_no_import_circle_in_tinv():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)
