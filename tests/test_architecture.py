"""The package's imports run one way: no module-level import circle, report and compress never
import training, core imports nothing else of the package, and the file reader stands alone; and
docs/architecture.md draws exactly the imports the code has."""
import ast
import re
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "src" / "sparsevd"


def module_name(path: Path) -> str:
    parts = ("sparsevd", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (function-level imports are lazy)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            deps |= {c for c in candidates if c in modules and c != name}
        graph[name] = deps
    return graph


GRAPH = import_graph()


def reachable(name: str) -> set[str]:
    seen, pending = set(), [name]
    while pending:
        for dep in GRAPH[pending.pop()]:
            if dep not in seen:
                seen.add(dep)
                pending.append(dep)
    return seen


def test_the_graph_sees_the_packages():
    assert {"sparsevd.core.layers", "sparsevd.train.run", "sparsevd.compress.reader", "sparsevd.report.tables"} <= set(GRAPH)
    assert "sparsevd.core.layers" in GRAPH["sparsevd.core.models"]  # relative imports are resolved


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_no_module_imports_itself_round_a_circle(name):
    assert name not in reachable(name)


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if n.startswith(("sparsevd.report", "sparsevd.compress"))))
def test_report_and_compress_never_import_training(name):
    assert not [d for d in reachable(name) if d.startswith("sparsevd.train")]


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if n.startswith("sparsevd.core")))
def test_core_imports_only_core(name):
    assert all(d.startswith("sparsevd.core") for d in reachable(name))


def test_the_file_reader_imports_nothing_of_the_package():
    assert GRAPH["sparsevd.compress.reader"] == set()
    source = (PACKAGE / "compress" / "reader.py").read_text()
    assert "sparsevd" not in "".join(line for line in source.splitlines() if line.startswith(("import", "from")))


def test_the_public_face():
    import sparsevd
    from sparsevd.export import load

    for name in ("sparsify", "kl", "elbo_loss", "KLSchedule", "stats", "export", "load"):
        assert callable(getattr(sparsevd, name)), name
    assert sparsevd.load is load is sparsevd.export.load


def unit(module: str) -> str:
    """The doc's name for a module's part of the package: its folder (core, train, ...), its own name for a
    top-level module (config, data, ...), or sparsevd for the package's __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sparsevd"


def unit_imports() -> dict[tuple[str, str], str]:
    """(importer, imported) between the package's parts -> "module" when some import of it is at module
    level, "lazy" when every one sits inside a function."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[tuple[str, str], str] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            for dep in (c for c in candidates if c in modules and unit(c) != unit(name)):
                key = (unit(name), unit(dep))
                edges[key] = "module" if id(node) in top or edges.get(key) == "module" else "lazy"
    return edges


ARROW = re.compile(r"^\s*(\w+)(?:\[[^\]]*\])?\s*(-->|-\.->)\s*(\w+)(?:\[[^\]]*\])?\s*$")


def drawn_imports() -> dict[tuple[str, str], str]:
    """The arrows of the mermaid flowchart in docs/architecture.md: --> module level, -.-> lazy."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    chart = re.search(r"```mermaid\n(.*?)```", doc, re.S).group(1)
    arrows = {}
    for line in filter(str.strip, chart.splitlines()[1:]):
        match = ARROW.match(line)
        assert match, f"not an arrow the test can read: {line!r}"
        arrows[(match[1], match[3])] = "module" if match[2] == "-->" else "lazy"
    return arrows


def test_the_architecture_doc_draws_exactly_the_imports_of_the_code():
    code, doc = unit_imports(), drawn_imports()
    assert {("train", "core"), ("compress", "config")} <= set(code)  # the graph sees both kinds
    missing = sorted(f"{a} -> {b} ({kind})" for (a, b), kind in code.items() if doc.get((a, b)) != kind)
    extra = sorted(f"{a} -> {b} ({kind})" for (a, b), kind in doc.items() if code.get((a, b)) != kind)
    assert not missing, f"imports the doc does not draw (or draws as the other kind): {missing}"
    assert not extra, f"arrows the doc draws that the code does not have: {extra}"


def test_the_parts_the_doc_says_import_nothing_import_nothing():
    doc = (REPO / "docs" / "architecture.md").read_text()
    alone = {"core", "data", "io"}
    assert "`core/`, `data`, `io` and `compress/reader.py` import nothing else of the\npackage" in doc
    assert not [edge for edge in unit_imports() if edge[0] in alone]

