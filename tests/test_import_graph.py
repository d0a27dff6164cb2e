"""The packages import each other without cycles, counting imports inside functions too (they are still
dependencies, only later ones): each subpackage of xmgie, each top-level module of xmgie and data_modules is a
node; an import of a name in another node is an edge."""
import ast
from pathlib import Path

from tests.conftest import REPO


def _node(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "data_modules":
        return "data_modules"
    if parts[0] != "xmgie":
        return None
    if len(parts) == 1:
        return "xmgie"
    if (REPO / "xmgie" / parts[1]).is_dir() or (REPO / "xmgie" / f"{parts[1]}.py").is_file():
        return f"xmgie.{parts[1]}"
    return "xmgie"  # a name defined in xmgie/__init__.py


def _imported(path: Path, module: str) -> list[tuple[str, int]]:
    """(imported module or module.name, line) of every import statement in the file, relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level] if path.name != "__init__.py" else \
                    module.split(".")[: len(module.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            found += [(name, node.lineno)] + [(f"{name}.{a.name}", node.lineno) for a in node.names]
    return found


def import_graph() -> dict[str, dict[str, str]]:
    """{node: {node it imports: "file:line" of the first such import}}."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted([*REPO.glob("xmgie/**/*.py"), *REPO.glob("data_modules/**/*.py")]):
        rel = path.relative_to(REPO)
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        source = _node(module)
        for name, line in _imported(path, module):
            target = _node(name)
            if target and target != source:
                graph.setdefault(source, {}).setdefault(target, f"{rel}:{line}")
    return graph


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """A cycle as [a, b, …, a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_layering():
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": "", "c": ""}, "b": {"c": ""}, "c": {}}) is None


def test_the_packages_import_each_other_without_cycles():
    graph = import_graph()
    assert {"xmgie.models", "xmgie.modules", "xmgie.training", "xmgie.pipeline", "xmgie.cli"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(f"{a} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_the_layers_below_the_generator_do_not_reach_up():
    graph = import_graph()
    above = {"xmgie.training", "xmgie.baselines", "xmgie.evaluation", "xmgie.pipeline", "xmgie.cli", "xmgie.editor",
             "xmgie.inference", "xmgie.export"}
    for low in ("xmgie.modules", "xmgie.conditioning", "xmgie.metrics", "xmgie.checkpoints", "xmgie.models"):
        assert not set(graph.get(low, {})) & above, (low, graph.get(low))
