"""Layers made for looking: any energy band's image and any rectangle's mean spectrum in well
under a second, whatever the scan size, without reading the cube.

- ``maxrf_bandcumsum`` (G + 1, height, width) uint32: per pixel, the counts of channels
  ``[0, 8·g)``: a band image is the difference of two planes, its edges on the nearest
  8-channel boundaries (≈ 80 eV, half the detector's resolution; the viewer snaps the band it
  shows to them);
- ``maxrf_blocksums`` (height/16, width/16, channels) uint32: the summed spectrum of every
  16 × 16-pixel chunk, so a rectangle's spectrum reads whole blocks here and only its border
  from ``maxrf_raw``.
Both come from the conversion's own pass over the counts (blocks of 16 whole rows), or for an
older datastack from one pass over ``maxrf_raw`` in bands of 16 rows (bounded memory: a band of
a 1692 × 1592 × 4096 scan is 0.2 GB of counts). Datastacks of step versions 2 and 3 also hold
``maxrf_bandcounts`` (the counts again, by groups of 16 channels) and read any band exactly;
writing that second copy of the counts cost 0.6-0.8 of the conversion, the planes alone a tenth.
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
from maxrf.scratch import thread_buffer

GROUP = 8  # channels per cumulative-sum plane: a band's edges fall on multiples of 8
EXACT_BYTES = 256 * 2**20  # counts small enough to read a band's edge channels from maxrf_raw
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
        self.blocks = app.create("maxrf_blocksums", (-(-h // B), -(-w // B), c), np.uint32,
                                 chunks=(1, -(-w // B), c),
                                 attrs={"block_pixels": B,
                                        "meaning": "summed raw spectrum of each 16 x 16 pixel "
                                                   "block"})
        self.seconds = 0.0  # spent in add, summed over the threads that call it
        self._lock = threading.Lock()

    def rows(self, rows: int, width: int, dtype) -> BandRows:
        """Buffers for a band of ``rows`` (≤ 16) rows, to fill strip by strip (this thread's,
        reused band after band: fresh ones are page faults on every band). Each plane is
        contiguous (a chunk, encoded without a copy) and 64 bytes of padding part them, so that
        their stride is no multiple of 4 KiB: a pixel's running sums go to G + 1 planes, and
        at such a stride every one of them fell in the same cache set (2.7 -> 1.3 µs per
        spectrum)."""
        plane = rows * width + 16
        base = thread_buffer("bandplanes", ((self.groups + 1) * plane,), np.uint32)
        cumsum = np.lib.stride_tricks.as_strided(
            base, (self.groups + 1, rows, width), (plane * 4, width * 4, 4), writeable=True)
        cumsum[0] = 0
        return BandRows(cumsum, np.zeros((-(-width // B), self.channels), np.uint32))

    def add(self, r0: int, band: BandRows, pool: ThreadPoolExecutor | None = None) -> None:
        """Write the filled ``band`` as rows ``[r0, r0 + 16)``; the encoding split over
        ``pool``'s threads when given."""
        t0 = time.perf_counter()
        half = (self.groups + 1) // 2  # the planes split between two threads
        jobs = [(self.cumsum, (0, r0, 0), band.cumsum[:half]),
                (self.cumsum, (half, r0, 0), band.cumsum[half:]),
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
    """One band of up to 16 rows, filled strip by strip: each pixel's counts of channels
    ``[0, 8 g)`` (planes × rows × width, plane 0 zero) and each 16 × 16 block's summed
    spectrum."""

    cumsum: np.ndarray
    blocks: np.ndarray

    def put(self, col: int, strip: np.ndarray) -> None:
        """A rows × 16 columns × channels strip of counts at column ``col`` (a multiple of 16):
        integer counts in one compiled pass (running sums and the block's spectrum)."""
        block = self.blocks[col // B]
        if strip.dtype.kind in "ui" and strip.dtype.isnative:
            _compiled_cum_strip()(np.ascontiguousarray(strip), self.cumsum, block, col)
            return
        rows, cols, c = strip.shape
        padded = np.zeros((rows, cols, (self.cumsum.shape[0] - 1) * GROUP), np.uint32)
        padded[..., :c] = strip
        sums = padded.reshape(rows, cols, -1, GROUP).sum(axis=-1, dtype=np.uint32)
        self.cumsum[1:, :rows, col : col + cols] = np.cumsum(
            sums, axis=-1, dtype=np.uint32).transpose(2, 0, 1)
        block += strip.sum(axis=(0, 1), dtype=np.uint32)


@functools.cache
def _compiled_cum_strip():
    """:func:`_cum_strip` compiled, on first use: numba's import (0.15 s) is no part of
    reading band layers (the viewer's start)."""
    from numba import njit

    return njit(cache=True)(_cum_strip)


def _cum_strip(strip, cumsum, block, col):  # pragma: no cover - compiled
    """:meth:`BandRows.put` for integer counts: each pixel's spectrum added to ``block`` (one
    vectorised pass), then its running sum written at every group boundary."""
    rows, cols, c = strip.shape
    whole = c // GROUP
    for r in range(rows):
        for x in range(cols):
            spec = strip[r, x]
            for k in range(c):
                block[k] += np.uint32(spec[k])
            run = np.uint32(0)
            for g in range(whole):
                for k in range(GROUP):  # a constant: unrolled
                    run += np.uint32(spec[g * GROUP + k])
                cumsum[g + 1, r, col + x] = run
            if whole < cumsum.shape[0] - 1:  # a last, partial group
                for k in range(whole * GROUP, c):
                    run += np.uint32(spec[k])
                cumsum[whole + 1, r, col + x] = run


def band_layers(datastack: str | Path, provenance: dict | None = None,
                progress: bool | None = None) -> dict[str, str]:
    """Write the band layers from ``maxrf_raw`` in one commit (for a datastack whose
    conversion did not make them): bands of 16 rows (read ahead in a thread), summed strip by
    strip as the conversion does into the cumulative planes and the 16 × 16 block spectra, and
    encoded by two threads."""
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

    def __init__(self, datastack: str | Path, exact_bytes: int = EXACT_BYTES) -> None:
        self.ds = DataStack.of(datastack)
        missing = [n for n in (*LAYERS, "maxrf_raw") if n not in self.ds]
        if missing:
            raise MaxrfError(f"no layer {', '.join(missing)}: run 'maxrf process' first",
                             self.ds.path)
        self.raw = self.ds.array("maxrf_raw")
        self.reader = BlockReader(self.ds, "maxrf_raw")  # straight from the zip: 1.5x zarr
        self.cumsum = self.ds.array("maxrf_bandcumsum")
        # planes of step versions 2 and 3 came with the counts by groups: exact edges (a newer
        # version's planes beside an older version's counts do not)
        made = str(self.cumsum.attrs.get("maxrf", {}).get("code_version", ""))
        self.counts = (self.ds.array("maxrf_bandcounts")
                       if made in ("2", "3") and "maxrf_bandcounts" in self.ds else None)
        self.block_reader = BlockReader(self.ds, "maxrf_blocksums")
        self.height, self.width, self.channels = self.raw.shape
        self.group = int(self.cumsum.attrs.get("group_channels", GROUP))
        # a small scan's band edges come exactly from its counts (one read of them: ≤ 0.1 s)
        self.from_raw = self.counts is None and self.raw.nbytes <= exact_bytes

    @property
    def exact(self) -> bool:
        """Whether any band is summed exactly (else its edges move to group boundaries)."""
        return self.counts is not None or self.from_raw

    def channels_of(self, lo: int, hi: int, outward: bool = False) -> tuple[int, int]:
        """The channels ``[lo, hi)`` that :meth:`band` sums for a band asked as ``[lo, hi)``:
        the same when :attr:`exact`, else the edges on the nearest group boundaries
        (``outward``: the smallest whole groups that hold the band), never empty when the band
        is not."""
        lo, hi = max(int(lo), 0), min(int(hi), self.channels)
        if hi <= lo or self.exact:
            return lo, hi
        g = self.group
        if outward:
            a, b = lo // g, -(-hi // g)
        else:
            a, b = int(np.floor(lo / g + 0.5)), int(np.floor(hi / g + 0.5))
            if hi == self.channels:  # the axis' end is an edge too (when not a multiple of g)
                b = -(-hi // g)
            if b <= a:  # narrower than a group: the group it mostly lies in
                a = min(int((lo + hi) / 2 // g), (self.channels - 1) // g)
                b = a + 1
        return a * g, min(b * g, self.channels)

    def band(self, lo: int, hi: int, outward: bool = False) -> np.ndarray:
        """Sum of raw counts over the channels :meth:`channels_of` gives for ``[lo, hi)`` per
        pixel (height × width, uint32)."""
        lo, hi = self.channels_of(lo, hi, outward)
        if hi <= lo:
            return np.zeros((self.height, self.width), np.uint32)
        g, n = self.group, self.channels
        # whole groups from two planes (the last plane: the whole spectrum), the channels at
        # the edges that do not fill a group from the counts (none when the edges fall on
        # group boundaries, as they always do without exact layers)
        g_lo, g_hi = -(-lo // g), -(-hi // g) if hi == n else hi // g
        if g_lo > g_hi:  # inside one group
            return self._channels([(lo, hi)])
        edges = [(lo, min(g_lo * g, n)), (min(g_hi * g, n), hi)]
        with ThreadPoolExecutor(3) as pool:  # the reads side by side
            top = pool.submit(lambda: self.cumsum[g_hi])
            rest = pool.submit(self._channels, edges)
            planes = (top.result() - self.cumsum[g_lo]) if g_lo else top.result()
            return planes + rest.result()

    def _channels(self, ranges: list[tuple[int, int]]) -> np.ndarray | int:
        """Per pixel, the counts of the channels in ``ranges`` (each within one group; 0 when
        they are all empty): from the counts by groups (step versions 2 and 3), else from
        ``maxrf_raw`` in one read (a small scan)."""
        ranges = [(a, b) for a, b in ranges if b > a]
        if not ranges:
            return 0
        if self.counts is None:
            return self.reader.channel_sums(ranges)
        return sum(self._grouped(a, b) for a, b in ranges)

    def _grouped(self, lo: int, hi: int) -> np.ndarray:
        """Counts of channels ``[lo, hi)`` within one group, per pixel, from the counts by
        groups."""
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
            src = self.block_reader if kind == "blocks" else self.reader
            return src.sum(a, b, c, d, threads=1).astype(np.float64)

        with ThreadPoolExecutor(4) as pool:
            for s in pool.map(read, parts):
                total += s
        return total
