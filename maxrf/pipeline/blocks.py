"""Walking a cube block by block: the next blocks are read (decompressed) in a thread while the
current one is worked on, with a progress bar on a terminal. Conversion, band layers and element
maps share it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from maxrf.datastack.blockread import BlockReader


def progress_bar(total: int, enabled: bool | None, desc: str, unit: str = "block"):
    """A tqdm bar on stderr (by default only when stderr is a terminal), or None."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)


def read_ahead[T](
    items: Sequence[T], read: Callable[[T], np.ndarray], ahead: int = 2, threads: int = 2
) -> Iterator[tuple[T, np.ndarray]]:
    """``(item, read(item))`` in order, with the next ``ahead`` items already being read by
    ``threads`` threads (a block is dropped as soon as the caller moves on)."""
    if not items:
        return
    with ThreadPoolExecutor(threads) as pool:
        pending = [pool.submit(read, it) for it in items[:ahead]]
        for i, item in enumerate(items):
            data = pending[i].result()
            if i + ahead < len(items):
                pending.append(pool.submit(read, items[i + ahead]))
            pending[i] = None
            yield item, data


def pixel_blocks(h: int, w: int, rows: int = 16, cols: int = 256
                 ) -> list[tuple[int, int, int, int]]:
    """``(r0, r1, c0, c1)`` blocks of ``rows`` × ``cols`` pixels covering an h × w scan, row
    band by row band (aligned to the 16 × 16 chunks with the defaults: 33 MB of counts at 4096
    channels)."""
    return [(r, min(r + rows, h), c, min(c + cols, w))
            for r in range(0, h, rows) for c in range(0, w, cols)]


def spectra_ahead(reader: BlockReader, blocks: Sequence[tuple[int, int, int, int]],
                  ahead: int = 2) -> Iterator[tuple[tuple[int, int, int, int], np.ndarray,
                                                   np.ndarray]]:
    """``(block, spectra, order)`` for each block (:meth:`BlockReader.spectra`), the next
    ``ahead`` ones decompressed meanwhile, each into one of ``ahead + 2`` reused buffers (the
    one being worked on, those being read, the next): fresh 33 MB arrays are page faults every
    time. A block's arrays are valid until the caller moves on."""
    ring: list[np.ndarray | None] = [None] * (ahead + 2)

    def read(item):
        i, block = item
        spectra, order = reader.spectra(*block, out=ring[i % len(ring)])
        ring[i % len(ring)] = spectra
        return spectra, order

    for (_i, block), (spectra, order) in read_ahead(list(enumerate(blocks)), read, ahead):
        yield block, spectra, order
