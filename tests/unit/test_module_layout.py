"""The layout of pipeline/: no import cycle between its modules (the graph is built from
their source with ast, lazy imports in functions included), no module over ~500 lines without
a reason."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> set[str]:
    """The pipeline modules ``module`` imports (at module level or in a function; not under
    ``if TYPE_CHECKING``), with the packages whose ``__init__`` those imports run."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(
                f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES
            )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    edges: set[str] = set()
    for target in targets:
        if not target.startswith("pipeline"):
            continue
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            name = ".".join(parts[:i])
            if name in MODULES and name not in ancestors and name != module:
                edges.add(name)
    return edges


def test_there_is_no_import_cycle_in_pipeline():
    graph = {module: _imports(module, path) for module, path in MODULES.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_cycle_check_sees_a_cycle(tmp_path, monkeypatch):
    """The check above would catch one: two modules importing each other inside functions."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from pipeline.simulate import traffic\n")
    b.write_text("from pipeline import policy\n")
    monkeypatch.setitem(MODULES, "pipeline.fake_a", a)
    graph = {
        "pipeline.fake_a": _imports("pipeline.fake_a", a),
        "pipeline.simulate.traffic": {"pipeline.fake_a"},
    }
    assert "pipeline.simulate.traffic" in graph["pipeline.fake_a"]
    assert "pipeline.simulate" in graph["pipeline.fake_a"]  # its __init__ runs first
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()
    assert _imports("pipeline.fake_b", b) == {"pipeline.policy"}


@pytest.mark.parametrize(
    "module",
    sorted(
        m for m, p in MODULES.items() if len(p.read_text(encoding="utf-8").splitlines()) > MAX_LINES
    ),
)
def test_a_long_module_says_why_in_its_docstring(module):
    """Modules stay under ~500 lines; a longer one explains why in a paragraph of its
    docstring that starts with "Length:"."""
    doc = ast.get_docstring(ast.parse(MODULES[module].read_text(encoding="utf-8"))) or ""
    assert any(line.startswith("Length:") for line in doc.splitlines()), (
        f"{module} has over {MAX_LINES} lines: split it by concern, or say why it is one module "
        "in a 'Length:' paragraph of its docstring"
    )
