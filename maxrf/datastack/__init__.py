"""The ``.datastack`` file: layers, versions, provenance, crash safety and locking.

Modules, each with one job: ``store`` (open, read, the commit protocol), ``writer`` (layers of one
commit, chunk encoding), ``codecs`` (zarr codec → numcodecs), ``zipwrite``/``zipdir`` (appending
to the zip, its directory), ``journal`` (rollback), ``lock``, ``layers`` (names, versions,
defaults), ``integrity`` (check, recover, repack), ``tree`` (overview, lookup by key).
"""

from maxrf.datastack.integrity import CheckReport, check, recover, repack
from maxrf.datastack.layers import PAD
from maxrf.datastack.store import DataStack
from maxrf.datastack.tree import find_by_key, format_tree
from maxrf.datastack.writer import Appender, ChunkEncoder, LayerWriter


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
