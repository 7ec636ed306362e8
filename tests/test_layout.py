"""The architecture, checked: the core never imports Prefect; its modules import each other
without cycles (imports inside functions included; TYPE_CHECKING blocks aside); the layers of the
layout only import downwards (physics never imports the pipeline, files never the physics)."""

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
    """Modules a module imports, at module level or inside its functions."""
    tree = ast.parse(path.read_text())
    me = _module(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node):
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


# Which parts of the core each part may import (besides itself, ``maxrf.errors`` and
# ``maxrf.scratch``): files and storage know no physics; physics knows no datastack or pipeline.
ALLOWED = {
    "maxrf.compat": set(),
    "maxrf.io": set(),
    "maxrf.datastack": {"maxrf.io", "maxrf.compat"},
    "maxrf.xrf": {"maxrf.io"},
    "maxrf.pipeline": {"maxrf.io", "maxrf.datastack", "maxrf.xrf", "maxrf.imaging"},
    "maxrf.imaging": {"maxrf.io", "maxrf.datastack"},
    "maxrf.figures": {"maxrf.io", "maxrf.datastack", "maxrf.xrf", "maxrf.exports",
                      "maxrf.imaging"},
    "maxrf.exports": {"maxrf.io", "maxrf.datastack"},
    "maxrf.viewer": {"maxrf.io", "maxrf.datastack", "maxrf.xrf", "maxrf.pipeline",
                     "maxrf.figures", "maxrf.exports", "maxrf.imaging"},
    "maxrf.demo": {"maxrf.io", "maxrf.xrf"},
}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "maxrf" and len(parts) > 1 else None


def test_the_layers_of_the_layout_import_only_downwards():
    common = {"maxrf.errors", "maxrf.scratch", "maxrf.__version__"}
    for path in CORE.rglob("*.py"):
        me = _part(_module(path))
        if me not in ALLOWED:
            continue
        for imported in _imports(path):
            other = _part(imported)
            if other is None or other == me or other in common or imported == "maxrf":
                continue
            assert other in ALLOWED[me], f"{_module(path)} imports {imported}"


def test_physics_defaults_load_without_the_physics():
    """The pipeline table (and so every CLI option) gets its defaults without numpy or numba."""
    import subprocess
    import sys

    code = ("import sys, maxrf.pipeline.table; "
            "print(sorted(m for m in ('numpy', 'numba', 'zarr', 'dask') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
