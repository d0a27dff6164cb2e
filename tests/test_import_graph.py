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


def import_graph(files: bool = False) -> dict[str, dict[str, str]]:
    """{node: {node it imports: "file:line" of the first such import}}; a node is a package (`_node`) or, with
    `files`, a file (`_file_node`), where `from pkg import a` imports a alone (a file of pkg, or a name pkg's
    __init__ defines), not pkg besides."""
    node = _file_node if files else _node
    graph: dict[str, dict[str, str]] = {}
    for path in sorted([*REPO.glob("xmgie/**/*.py"), *REPO.glob("data_modules/**/*.py")]):
        rel = path.relative_to(REPO)
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        source = module if files else node(module)
        found = _imported(path, module)
        for name, line in found:
            if files and any(n.startswith(name + ".") and ln == line for n, ln in found):
                continue
            target = node(name)
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
    above = {"xmgie.training", "xmgie.methods", "xmgie.evaluation", "xmgie.pipeline", "xmgie.cli", "xmgie.editor",
             "xmgie.inference", "xmgie.export"}
    for low in ("xmgie.modules", "xmgie.conditioning", "xmgie.metrics", "xmgie.checkpoints", "xmgie.models"):
        assert not set(graph.get(low, {})) & above, (low, graph.get(low))


# The packages as layers, lowest first (docs/architecture.md): a node imports only nodes of its own layer or below.
LAYERS = (
    ("xmgie", "xmgie.errors", "xmgie.downloads", "xmgie.weights", "xmgie.checkpoints", "xmgie.stage_config",
     "data_modules"),                                                          # files, weights, configs, data
    ("xmgie.conditioning", "xmgie.modules", "xmgie.metrics", "xmgie.compositing", "xmgie.visualize"),  # parts
    ("xmgie.models",),                                                         # the generator
    ("xmgie.training", "xmgie.methods"),                                       # how editors are trained
    ("xmgie.editor", "xmgie.inference", "xmgie.export", "xmgie.mask_files", "xmgie.edit_jobs", "xmgie.demo"),
    ("xmgie.evaluation",),                                                     # editing a split, scoring it
    ("xmgie.stages", "xmgie.pipeline"),                                        # stage commands and tables
    ("xmgie.cli",),                                                            # the `xmgie` command
)


def test_every_package_has_a_layer_and_imports_nothing_above_it():
    layer = {node: i for i, nodes in enumerate(LAYERS) for node in nodes}
    graph = import_graph()
    assert set(graph) | {n for targets in graph.values() for n in targets} <= set(layer)
    upward = [f"{a} -> {b} ({where})" for a, targets in graph.items() for b, where in targets.items()
              if layer[b] > layer[a]]
    assert not upward, upward


def _file_node(module: str) -> str | None:
    """The file a dotted name lives in: xmgie.models.generator.EditGenerator -> xmgie.models.generator."""
    parts = module.split(".")
    if parts[0] not in ("xmgie", "data_modules"):
        return None
    for n in range(len(parts), 0, -1):
        path = REPO.joinpath(*parts[:n])
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return ".".join(parts[:n])
    return None


def test_no_two_files_import_each_other_even_through_others():
    graph = import_graph(files=True)
    assert "xmgie.models.config" in graph["xmgie.models.backbone"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(f"{a} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_no_two_source_files_share_a_name():
    names: dict[str, list[str]] = {}
    for path in (REPO / "xmgie").rglob("*.py"):
        if path.name not in ("__init__.py", "config.py"):  # a package's own config.py is its options
            names.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    assert not {n: p for n, p in names.items() if len(p) > 1}
