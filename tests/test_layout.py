"""The architecture, checked: the core never imports Prefect, and its modules import each other
without cycles (module-level imports; TYPE_CHECKING blocks aside)."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

CORE = ROOT / "maxrf"


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules imported at module level (what runs when the module is imported)."""
    tree = ast.parse(path.read_text())
    me = _module(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(sub, ast.Import):
                out |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom):
                base = package[: len(package) - sub.level + 1] if sub.level else []
                mod = ".".join(base + ([sub.module] if sub.module else []))
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in sub.names}
    return out


def test_core_never_imports_prefect():
    for path in CORE.rglob("*.py"):
        text = path.read_text()
        assert "import prefect" not in text and "from prefect" not in text, path


def test_no_import_cycle_in_the_core():
    modules = {_module(p): p for p in CORE.rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    # a package's __init__ importing its own modules is fine; a module importing back is not
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if n in m or state.get(n) == 2:  # its own package, or already checked
                continue
            assert state.get(n) != 1, " -> ".join([*stack, m, n])
            visit(n, [*stack, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
