"""zarr internals: the chunk-key encoding (``zarr.core.chunk_key_encodings``, not public API)."""

from __future__ import annotations

from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding, parse_chunk_key_encoding


def chunk_key_encoding(config: dict | None = None):
    """zarr's encoder of chunk coordinates into keys for a layer's ``chunk_key_encoding``
    (default: zarr v3's ``c/0/1`` with ``/``); ``.encode_chunk_key(coords) -> str``."""
    if config is None:
        return DefaultChunkKeyEncoding(separator="/")
    return parse_chunk_key_encoding(config)
