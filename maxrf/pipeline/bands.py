"""Layers made for looking: any energy band's image and any rectangle's mean spectrum in well
under a second, whatever the scan size, without reading the cube.

- ``maxrf_bandcumsum`` (G + 1, height, width) uint32: per pixel, the counts of channels
  ``[0, 16·g)`` — a band image of whole 16-channel groups is the difference of two planes;
- ``maxrf_bandcounts`` (G, height, width, 16): the raw counts by groups of 16 channels, for the
  up to 15 channels at each edge of a band that do not fill a group (a group's chunk is 16 rows
  of every channel in it; datastacks of step version 2 hold them channel-major, still read);
- ``maxrf_blocksums`` (height/16, width/16, channels) uint32: the summed spectrum of every
  16 × 16-pixel chunk, so a rectangle's spectrum reads whole blocks here and only its border
  from ``maxrf_raw``.
All three come from the conversion's own pass over the counts (blocks of 16 whole rows), or
for an older datastack from one pass over ``maxrf_raw`` in bands of 16 rows (bounded memory: a
band of a 1692 × 1592 × 4096 scan is 0.2 GB of counts).
"""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack, LayerWriter
from maxrf.datastack.blockread import BlockReader
from maxrf.datastack.layers import CUBE_CHUNK_PIXELS
from maxrf.errors import MaxrfError
from maxrf.pipeline.blocks import progress_bar, read_ahead
from maxrf.pipeline.table import step

GROUP = 16  # channels per cumulative-sum plane (a band's edges read at most 15 channels)
LAYERS = step("bands").layers
B = CUBE_CHUNK_PIXELS  # the pass goes in bands of 16 full-width rows; chunks span the width


