"""One-pass conversion of a ``.raw`` scan into datastack layers.

Every block of 16 x N pixels (all channels) is read once; each 16 x 16-pixel strip of it is encoded
into ``maxrf_raw``, smoothed, rounded to the cube's precision and reduced to per-channel max, argmax
and sums in one compiled pass (``maxrf.xrf.smoothing``), then encoded into ``maxrf_cube`` (strips
are whole zarr chunks, so parallel writes never touch the same chunk). The blocks are dask tasks:
local threads by default, or a ``dask.distributed`` scheduler.
Layers become visible together at commit; an interrupted conversion leaves nothing visible.
"""

from __future__ import annotations

import gc
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
from dask.callbacks import Callback
from scipy.ndimage import gaussian_filter1d

from maxrf.datastack import ChunkEncoder, DataStack, LayerWriter
from maxrf.datastack.layers import CUBE_CHUNK_PIXELS, PRECISION_BITS
from maxrf.errors import DataWarning, MaxrfError
from maxrf.io.raw import RawFile, open_scan
from maxrf.pipeline.bands import BandSink, finish_bands
from maxrf.pipeline.blocks import progress_bar
from maxrf.pipeline.table import DEFAULT_PRECISION_BITS, PARAMS, default, step
from maxrf.scratch import thread_buffer

if TYPE_CHECKING:
    from maxrf.xrf.smoothing import ChannelStats

LAYERS = step("convert").layers
AHEAD = 2  # blocks read ahead (one per worker thread on 2 cores): disk reads overlap the work


