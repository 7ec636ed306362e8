"""Whole-file operations on a datastack: ``check`` (structure + CRCs), ``recover`` (salvage intact
layers from a damaged file, as ``zip -FF`` does) and ``repack`` (latest versions only)."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import mmap
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from isal.isal_zlib import crc32  # same CRC-32 as zlib, ~4x faster (pclmul)

from maxrf.compat.zarr import chunk_key_encoding
from maxrf.datastack import layers as L
from maxrf.datastack.layers import ROOT_META, layer_names
from maxrf.datastack.store import DataStack
from maxrf.errors import DataStackError
from maxrf.io.atomic import atomic_write

log = logging.getLogger("maxrf")

_LOCAL = b"PK\x03\x04"


@dataclass
class CheckReport:
    path: Path
    layers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    entries: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _expected_chunk_keys(meta: dict) -> Iterator[str]:
    """Every chunk key the layer's grid declares, named by zarr's own chunk-key encoding."""
    enc = chunk_key_encoding(meta.get("chunk_key_encoding") or {"name": "default"})
    shape = meta["shape"]
    chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
    grid = [math.ceil(s / c) if s else 0 for s, c in zip(shape, chunks, strict=False)]
    for coords in itertools.product(*(range(g) for g in grid)):
        yield enc.encode_chunk_key(coords)


def _max_chunk_bytes(meta: dict, chunks: list[int]) -> int:
    """The most bytes one stored chunk of this layer can take: its values uncompressed plus any
    codec's framing (a member that inflates past this is no chunk of the layer: a zip bomb)."""
    import numpy as np

    try:
        itemsize = np.dtype(str(meta.get("data_type"))).itemsize
    except TypeError:
        itemsize = 16
    raw = math.prod(chunks) * max(itemsize, 1)
    return raw + raw // 8 + (64 << 10)


def _layer_problems(name: str, meta_bytes: bytes, present: set[str],
                    sizes: dict[str, int] | None = None, junk: set[str] | None = None
                    ) -> list[str]:
    """What is wrong with one layer: its metadata, missing chunks, members outside its chunk
    grid, members larger than a chunk can be (``sizes``: each member's uncompressed size).
    With ``junk``, members outside the grid are collected there instead of reported (recover
    leaves them out and keeps the layer)."""
    try:
        meta = json.loads(meta_bytes)
    except ValueError:
        return [f"{name}: metadata is not valid JSON"]
    if meta.get("node_type") != "array":
        return []
    if meta.get("attributes", {}).get("maxrf", {}).get("complete") is False:
        return [f"{name}: marked incomplete"]
    try:
        shape = [int(x) for x in meta["shape"]]
        chunks = [int(x) for x in meta["chunk_grid"]["configuration"]["chunk_shape"]]
    except (KeyError, TypeError, ValueError):
        return [f"{name}: metadata lacks a valid shape or chunk grid"]
    if len(shape) != len(chunks) or min(chunks, default=1) < 1 or min(shape, default=0) < 0:
        return [f"{name}: metadata has an invalid shape {shape} or chunks {chunks}"]
    expected = math.prod(math.ceil(s / c) for s, c in zip(shape, chunks, strict=True))
    held = sum(1 for n in present if n.startswith(f"{name}/") and n != f"{name}/zarr.json")
    if expected > held:  # never enumerate a crafted 1e9 x 1e9 grid
        return [f"{name}: {expected - held} chunk(s) missing (declares {expected}, holds {held})"]
    expected_keys = {f"{name}/{k}" for k in _expected_chunk_keys(meta)}
    missing = sorted(expected_keys - present)
    if missing:
        return [f"{name}: {len(missing)} chunk(s) missing (first: {missing[0]})"]
    problems = []
    extra = sorted(n for n in present if n.startswith(f"{name}/") and n != f"{name}/zarr.json"
                   and n not in expected_keys)
    if extra and junk is not None:
        junk.update(extra)
    elif extra:
        problems.append(f"{name}: {len(extra)} member(s) outside its chunk grid "
                        f"(first: {extra[0]})")
    if sizes:
        limit = _max_chunk_bytes(meta, chunks)
        big = sorted(n for n in expected_keys if sizes.get(n, 0) > limit)
        if big:
            problems.append(f"{name}: {len(big)} chunk(s) larger than a chunk can be "
                            f"(first: {big[0]}, {sizes[big[0]]} bytes > {limit})")
    return problems


