"""Layers made for looking: any energy band's image and any rectangle's mean spectrum in well
under a second, whatever the scan size, without reading the cube.

- ``maxrf_bandcumsum`` (G + 1, height, width) uint32: per pixel, the counts of channels
  ``[0, 32·g)`` — a band image of whole 32-channel groups is the difference of two planes;
- ``maxrf_bandcounts`` (channels, height, width): the raw counts band-major, for the up to 31
  channels at each edge of a band that do not fill a group;
- ``maxrf_blocksums`` (height/16, width/16, channels) uint32: the summed spectrum of every
  16 × 16-pixel chunk, so a rectangle's spectrum reads whole blocks here and only its border
  from ``maxrf_raw``.
All three come from one pass over ``maxrf_raw`` (32 × 256-pixel tiles, bounded memory).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .datastack import DataStack
from .datastack.layers import CUBE_CHUNK_PIXELS
from .errors import MaxrfError

VERSION = "1"
GROUP = 32  # channels per cumulative-sum plane
TILE = (32, 256)  # rows × columns per pass tile (and chunk of the band layers)
LAYERS = ("maxrf_bandcumsum", "maxrf_bandcounts", "maxrf_blocksums")
B = CUBE_CHUNK_PIXELS


def _tiles(h: int, w: int):
    return [(r, min(r + TILE[0], h), c, min(c + TILE[1], w))
            for r in range(0, h, TILE[0]) for c in range(0, w, TILE[1])]


def band_layers(datastack: str | Path, provenance: dict | None = None,
                progress: bool | None = None) -> dict[str, str]:
    """Write the three band layers from ``maxrf_raw`` in one commit."""
    from .convert import _progress_bar

    started = time.time()
    ds = DataStack(datastack)
    if "maxrf_raw" not in ds:
        raise MaxrfError("no layer 'maxrf_raw': convert the scan first", ds.path)
    raw = ds.array("maxrf_raw")
    h, w, c = raw.shape
    groups = -(-c // GROUP)
    count_dtype = np.dtype(raw.dtype).newbyteorder("=")
    tiles = _tiles(h, w)
    bar = _progress_bar(len(tiles), progress, f"band layers {ds.path.name}")
    meta = {"step": "bands", "code_version": VERSION, "params": {"group": GROUP}}
    meta.update(provenance or {})
    with ds.appending() as app:
        cs_w = app.create("maxrf_bandcumsum", (groups + 1, h, w), np.uint32,
                          chunks=(8, min(TILE[0], h), min(TILE[1], w)),
                          attrs={"group_channels": GROUP,
                                 "meaning": "plane g: counts of channels [0, 32 g) per pixel"})
        bc_w = app.create("maxrf_bandcounts", (c, h, w), count_dtype,
                          chunks=(min(2 * GROUP, c), min(TILE[0], h), min(TILE[1], w)),
                          attrs={"meaning": "maxrf_raw, channel-major"})
        bs_w = app.create("maxrf_blocksums", (-(-h // B), -(-w // B), c), np.uint32,
                          chunks=(min(TILE[0] // B, -(-h // B)), min(TILE[1] // B, -(-w // B)), c),
                          attrs={"block_pixels": B,
                                 "meaning": "summed raw spectrum of each 16 x 16 pixel block"})

        def work(tile):
            r0, r1, c0, c1 = tile
            y = np.asarray(raw[r0:r1, c0:c1, :])
            bm = np.ascontiguousarray(np.moveaxis(y, -1, 0))  # channels × rows × cols
            bc_w.write_region((0, r0, c0), bm)
            pad = groups * GROUP - c
            grouped = np.pad(bm, ((0, pad), (0, 0), (0, 0))) if pad else bm
            sums = grouped.reshape(groups, GROUP, *bm.shape[1:]).sum(axis=1, dtype=np.uint32)
            cs = np.zeros((groups + 1, *bm.shape[1:]), np.uint32)
            np.cumsum(sums, axis=0, out=cs[1:])
            cs_w.write_region((0, r0, c0), cs)
            hb, wb = -(-(r1 - r0) // B), -(-(c1 - c0) // B)
            blocks = np.zeros((hb, wb, c), np.uint32)
            for i in range(hb):
                for j in range(wb):
                    part = y[i * B : (i + 1) * B, j * B : (j + 1) * B]
                    blocks[i, j] = part.sum(axis=(0, 1), dtype=np.uint32)
            bs_w.write_region((r0 // B, c0 // B, 0), blocks)
            return tile

        try:
            with ThreadPoolExecutor(2) as pool:
                for _ in pool.map(work, tiles):
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
        self.ds = DataStack(datastack)
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
