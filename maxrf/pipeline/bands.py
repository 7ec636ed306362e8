"""Layers made for looking: any energy band's image and any rectangle's mean spectrum in well
under a second, whatever the scan size, without reading the cube.

- ``maxrf_bandcumsum`` (G + 1, height, width) uint32: per pixel, the counts of channels
  ``[0, 16·g)`` — a band image of whole 16-channel groups is the difference of two planes;
- ``maxrf_bandcounts`` (channels, height, width): the raw counts channel-major, for the up to
  15 channels at each edge of a band that do not fill a group;
- ``maxrf_blocksums`` (height/16, width/16, channels) uint32: the summed spectrum of every
  16 × 16-pixel chunk, so a rectangle's spectrum reads whole blocks here and only its border
  from ``maxrf_raw``.
All three come from one pass over ``maxrf_raw`` in bands of 16 rows (bounded memory: a band
of a 1692 × 1592 × 4096 scan is 0.2 GB of counts).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.datastack.layers import CUBE_CHUNK_PIXELS
from maxrf.errors import MaxrfError
from maxrf.pipeline.blocks import progress_bar, read_ahead
from maxrf.pipeline.table import step

GROUP = 16  # channels per cumulative-sum plane (a band's edges read at most 15 channels)
LAYERS = step("bands").layers
B = CUBE_CHUNK_PIXELS  # the pass goes in bands of 16 full-width rows; chunks span the width


def band_layers(datastack: str | Path, provenance: dict | None = None,
                progress: bool | None = None) -> dict[str, str]:
    """Write the three band layers from ``maxrf_raw`` in one commit: bands of 16 rows (read
    ahead in a thread), each turned channel-major, summed into the cumulative planes and the
    16 × 16 block spectra, and encoded by two threads."""
    started = time.time()
    ds = DataStack.of(datastack)
    if "maxrf_raw" not in ds:
        raise MaxrfError("no layer 'maxrf_raw': convert the scan first", ds.path)
    raw = ds.array("maxrf_raw")
    h, w, c = raw.shape
    groups = -(-c // GROUP)
    count_dtype = np.dtype(raw.dtype).newbyteorder("=")
    rows = [(r, min(r + B, h)) for r in range(0, h, B)]
    bar = progress_bar(len(rows), progress, f"band layers {ds.path.name}")
    meta = {"step": "bands", "code_version": step("bands").version, "params": {"group": GROUP}}
    meta.update(provenance or {})
    with ds.appending() as app:
        cs_w = app.create("maxrf_bandcumsum", (groups + 1, h, w), np.uint32,
                          chunks=(1, min(B, h), w),
                          attrs={"group_channels": GROUP,
                                 "meaning": f"plane g: counts of channels [0, {GROUP} g)"})
        bc_w = app.create("maxrf_bandcounts", (c, h, w), count_dtype,
                          chunks=(min(GROUP, c), min(B, h), w),
                          attrs={"meaning": "maxrf_raw, channel-major"})
        bs_w = app.create("maxrf_blocksums", (-(-h // B), -(-w // B), c), np.uint32,
                          chunks=(1, -(-w // B), c),
                          attrs={"block_pixels": B,
                                 "meaning": "summed raw spectrum of each 16 x 16 pixel block"})

        def encode(writer, start, data):
            writer.write_region(start, data)

        try:
            with ThreadPoolExecutor(2) as encoders:
                bands = read_ahead(rows, lambda r: np.asarray(raw[r[0] : r[1]]), 1, 1)
                for (r0, r1), y in bands:
                    bm = np.ascontiguousarray(np.moveaxis(y, -1, 0))  # channels × rows × cols
                    pad = groups * GROUP - c
                    grouped = np.pad(bm, ((0, pad), (0, 0), (0, 0))) if pad else bm
                    sums = grouped.reshape(groups, GROUP, *bm.shape[1:]).sum(
                        axis=1, dtype=np.uint32)
                    cs = np.zeros((groups + 1, *bm.shape[1:]), np.uint32)
                    np.cumsum(sums, axis=0, out=cs[1:])
                    wb = -(-w // B)
                    yp = y if w % B == 0 else np.pad(y, ((0, 0), (0, wb * B - w), (0, 0)))
                    blocks = yp.reshape(r1 - r0, wb, B, c).sum(axis=(0, 2), dtype=np.uint32)
                    half = (-(-c // GROUP) // 2) * GROUP  # split the counts between 2 threads
                    jobs = [
                        encoders.submit(encode, bc_w, (0, r0, 0), bm[:half]),
                        encoders.submit(encode, bc_w, (half, r0, 0), bm[half:]),
                        encoders.submit(encode, cs_w, (0, r0, 0), cs),
                        encoders.submit(encode, bs_w, (r0 // B, 0, 0), blocks[None]),
                    ]
                    for job in jobs:
                        job.result()
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        meta["duration_s"] = round(time.time() - started, 3)
        for name in app.writers:
            app.finish(name, {"maxrf": meta})
    return app.committed


class BandReader:
    """Fast reads for a viewer: band images, rectangle spectra, single spectra."""

    def __init__(self, datastack: str | Path) -> None:
        self.ds = DataStack.of(datastack)
        missing = [n for n in (*LAYERS, "maxrf_raw") if n not in self.ds]
        if missing:
            raise MaxrfError(f"no layer {', '.join(missing)}: run 'maxrf process' first",
                             self.ds.path)
        self.raw = self.ds.array("maxrf_raw")
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
        g_lo, g_hi = -(-lo // self.group), hi // self.group
        if g_lo >= g_hi:  # inside one group: the channels themselves
            return self.counts[lo:hi].sum(axis=0, dtype=np.uint32)
        with ThreadPoolExecutor(4) as pool:
            top = pool.submit(lambda: self.cumsum[g_hi])
            bottom = pool.submit(lambda: self.cumsum[g_lo])
            left = pool.submit(lambda: self.counts[lo : g_lo * self.group].sum(
                axis=0, dtype=np.uint32) if lo < g_lo * self.group else 0)
            right = pool.submit(lambda: self.counts[g_hi * self.group : hi].sum(
                axis=0, dtype=np.uint32) if hi > g_hi * self.group else 0)
            return (top.result() - bottom.result()) + left.result() + right.result()

    def spectrum(self, row: int, col: int) -> np.ndarray:
        return np.asarray(self.raw[row, col, :])

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
            src = self.blocks if kind == "blocks" else self.raw
            return np.asarray(src[a:b, c:d, :]).sum(axis=(0, 1), dtype=np.float64)

        with ThreadPoolExecutor(4) as pool:
            for s in pool.map(read, parts):
                total += s
        return total
