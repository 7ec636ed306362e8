"""The ``.datastack`` file: layers, versions, provenance, crash safety and locking."""

from .integrity import CheckReport, check, recover, repack
from .layers import PAD
from .stack import Appender, ChunkEncoder, DataStack, LayerWriter, find_by_key, format_tree


def tree(path, show_arrays: bool = False) -> str:
    """Text overview of the datastack at ``path``."""
    return format_tree(DataStack(path), show_arrays)


def append(arr, name: str, datastack_file) -> str:
    """maxrf4u-style ``append(arr, layer_name, datastack_file)``; returns the stored name."""
    return DataStack(datastack_file).append(arr, name)


def append_list(ragged, name: str, datastack_file) -> str:
    """maxrf4u-style ``append_list(ragged_list, layer_name, datastack_file)``."""
    return DataStack(datastack_file).append_list(ragged, name)


__all__ = [
    "append",
    "append_list",
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
