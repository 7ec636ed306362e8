"""Which numcodecs codec writes exactly the chunk bytes zarr would write for a layer."""

from __future__ import annotations

import zarr
from numcodecs import Blosc, Zstd

from maxrf.datastack.blosc import BloscEncoder
from maxrf.errors import DataStackError


def numcodec(z: zarr.Array):
    """The numcodecs codec producing exactly the chunk bytes zarr would write."""
    (codec,) = z.compressors
    cfg = codec.to_dict()["configuration"]
    if codec.to_dict()["name"] == "blosc":
        shuffle = {
            "noshuffle": Blosc.NOSHUFFLE,
            "shuffle": Blosc.SHUFFLE,
            "bitshuffle": Blosc.BITSHUFFLE,
        }[cfg["shuffle"]]
        return BloscEncoder(
            Blosc(
                cname=cfg["cname"],
                clevel=cfg["clevel"],
                shuffle=shuffle,
                blocksize=cfg.get("blocksize", 0),
            )
        )
    if codec.to_dict()["name"] == "zstd":
        return Zstd(level=cfg["level"], checksum=cfg.get("checksum", False))
    raise DataStackError(f"unsupported codec {codec.to_dict()['name']!r}")