def check(path: str | Path) -> CheckReport:
    """Verify zip structure, every entry's CRC, the metadata, and that no chunk is missing."""
    ds = DataStack(path)
    report = CheckReport(Path(path))
    snap = ds.snapshot()  # rolls back an interrupted append first; raises if unreadable
    snap.fileobj.seek(0)
    with zipfile.ZipFile(snap.fileobj) as zf:
        infos = zf.infolist()
        report.entries = len(infos)
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            report.problems.append("duplicate zip entries (repack to clean up)")
        sizes = {i.filename: i.file_size for i in infos}
        present = set(names)
        report.layers = layer_names(names)
        meta: dict[str, bytes] = {}
        for info in infos:
            if info.file_size > MAX_INFLATED:
                report.problems.append(f"{info.filename}: {info.file_size} bytes inflated "
                                       "(larger than any chunk: not read)")
                continue
            why = _local_header_disagrees(snap.fileobj, info)
            if why:
                report.problems.append(f"{info.filename}: {why}")
                continue
            try:
                with zf.open(info) as f:
                    data = [piece for piece in iter(lambda f=f: f.read(1 << 20), b"")]
                    if info.filename.endswith("/zarr.json"):
                        meta[info.filename] = b"".join(data)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                report.problems.append(f"{info.filename}: {exc}")
        for name in report.layers:
            key = f"{name}/zarr.json"
            if key not in meta:
                report.problems.append(f"{name}: metadata unreadable")
                continue
            report.problems += _layer_problems(name, meta[key], present, sizes)
        orphans = {n.split("/")[0] for n in names if "/" in n} - set(report.layers)
        for o in sorted(orphans):
            report.problems.append(f"{o}: chunks without metadata")
    return report


MAX_INFLATED = 1 << 30  # a deflated entry larger than this when inflated is not salvaged


def _local_header_disagrees(fileobj, info: zipfile.ZipInfo) -> str | None:
    """Why the entry's local header does not match its directory entry (CRC, sizes, name), as
    ``recover`` (which reads local headers) would find; None when they agree."""
    fileobj.seek(info.header_offset)
    head = fileobj.read(30)
    if len(head) < 30 or head[:4] != _LOCAL:
        return "no local header where the directory says"
    (_, _, flags, _method, _, _, crc, csize, usize, nlen, _xlen) = struct.unpack(
        "<IHHHHHIIIHH", head)
    name = fileobj.read(nlen).decode("utf-8", "replace")
    if name != info.filename:
        return f"local header names {name!r}"
    if flags & 0x08:
        return None  # sizes and CRC in a data descriptor
    if crc != info.CRC:
        return "local header CRC differs from the directory's"
    if 0xFFFFFFFF not in (csize, usize) and (csize, usize) != (info.compress_size,
                                                                info.file_size):
        return "local header sizes differ from the directory's"
    return None
PIECE = 1 << 24


@dataclass(frozen=True)
class _Entry:
    """An intact local entry: where its data lies in the file and how it is stored."""

    name: str
    start: int
    csize: int
    usize: int
    method: int