@dataclass(frozen=True)
class Block:
    """Output rows/cols of one block and where they come from in the (unflipped) file."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    flip_v: bool
    flip_h: bool
    height: int
    width: int

    def source(self) -> tuple[slice, slice]:
        (r0, r1), (c0, c1) = self.rows, self.cols
        if self.flip_v:
            r0, r1 = self.height - r1, self.height - r0
        if self.flip_h:
            c0, c1 = self.width - c1, self.width - c0
        return slice(r0, r1), slice(c0, c1)


def plan_blocks(
    height: int, width: int, channels: int, flip_v: bool, flip_h: bool, target_mb: int = 64,
    full_rows: bool = False,
) -> list[Block]:
    """Blocks aligned to the square cube chunks, about ``target_mb`` MB of float32 each (with
    ``full_rows``: 16 whole rows each, the band layers' unit)."""
    p = CUBE_CHUNK_PIXELS
    cols = max(p, (target_mb * 2**20 // (p * channels * 4)) // p * p) if not full_rows else width
    return [
        Block((r, min(r + p, height)), (c, min(c + cols, width)), flip_v, flip_h, height, width)
        for r in range(0, height, p)
        for c in range(0, width, cols)
    ]


MAX_LISTED_BAD = 100_000  # glitch pixels listed in the attributes (all are excluded)


def _precision_note(sigma: float, bits: int | None) -> str:
    if sigma == 0 or bits is None:
        return "exact (float32 rounding of the smoothing)"
    return (
        f"each spectrum rounded to multiples of 2**(e-{bits}), 2**e <= its max|value| < 2**(e+1): "
        f"error <= {2.0 ** -(bits + 1):.2g} x the spectrum's max"
    )


def _pixel_ids(block: Block, col0: int, shape: tuple[int, int]) -> np.ndarray:
    """Row-major output pixel numbers of a (rows, cols) strip starting at output column col0."""
    r = np.arange(block.rows[0], block.rows[0] + shape[0], dtype=np.int64)
    c = np.arange(col0, col0 + shape[1], dtype=np.int64)
    return (r[:, None] * block.width + c[None, :]).reshape(-1)


def _read_strips(raw: RawFile, block: Block, step: int):
    """Yield (output column, pixels x channels) strips of ``block``, ``step`` columns wide, flips
    applied. Pixel-ordered files are read strip by strip into a reused buffer; image-ordered ones
    (one plane per channel) once per block."""
    (r0, r1), (c0, c1) = block.rows, block.cols
    by_pixel = raw.header.record_by in ("vector", "dont-care")
    data = None if by_pixel else raw.read_block(*block.source())
    for j in range(c0, c1, step):
        part = replace(block, cols=(j, min(j + step, c1)))
        if by_pixel:
            shape = (r1 - r0, part.cols[1] - j, raw.header.depth)
            strip = raw.read_block(*part.source(), out=thread_buffer("raw", shape, raw.dtype))
        else:
            lo = c1 - part.cols[1] if block.flip_h else j - c0
            strip = data[:, lo : lo + part.cols[1] - j]
        if block.flip_v:
            strip = strip[::-1]
        if block.flip_h:
            strip = strip[:, ::-1]
        yield j, np.ascontiguousarray(strip)


def process_block(
    raw: RawFile,
    block: Block,
    raw_enc: ChunkEncoder | None,
    cube_enc: ChunkEncoder,
    sigma: float,
    precision_bits: int | None,
    sinks: tuple[LayerWriter | None, LayerWriter] | None = None,
    ahead: Block | None = None,
    bands: BandSink | None = None,
):
    """Read, smooth and encode one block; return its per-channel statistics and the encoded
    chunks (or write them to ``sinks`` right away when running in this process). The rows of
    this block and of ``ahead`` are read ahead by the kernel meanwhile. With ``bands`` (a block
    of whole rows) the counts also go, regrouped, into the band layers."""
    from maxrf.xrf.smoothing import smooth_reduce  # numba: imported when there is work to do

    for b in (block, ahead):
        if b is not None:
            raw.prefetch(*b.source())
    raw_chunks, cube_chunks, stats = [], [], None
    r0 = block.rows[0]
    if bands is not None:
        band = bands.rows(block.rows[1] - r0, block.cols[1] - block.cols[0], raw.dtype)
    # One chunk-wide strip at a time: its smoothed cube is exactly one chunk.
    for j, strip in _read_strips(raw, block, cube_enc.chunks[1]):
        start = (r0, j, 0)
        if bands is not None:
            band.put(j - block.cols[0], strip)
        raw_part = None if raw_enc is None else raw_enc.encode_chunk(start, strip, "raw")
        flat = strip.reshape(-1, strip.shape[-1])
        out = thread_buffer("cube", flat.shape, np.float32)
        ids = _pixel_ids(block, j, strip.shape[:2])
        odd = _odd_values(strip)
        bad = glitch_pixels(flat)
        if bad.size:  # kept in maxrf_raw; zeros in the cube and out of the spectra
            flat = flat.copy()
            flat[bad] = 0
        flat, part = smooth_reduce(flat, sigma, precision_bits, ids, out=out)
        if odd != (0, 0) or bad.size:
            part = replace(part, nonfinite=odd[0], negative=odd[1],
                           bad=tuple(int(i) for i in ids[bad]))
        stats = part if stats is None else stats.merge(part)
        cube_part = cube_enc.encode_chunk(start, flat.reshape(strip.shape), "cube")
        if sinks is not None:  # write while the encoded views are valid
            if raw_part is not None:
                sinks[0].put([raw_part])
            sinks[1].put([cube_part])
        else:
            if raw_part is not None:
                raw_chunks.append((raw_part[0], bytes(raw_part[1])))
            cube_chunks.append((cube_part[0], bytes(cube_part[1])))
    if bands is not None:
        bands.add(r0, band)
    return stats, block, raw_chunks, cube_chunks


def glitch_pixels(flat: np.ndarray) -> np.ndarray:
    """Indices of (pixels, channels) rows that hold one non-zero value in every channel: a
    read-out glitch, not a spectrum (one of them flattens the max spectrum of the whole scan).
    Three sampled channels pick the candidates; only those are checked in full."""
    c = flat.shape[-1]
    if c < 3 or not flat.shape[0]:
        return np.zeros(0, np.intp)
    first = flat[:, 0]
    cand = np.flatnonzero((first != 0) & (flat[:, c // 2] == first) & (flat[:, -1] == first))
    if not cand.size:
        return cand
    rows = flat[cand]
    return cand[np.all(rows == rows[:, :1], axis=1)]


def _odd_values(strip: np.ndarray) -> tuple[int, int]:
    """How many values of a strip are NaN/inf and how many are negative (counts never are)."""
    kind = strip.dtype.kind
    if kind == "u":
        return 0, 0
    negative = int(np.count_nonzero(strip < 0))
    nonfinite = int(strip.size - np.count_nonzero(np.isfinite(strip))) if kind == "f" else 0
    return nonfinite, negative


def data_warnings(stats: ChannelStats, total: int, dtype: np.dtype, width: int = 1) -> list[str]:
    """One line per kind of value an X-ray count cannot have (they are smoothed as 0 / as is)."""
    out = []
    if stats.nonfinite:
        out.append(
            f"{stats.nonfinite} of {total} values are NaN or infinite ({dtype} data): "
            "they count as 0 in the cube and spectra"
        )
    if stats.negative:
        out.append(
            f"{stats.negative} of {total} values are negative ({dtype} data): counts cannot be; "
            "check the header's data-type and byte-order"
        )
    if stats.bad:
        first = ", ".join(f"({r}, {c})" for r, c in bad_pixels(stats, width)[:5])
        more = " …" if len(stats.bad) > 5 else ""
        out.append(
            f"{len(stats.bad)} pixel(s) hold the same count in every channel (a read-out "
            f"glitch): {first}{more} (row, col); excluded from the cube, spectra and element "
            "maps (kept in maxrf_raw)"
        )
    return out


def bad_pixels(stats: ChannelStats, width: int) -> list[list[int]]:
    """(row, col) of the glitch pixels found by the conversion."""
    return [[int(i) // width, int(i) % width] for i in stats.bad]


def _reduce(parts: list[ChannelStats], height: int, width: int, sigma: float):
    """Max spectrum, mean spectrum, max pixels and raw mean spectrum from the blocks' stats. The
    mean of the smoothed spectra is the smoothed mean of the raw ones (linearity), in float64."""
    stats = parts[0]
    for part in parts[1:]:
        stats = stats.merge(part)
    pixels = np.stack(np.divmod(stats.where, width), axis=1).astype(np.int64)
    rawmean = stats.raw_total / (height * width)
    mean = gaussian_filter1d(rawmean, sigma, mode="reflect", truncate=4.0) if sigma else rawmean
    return stats.best, mean, pixels, rawmean, stats


class _TqdmCallback(Callback):
    def __init__(self, bar) -> None:
        super().__init__()
        self.bar = bar

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        if isinstance(result, tuple) and len(result) == 4 and isinstance(result[1], Block):
            self.bar.update(1)


MAX_SIGMA = PARAMS["sigma"].bounds[1]  # channels; the reference uses 7, wider is no smoothing


def convert(
    raw_path: str | Path,
    output: str | Path | None = None,
    sigma: float = default("sigma"),
    flip_horizontal: bool = False,
    flip_vertical: bool = False,
    rpl_path: str | Path | None = None,
    precision_bits: int | None = DEFAULT_PRECISION_BITS,
    scheduler: Any = None,
    progress: bool | None = None,
    provenance: dict | None = None,
    bands: dict | None = None,
) -> dict[str, str]:
    """Convert a scan into the datastack ``output`` (default ``SCAN.datastack`` beside the raw).

    Writes ``maxrf_raw`` (lossless counts), ``maxrf_cube`` (float32, smoothed with ``sigma``
    channels), ``maxrf_maxspectrum``, ``maxrf_sumspectrum`` (the mean spectrum, as maxrf4u stores
    it) and ``maxrf_maxpixels`` in one commit; returns ``{layer: stored name}``. ``scheduler`` is a
    ``dask.distributed`` address or ``Client``; by default local threads do the work, and with
    ``bands`` (their provenance) they also write the viewer's band layers in the same pass
    (:mod:`maxrf.pipeline.bands`; a distributed run leaves them to their own step).
    """
    started = time.time()
    if not 0 <= sigma <= MAX_SIGMA:
        raise MaxrfError(f"sigma must be a number from 0 to {MAX_SIGMA:g} channels, got {sigma}")
    if precision_bits is not None and (
        isinstance(precision_bits, bool) or int(precision_bits) not in PRECISION_BITS
    ):
        raise MaxrfError(
            f"precision_bits must be between {PRECISION_BITS[0]} and {PRECISION_BITS[-1]} "
            f"(or None: lossless), got {precision_bits}"
        )
    scan = open_scan(raw_path, rpl_path)
    raw, rpl, header = scan.raw, scan.rpl, scan.header
    output = Path(output) if output else raw.with_suffix(".datastack")
    h, w, c = header.shape
    rawfile = scan.file()
    local = scheduler is None
    with_bands = bands is not None and local
    blocks = plan_blocks(h, w, c, flip_vertical, flip_horizontal, full_rows=with_bands)
    params = {
        "sigma": float(sigma),
        "flip_horizontal": bool(flip_horizontal),
        "flip_vertical": bool(flip_vertical),
        "precision_bits": None if sigma == 0 else precision_bits,
        "truncate": 4.0,
        "mode": "reflect",
    }
    source = {"raw": str(raw), "rpl": str(rpl), "header": header.to_dict(),
              "metadata": scan.metadata}
    missing = getattr(rawfile, "missing", None)  # pixels a Crono scan never measured: zeros
    if missing is not None and len(missing):
        source["missing_pixels"] = np.asarray(missing).tolist()[:100_000]
    ds = DataStack(output)
    with ds.appending() as app:
        # Always 16x16-pixel chunks with all channels: the blocks below are aligned to them.
        chunks = (min(CUBE_CHUNK_PIXELS, h), min(CUBE_CHUNK_PIXELS, w), c)
        raw_w = app.create("maxrf_raw", (h, w, c), header.dtype, chunks, attrs={"source": source})
        cube_attrs = {"source": source, "precision": _precision_note(sigma, precision_bits)}
        cube_w = app.create("maxrf_cube", (h, w, c), np.float32, chunks, attrs=cube_attrs)
        raw_enc = raw_w.encoder
        sink = BandSink(app, (h, w, c), header.dtype) if with_bands else None
        tasks = [
            dask.delayed(process_block, pure=False)(
                rawfile,
                b,
                raw_enc,
                cube_w.encoder,
                float(sigma),
                precision_bits,
                (raw_w, cube_w) if local else None,
                blocks[i + AHEAD] if i + AHEAD < len(blocks) else None,
                sink,
            )
            for i, b in enumerate(blocks)
        ]
        parts = _run(tasks, scheduler, progress, f"convert {raw.name}", (raw_w, cube_w))
        maxspec, meanspec, maxpix, rawmean, stats = _reduce([p[0] for p in parts], h, w, sigma)
        odd = data_warnings(stats, h * w * c, header.dtype, w)
        for line in odd:
            warnings.warn(f"{raw}: {line}", DataWarning, stacklevel=2)
        app.write("maxrf_maxspectrum", maxspec)
        app.write("maxrf_sumspectrum", meanspec, attrs={"statistic": "mean over pixels"})
        app.write("maxrf_maxpixels", maxpix, attrs={"columns": ["row", "col"]})
        app.write("maxrf_rawmeanspectrum", rawmean, attrs={"statistic": "mean of raw counts"})
        meta = {"step": "convert", "params": params, "code_version": step("convert").version}
        if odd:
            meta["warnings"] = odd
        if stats.bad:
            meta["bad_pixels"] = bad_pixels(stats, w)[:MAX_LISTED_BAD]
        meta.update(provenance or {})
        meta["duration_s"] = round(time.time() - started, 3)
        for name in LAYERS:
            app.finish(name, {"maxrf": meta})
        if sink is not None:
            finish_bands(app, sink.seconds, bands, made_by="convert")
    return app.committed


def _run(tasks: list, scheduler: Any, progress: bool | None, desc: str, sinks) -> list:
    """Compute the block tasks: local threads (they write as they go), or a distributed
    scheduler (results stream back a few at a time and are written here)."""
    bar = progress_bar(len(tasks), progress, desc)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the work allocates few objects but big buffers; collections cost ~5 % here
    try:
        if scheduler is None:
            threads = int(os.environ.get("MAXRF_THREADS", "0")) or os.cpu_count() or 2
            with _TqdmCallback(bar) if bar is not None else nullcontext():
                return list(dask.compute(*tasks, scheduler="threads", num_workers=threads))
        return _run_distributed(tasks, scheduler, bar, sinks)
    finally:
        if gc_was_enabled:
            gc.enable()
        if bar is not None:
            bar.close()


def _run_distributed(tasks: list, scheduler: Any, bar, sinks) -> list:
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    window = 2 * max(1, sum(client.nthreads().values()))
    parts = []
    try:
        pending = list(tasks)
        futures = as_completed(client.compute(pending[:window]))
        pending = pending[window:]
        for future in futures:
            stats, block, raw_chunks, cube_chunks = future.result()
            if sinks[0] is not None:
                sinks[0].put(raw_chunks)
            sinks[1].put(cube_chunks)
            parts.append((stats, block))
            future.release()
            if bar is not None:
                bar.update(1)
            if pending:
                futures.add(client.compute(pending.pop(0)))
        return parts
    finally:
        if client is not scheduler:
            client.close()
