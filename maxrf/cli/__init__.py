"""The ``maxrf`` command line: core commands in :mod:`.main` and :mod:`.datastack`, the
orchestrated ones in :mod:`.flows` (which import Prefect's side only when they run)."""

from maxrf.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
