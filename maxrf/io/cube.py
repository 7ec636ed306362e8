"""What every reader of a scan's counts shares: a picklable handle (a path and a header, no
data, so dask workers in other processes read the file themselves) presenting (height, width,
channels); each format adds ``read_block(rows, cols, out)`` and ``prefetch(rows, cols)``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maxrf.io.rpl import RplHeader


@dataclass(frozen=True)
class CubeFile:
    path: str
    header: RplHeader

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.header.shape

    @property
    def dtype(self) -> np.dtype:
        return self.header.dtype

    @property
    def ndim(self) -> int:
        return 3
