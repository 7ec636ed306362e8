"""Walking a cube block by block: the next blocks are read (decompressed) in a thread while the
current one is worked on, with a progress bar on a terminal. Conversion, band layers and element
maps share it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np


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