class BandSink:
    """The three band layers of one commit, filled a band of 16 rows at a time (from the
    conversion's own pass over the counts, or from :func:`band_layers`' pass over
    ``maxrf_raw``)."""

    def __init__(self, app, shape: tuple[int, int, int], dtype) -> None:
        h, w, c = shape
        self.channels, self.groups = c, -(-c // GROUP)
        self.cumsum = app.create("maxrf_bandcumsum", (self.groups + 1, h, w), np.uint32,
                                 chunks=(1, min(B, h), w),
                                 attrs={"group_channels": GROUP,
                                        "meaning": f"plane g: counts of channels [0, {GROUP} g)"})
        self.counts = app.create("maxrf_bandcounts", (self.groups, h, w, GROUP),
                                 np.dtype(dtype).newbyteorder("="),
                                 chunks=(1, min(B, h), w, GROUP),
                                 attrs={"group_channels": GROUP,
                                        "meaning": "maxrf_raw by groups of 16 channels: "
                                                   "[g, row, col, k] = channel 16 g + k"})
        self.blocks = app.create("maxrf_blocksums", (-(-h // B), -(-w // B), c), np.uint32,
                                 chunks=(1, -(-w // B), c),
                                 attrs={"block_pixels": B,
                                        "meaning": "summed raw spectrum of each 16 x 16 pixel "
                                                   "block"})
        self.seconds = 0.0  # spent in add, summed over the threads that call it
        self._lock = threading.Lock()

    def rows(self, rows: int, width: int, dtype) -> BandRows:
        """Zeroed buffers for a band of ``rows`` (≤ 16) rows, to fill strip by strip."""
        return BandRows(np.zeros((self.groups, rows, width, GROUP),
                                 np.dtype(dtype).newbyteorder("=")),
                        np.zeros((self.groups, rows, width), np.uint32),
                        np.zeros((-(-width // B), self.channels), np.uint32))

    def add(self, r0: int, band: BandRows, pool: ThreadPoolExecutor | None = None) -> None:
        """Write the filled ``band`` as rows ``[r0, r0 + 16)``; the encoding split over
        ``pool``'s threads when given."""
        t0 = time.perf_counter()
        cs = np.zeros((self.groups + 1, *band.sums.shape[1:]), np.uint32)
        np.cumsum(band.sums, axis=0, out=cs[1:])
        half = self.groups // 2  # the counts split between two threads
        jobs = [(self.counts, (0, r0, 0, 0), band.grouped[:half]),
                (self.counts, (half, r0, 0, 0), band.grouped[half:]),
                (self.cumsum, (0, r0, 0), cs),
                (self.blocks, (r0 // B, 0, 0), band.blocks[None])]
        if pool is None:
            for writer, start, data in jobs:
                writer.write_region(start, data)
        else:
            for job in [pool.submit(LayerWriter.write_region, *j) for j in jobs]:
                job.result()
        with self._lock:
            self.seconds += time.perf_counter() - t0


@dataclass
class BandRows:
    """One band of up to 16 rows, filled strip by strip: the counts by groups of 16 channels
    (groups × rows × width × 16), each group's counts per pixel and each 16 × 16 block's
    summed spectrum."""

    grouped: np.ndarray
    sums: np.ndarray
    blocks: np.ndarray

    def put(self, col: int, strip: np.ndarray) -> None:
        """A rows × 16 columns × channels strip of counts at column ``col`` (a multiple of 16):
        runs of 16 contiguous values copied on both sides; integer counts in one compiled pass
        that also sums the groups and the block."""
        block = self.blocks[col // B]
        if strip.dtype.kind in "ui" and strip.dtype.isnative:
            _compiled_group_strip()(np.ascontiguousarray(strip), self.grouped, self.sums,
                                    block, col)
            return
        rows, cols, c = strip.shape
        whole = c // GROUP * GROUP
        part = self.grouped[:, :rows, col : col + cols]
        part[: whole // GROUP] = strip[..., :whole].reshape(
            rows, cols, -1, GROUP).transpose(2, 0, 1, 3)
        if whole < c:  # a last, partial group (the rest stays zero)
            part[-1, ..., : c - whole] = strip[..., whole:]
        self.sums[:, :rows, col : col + cols] = part.sum(axis=-1, dtype=np.uint32)
        block += strip.sum(axis=(0, 1), dtype=np.uint32)


@functools.cache
def _compiled_group_strip():
    """:func:`_group_strip` compiled, on first use: numba's import (0.15 s) is no part of
    reading band layers (the viewer's start)."""
    from numba import njit

    return njit(cache=True)(_group_strip)


def _group_strip(strip, grouped, sums, block, col):  # pragma: no cover - compiled
    """:meth:`BandRows.put` for integer counts: group by group (its rows of ``grouped``
    written in order), each 16 values copied, summed into ``sums`` and added to ``block``."""
    rows, cols, c = strip.shape
    for g in range(grouped.shape[0]):
        base = g * GROUP
        n = min(GROUP, c - base)
        for r in range(rows):
            for x in range(cols):
                s = np.uint32(0)
                for k in range(n):
                    v = strip[r, x, base + k]
                    grouped[g, r, col + x, k] = v
                    s += np.uint32(v)
                    block[base + k] += np.uint32(v)
                sums[g, r, col + x] = s


def band_layers(datastack: str | Path, provenance: dict | None = None,
                progress: bool | None = None) -> dict[str, str]:
    """Write the three band layers from ``maxrf_raw`` in one commit (for a datastack whose
    conversion did not make them): bands of 16 rows (read ahead in a thread), regrouped strip by
    strip as the conversion does, summed into the cumulative planes and the 16 × 16 block
    spectra, and encoded by two threads."""
    started = time.time()
    ds = DataStack.of(datastack)
    if "maxrf_raw" not in ds:
        raise MaxrfError("no layer 'maxrf_raw': convert the scan first", ds.path)
    raw = ds.array("maxrf_raw")
    h, w, c = raw.shape
    rows = [(r, min(r + B, h)) for r in range(0, h, B)]
    bar = progress_bar(len(rows), progress, f"band layers {ds.path.name}")
    with ds.appending() as app:
        sink = BandSink(app, (h, w, c), raw.dtype)
        try:
            with ThreadPoolExecutor(2) as encoders:
                bands = read_ahead(rows, lambda r: np.asarray(raw[r[0] : r[1]]), 1, 1)
                for (r0, r1), y in bands:
                    band = sink.rows(r1 - r0, w, raw.dtype)
                    for j in range(0, w, B):
                        band.put(j, y[:, j : j + B])
                    sink.add(r0, band, encoders)
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        finish_bands(app, time.time() - started, provenance)
    return app.committed


def finish_bands(app, seconds: float, provenance: dict | None, made_by: str = "bands") -> None:
    """The band layers' provenance: their step's, which step's pass wrote them, and the
    seconds they took (in another step's pass: the time spent on them there)."""
    meta = {"step": "bands", "code_version": step("bands").version, "params": {"group": GROUP},
            "pass": made_by}
    meta.update(provenance or {})
    meta["duration_s"] = round(seconds, 3)
    for name in LAYERS:
        app.finish(name, {"maxrf": meta})


class BandReader:
    """Fast reads for a viewer: band images, rectangle spectra, single spectra."""

    def __init__(self, datastack: str | Path) -> None:
        self.ds = DataStack.of(datastack)
        missing = [n for n in (*LAYERS, "maxrf_raw") if n not in self.ds]
        if missing:
            raise MaxrfError(f"no layer {', '.join(missing)}: run 'maxrf process' first",
                             self.ds.path)
        self.raw = self.ds.array("maxrf_raw")
        self.reader = BlockReader(self.ds, "maxrf_raw")  # straight from the zip: 1.5x zarr
        self.cumsum = self.ds.array("maxrf_bandcumsum")
        self.counts = self.ds.array("maxrf_bandcounts")
        self.blocks = self.ds.array("maxrf_blocksums")
        self.height, self.width, self.channels = self.raw.shape
        self.group = int(self.cumsum.attrs.get("group_channels", GROUP))

    def band(self, lo: int, hi: int) -> np.ndarray:
        """Sum of raw counts over channels ``[lo, hi)`` per pixel (height × width, uint32)."""
        lo, hi = max(int(lo), 0), min(int(hi), self.channels)
        if hi <= lo:
            return np.zeros((self.height, self.width), np.uint32)
        g, n = self.group, self.channels
        g_lo, g_hi = -(-lo // g), hi // g
        if g_lo > g_hi:  # inside one group: the channels themselves
            return self._channels(lo, hi)
        with ThreadPoolExecutor(4) as pool:
            top = pool.submit(lambda: self.cumsum[g_hi])
            bottom = pool.submit(lambda: self.cumsum[g_lo])
            left = pool.submit(self._channels, lo, min(g_lo * g, n))
            right = pool.submit(self._channels, g_hi * g, hi)
            return (top.result() - bottom.result()) + left.result() + right.result()

    def _channels(self, lo: int, hi: int) -> np.ndarray | int:
        """Counts of channels ``[lo, hi)`` within one group of 16, per pixel (0 when empty)."""
        if hi <= lo:
            return 0
        if self.counts.ndim == 3:  # step version 2: channel-major
            return self.counts[lo:hi].sum(axis=0, dtype=np.uint32)
        g = lo // self.group
        return self.counts[g, :, :, lo - g * self.group : hi - g * self.group].sum(
            axis=-1, dtype=np.uint32)

    def spectrum(self, row: int, col: int) -> np.ndarray:
        return self.reader.read(row, row + 1, col, col + 1)[0, 0]

    def rect_sum(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Summed raw spectrum of rows ``[r0, r1)`` × columns ``[c0, c1)`` (float64)."""
        total = np.zeros(self.channels, np.float64)
        # whole 16 × 16 blocks from maxrf_blocksums, the border from maxrf_raw
        br0, br1 = -(-r0 // B), r1 // B
        bc0, bc1 = -(-c0 // B), c1 // B
        parts = []
        if br1 > br0 and bc1 > bc0:
            parts.append(("blocks", (br0, br1, bc0, bc1)))
            inner = (br0 * B, br1 * B, bc0 * B, bc1 * B)
            strips = [(r0, inner[0], c0, c1), (inner[1], r1, c0, c1),
                      (inner[0], inner[1], c0, inner[2]), (inner[0], inner[1], inner[3], c1)]
        else:
            strips = [(r0, r1, c0, c1)]
        parts += [("raw", s) for s in strips if s[1] > s[0] and s[3] > s[2]]

        def read(part):
            kind, (a, b, c, d) = part
            if kind == "blocks":
                return np.asarray(self.blocks[a:b, c:d, :]).sum(axis=(0, 1), dtype=np.float64)
            return self.reader.read(a, b, c, d).sum(axis=(0, 1), dtype=np.float64)

        with ThreadPoolExecutor(4) as pool:
            for s in pool.map(read, parts):
                total += s
        return total
