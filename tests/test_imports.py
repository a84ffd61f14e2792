"""The helpers import one another without a cycle, so each module can be read and tested bottom-up.

Every import counts, at the top of a module or inside a function: a function-level import that closes a
cycle still ties the modules together.
"""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "helpers"


def module_name(path):
    """``helpers.exercises.checks`` for helpers/exercises/checks.py, ``helpers.exercises`` for its __init__."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path, modules):
    """The helpers modules that the module at ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return {name for name in found if name in modules} - {module_name(path)}


def import_graph():
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): imports(p, modules) for p in paths}
    for name in graph:  # importing a package's module imports the package first
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules (first one repeated at the end), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_helpers_have_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# The layers, bottom (0) to top: a module may import modules of its own layer or below, never above.
# docs/architecture.md explains them. ``runs`` sits low: its settings, seeds, histories and checkpoints are the
# vocabulary training is written in; what is above training is what uses whole runs (frontier, exercises,
# plotting, report).
LAYERS = {
    0: ["helpers", "helpers.config", "helpers.sizing", "helpers.setup", "helpers.colab", "helpers.diagrams",
        "helpers.workers", "helpers.runs"],
    1: ["helpers.data", "helpers.model"],
    2: ["helpers.compression"],
    3: ["helpers.training"],
    4: ["helpers.frontier", "helpers.exercises"],
    5: ["helpers.plotting", "helpers.report", "helpers.exercises.understanding"],
}


def layer_of(module):
    """The layer of ``module``: that of the longest prefix named in :data:`LAYERS`."""
    best = None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (layer, prefix)
    if best is None:
        raise AssertionError(f"{module} has no layer: add it to LAYERS in tests/test_imports.py and to "
                             "docs/architecture.md")
    return best[0]


def up_arrows(graph):
    """``(importer, imported)`` pairs where a module imports one of a higher layer (a package by its face)."""
    return [(module, other) for module, imported in graph.items() for other in sorted(imported)
            if layer_of(other) > layer_of(module)]


def test_every_import_points_down_or_sideways():
    arrows = up_arrows(import_graph())
    assert arrows == [], "imports that point up a layer: " + ", ".join(
        f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})" for a, b in arrows)


def test_the_arrow_check_finds_an_upward_import():
    assert up_arrows({"helpers.model": {"helpers.training"}, "helpers.training": {"helpers.model"}}) == [
        ("helpers.model", "helpers.training")]
