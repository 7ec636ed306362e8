"""The ``.datastack`` file: layers, versions, provenance, crash safety and locking."""

from .integrity import CheckReport, check, recover, repack
from .layers import PAD
from .stack import Appender, ChunkEncoder, DataStack, LayerWriter, find_by_key, format_tree


def tree(path, show_arrays: bool = False) -> str:
    """Text overview of the datastack at ``path``."""
    return format_tree(DataStack(path), show_arrays)


__all__ = [
    "Appender",
    "ChunkEncoder",
    "LayerWriter",
    "PAD",
    "CheckReport",
    "DataStack",
    "check",
    "find_by_key",
    "format_tree",
    "recover",
    "repack",
    "tree",
]