def _map(f):
    """The file mapped read-only (an empty file maps to empty bytes)."""
    if os.fstat(f.fileno()).st_size == 0:
        return contextlib.nullcontext(b"")
    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _pieces(data: mmap.mmap, e: _Entry) -> Iterator[bytes]:
    """An entry's content in pieces of at most 16 MiB (inflated when deflated)."""
    view = memoryview(data)
    try:
        z = zlib.decompressobj(-15) if e.method == 8 else None
        for a in range(e.start, e.start + e.csize, PIECE):
            b = min(a + PIECE, e.start + e.csize)
            if z is None:
                yield bytes(view[a:b])
            else:
                yield z.decompress(view[a:b], PIECE)
                while z.unconsumed_tail:
                    yield z.decompress(z.unconsumed_tail, PIECE)
            _release(data, a, b)
        if z is not None:
            yield z.flush()
    finally:
        view.release()


def _release(data, a: int, b: int) -> None:
    """Drop the mapped pages of [a, b) from this process's memory (the file stays cached by
    the kernel): a multi-GB damaged file is salvaged in bounded memory."""
    if isinstance(data, mmap.mmap) and b > a:
        lo = a - a % mmap.PAGESIZE
        try:
            data.madvise(mmap.MADV_DONTNEED, lo, b - lo)
        except (OSError, ValueError):
            pass


def _intact(data: mmap.mmap, e: _Entry, crc: int) -> bool:
    if e.method not in (0, 8) or (e.method == 8 and e.usize > MAX_INFLATED):
        return False
    total, value = 0, 0
    try:
        for piece in _pieces(data, e):
            total += len(piece)
            if total > e.usize:
                return False
            value = crc32(piece, value)
    except zlib.error:
        return False
    return total == e.usize and value == crc


def _scan(data: mmap.mmap) -> Iterator[_Entry]:
    pos = 0
    while True:
        pos = data.find(_LOCAL, pos)
        if pos < 0 or pos + 30 > len(data):
            return
        (_, _, flags, method, _, _, crc, csize, usize, nlen, xlen) = struct.unpack(
            "<IHHHHHIIIHH", data[pos : pos + 30]
        )
        name_start = pos + 30
        name = data[name_start : name_start + nlen].decode("utf-8", "replace")
        extra = data[name_start + nlen : name_start + nlen + xlen]
        if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF:  # zip64 sizes live in the extra field
            i = 0
            while i + 4 <= len(extra):
                tag, size = struct.unpack("<HH", extra[i : i + 4])
                if tag == 1:
                    usize, csize = struct.unpack("<QQ", extra[i + 4 : i + 20])
                i += 4 + size
        start = name_start + nlen + xlen
        pos += 4
        if flags & 0x08 or start + csize > len(data):
            continue
        entry = _Entry(name, start, csize, usize, method)
        if not _intact(data, entry, crc):
            _release(data, pos, min(start + csize, len(data)))
            continue
        pos = start + csize
        yield entry


def recover(
    path: str | Path, output: str | Path | None = None
) -> tuple[Path, list[str], list[str]]:
    """Salvage complete layers from a damaged file into a new valid datastack.

    Returns ``(output, kept layers, dropped layers)``. The damaged file is left as it is.
    """
    path = Path(path)
    if not path.exists():
        raise DataStackError("file not found", path)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise DataStackError("is not a regular file (a FIFO, device or socket)", path)
    output = Path(output) if output else path.with_name(path.stem + ".recovered" + path.suffix)
    if output.resolve() == path.resolve():
        raise DataStackError("recover writes a new file: give another output path", output)
    output = output_target(output)
    kept: list[str] = []
    dropped: list[str] = []

    def write(tmp: str) -> None:
        with open(path, "rb") as f, _map(f) as data:
            entries: dict[str, _Entry] = {}
            for entry in _scan(data):
                entries[entry.name] = entry  # a later duplicate wins, as in zarr's zip reading

            def content(name: str, limit: int = 1 << 20) -> bytes:
                e = entries[name]
                return b"" if e.usize > limit else b"".join(_pieces(data, e))

            present = set(entries)
            sizes = {n: e.usize for n, e in entries.items()}
            junk: set[str] = set()  # members outside a layer's chunk grid: never copied
            for name in layer_names(list(entries)):
                if _layer_problems(name, content(f"{name}/zarr.json"), present, sizes, junk):
                    dropped.append(name)
                else:
                    kept.append(name)
            tops = {n.split("/")[0] for n in entries if "/" in n}
            dropped.extend(sorted(tops - set(kept) - set(dropped)))
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                root = content("zarr.json") if "zarr.json" in entries else b""
                zf.writestr("zarr.json", root or json.dumps(ROOT_META).encode())
                for layer in kept:
                    for n, e in entries.items():
                        if (n.startswith(layer + "/") and n != f"{layer}/zarr.json"
                                and n not in junk):
                            with zf.open(n, "w", force_zip64=e.usize > 2**31) as out:
                                for piece in _pieces(data, e):
                                    out.write(piece)
                    zf.writestr(f"{layer}/zarr.json", content(f"{layer}/zarr.json"))

    try:
        atomic_write(output, write, durable=True, tag="recover")
    except OSError as exc:
        raise DataStackError(f"could not write ({exc.strerror or exc}); nothing written",
                             output) from None
    return output, kept, dropped


