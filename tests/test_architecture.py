"""The package's imports run one way: no module-level import circle, report and compress never
import training, core imports nothing else of the package, and the file reader stands alone."""
import ast
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
    seen, todo = set(), [name]
    while todo:
        for dep in GRAPH[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
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
