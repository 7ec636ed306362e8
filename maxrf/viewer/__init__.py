"""``maxrf view``: a local web viewer of a datastack (Starlette on loopback, static page)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def view_command(datastack: str | Path) -> str:
    """The command that opens ``datastack`` in the viewer, as a user can paste it: ``maxrf view
    …`` when that ``maxrf`` is on the PATH, else with the full path of this installation's
    ``maxrf`` (after ``make demo`` the virtual environment is not activated)."""
    target = Path(datastack).resolve()
    here = Path(sys.executable).with_name("maxrf")
    found = shutil.which("maxrf")
    if found is None and here.exists():
        return f"{here} view {target}"
    return f"maxrf view {target}"