def is_datastack(path: Path) -> bool:
    """A zip file holding a root ``zarr.json`` (what maxrf writes)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return "zarr.json" in zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def output_target(output: str | Path) -> Path:
    """Where a new datastack may be written: the resolved path (a symbolic link's target is
    replaced, not the link), in an existing folder, and never over a file that is not a
    datastack (a scan, a FIFO, a device)."""
    real = Path(os.path.realpath(output))
    if not real.parent.is_dir():
        raise DataStackError(f"folder {real.parent} does not exist", output)
    if os.path.lexists(real):
        mode = os.stat(real).st_mode
        if not stat.S_ISREG(mode):
            raise DataStackError("is not a regular file; refusing to write there", output)
        if not is_datastack(real):
            raise DataStackError("exists and is not a datastack; refusing to overwrite it",
                                 output)
    return real


def repack(
    ds: DataStack | str | Path,
    select: Sequence[str] | None = None,
    output: str | Path | None = None,
) -> Path:
    """Keep the latest version of each (selected) layer under its plain name; atomic replace.
    ``ds`` is a ``DataStack`` or a path."""
    ds = ds if isinstance(ds, DataStack) else DataStack(ds)
    target = output_target(output) if output else ds.file
    with ds.write_lock():
        ds.settle_locked()
        snap = ds.snapshot()
        bases = list(dict.fromkeys(L.base_name(n) for n in snap.names))
        if select is not None:
            unknown = [s for s in select if s not in bases]
            if unknown:
                raise DataStackError(f"no layer(s) {', '.join(unknown)} to keep", ds.path)
            bases = [b for b in bases if b in select]
        snap.fileobj.seek(0)

        def write(tmp: str) -> None:
            with (
                zipfile.ZipFile(snap.fileobj) as src,
                zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as dst,
            ):
                dst.writestr("zarr.json", src.read("zarr.json"))
                for base in bases:
                    latest = L.versions(base, snap.names)[-1]
                    prefix = latest + "/"
                    infos = [i for i in src.infolist() if i.filename.startswith(prefix)]
                    meta = None
                    for info in infos:
                        if info.filename == prefix + "zarr.json":
                            meta = info
                            continue
                        with (
                            src.open(info) as fin,
                            dst.open(
                                base + "/" + info.filename[len(prefix) :],
                                "w",
                                force_zip64=info.file_size > 2**31,
                            ) as fout,
                        ):
                            while chunk := fin.read(1 << 22):
                                fout.write(chunk)
                    dst.writestr(base + "/zarr.json", src.read(meta))

        try:
            atomic_write(target, write, durable=True, tag="repack")
        except OSError as exc:
            raise DataStackError(
                f"repack failed ({exc.strerror}); the file is unchanged", ds.path
            ) from None
    ds.forget()
    log.info("maxrf: repacked %s (%d layers)", target, len(bases))
    return target
