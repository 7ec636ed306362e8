"""Appends to an open zip file from many threads.

Each entry's place is reserved under a short lock (the CRC is computed by the calling thread
before). The bytes then go to disk one of two ways:

- **direct** (default where the filesystem allows ``O_DIRECT``): entries are copied into 32 MiB
  aligned segments that an I/O thread writes with ``O_DIRECT``, bypassing the page cache (the
  kernel's copy into it costs CPU; docs/performance.md), so the disk works while the cores
  encode.
- **buffered** (fallback): ``pwrite`` by the calling thread, with a write-behind thread calling
  ``fdatasync`` as data accumulates, so the fsync at commit has little left to do.

At ``finish`` the writer writes the central directory itself (``zipdir``): the existing entries
byte for byte, then the new ones, then the end records (ZIP64 where needed), and cuts the file
there. ``zipfile`` is only used to read.
"""

from __future__ import annotations

import errno
import mmap
import os
import queue
import threading

from isal.isal_zlib import crc32  # same CRC-32 as zlib, ~4x faster (pclmul)

from maxrf.datastack.zipdir import Directory, central_entry, dos_time, end_records, local_header

SYNC_EVERY = 256 * 2**20  # buffered mode: bytes written between background fdatasync calls
SEGMENT = 32 * 2**20  # direct mode: bytes per aligned write
SEGMENTS = 3  # direct mode: buffers in flight (bounded memory)
ALIGN = 4096


class ParallelZipWriter:
    """Stored (uncompressed) entries appended to the zip open as ``fd`` (read-write), whose
    central directory ``directory`` is overwritten by them and written again at ``finish``."""

    def __init__(self, path: str, fd: int, directory: Directory,
                 direct: bool | None = None) -> None:
        self.fd = fd
        self.directory = directory
        self._central: list[bytes] = []
        self._when = dos_time()
        self._offset = directory.offset
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        if direct is None:
            direct = os.environ.get("MAXRF_DIRECT_IO", "1") != "0"
        self._direct = _DirectSegments.open(path, self.fd, self._offset) if direct else None
        self._unsynced = 0
        self._wake = threading.Event()
        self._stop = False
        self._syncer = None
        if self._direct is None:
            self._syncer = threading.Thread(target=self._sync_loop, name="maxrf-sync", daemon=True)
            self._syncer.start()

    @property
    def mode(self) -> str:
        return "buffered" if self._direct is None else self._direct.mode

    def write(self, arcname: str, data) -> None:
        """Append one entry (thread-safe); ``data`` is any bytes-like object."""
        self._raise_pending()
        view = memoryview(data).cast("B")
        name = arcname.encode("ascii")  # layer names are checked: ASCII, no flag 11 needed
        crc = crc32(view)
        header = local_header(name, crc, len(view), self._when)
        total = len(header) + len(view)
        with self._lock:
            at = self._offset
            self._offset += total
            self._central.append(central_entry(name, crc, len(view), at, self._when))
            if self._direct is not None:
                self._direct.append(header, view)
                return
        done = os.pwritev(self.fd, [header, view], at)
        while done < total:  # short writes are rare but legal
            rest = (header + bytes(view))[done:]
            done += os.pwrite(self.fd, rest, at + done)
        with self._lock:
            self._unsynced += total
            if self._unsynced >= SYNC_EVERY:
                self._unsynced = 0
                self._wake.set()

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error
        if self._direct is not None and self._direct.error is not None:
            raise self._direct.error

    def _sync_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                os.fdatasync(self.fd)
            except OSError as exc:  # reported by the next write or at finish
                self._error = exc
                return

    def finish(self) -> None:
        """Write out what is pending, then the central directory after the data."""
        self._stop_io()
        self._raise_pending()
        records = self.directory.records + b"".join(self._central)
        tail = records + end_records(self._offset, len(records),
                                     self.directory.entries + len(self._central))
        done = 0
        while done < len(tail):
            done += os.pwrite(self.fd, tail[done:], self._offset + done)
        os.ftruncate(self.fd, self._offset + len(tail))

    def abort(self) -> None:
        """Stop the I/O threads after an error (the caller restores the file)."""
        try:
            self._stop_io()
        except OSError:
            pass

    def _stop_io(self) -> None:
        if self._direct is not None:
            with self._lock:
                direct, self._direct = self._direct, None
            direct.close()
        if self._syncer is not None:
            self._stop = True
            self._wake.set()
            self._syncer.join()
            self._syncer = None


class _DirectSegments:
    """Sequential bytes from ``start`` on, written in aligned segments by an I/O thread."""

    def __init__(self, fd: int, buffered_fd: int, start: int) -> None:
        self.fd, self.buffered_fd = fd, buffered_fd
        self.mode = "direct"
        self.error: BaseException | None = None
        self.base = start - start % ALIGN  # the partial block before start is rewritten as is
        self._free: queue.Queue = queue.Queue()
        for _ in range(SEGMENTS):
            self._free.put(mmap.mmap(-1, SEGMENT))  # page-aligned, as O_DIRECT requires
        self._jobs: queue.Queue = queue.Queue()
        self._buf = self._free.get()
        self._fill = start - self.base
        if self._fill:
            head = os.pread(buffered_fd, self._fill, self.base)
            if len(head) != self._fill:
                raise OSError(errno.EIO, "short read of the zip before its directory")
            self._buf[: self._fill] = head
        self._thread = threading.Thread(target=self._io_loop, name="maxrf-direct", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, path: str, buffered_fd: int, start: int) -> _DirectSegments | None:
        flag = getattr(os, "O_DIRECT", 0)
        if not flag:
            return None
        try:
            fd = os.open(path, os.O_WRONLY | flag)
        except OSError:  # e.g. tmpfs: no O_DIRECT
            return None
        return cls(fd, buffered_fd, start)

    def append(self, *parts: memoryview) -> None:
        """Copy ``parts`` after what came before (callers hold the writer's lock)."""
        for part in parts:
            part = memoryview(part).cast("B")
            while len(part):
                n = min(SEGMENT - self._fill, len(part))
                self._buf[self._fill : self._fill + n] = part[:n]
                self._fill += n
                part = part[n:]
                if self._fill == SEGMENT:
                    self._submit(SEGMENT)

    def _submit(self, length: int) -> None:
        if self.error is not None:
            raise self.error
        self._jobs.put((self._buf, self.base, length))
        self.base += SEGMENT
        self._buf = self._free.get()  # waits while every buffer is in flight: bounded memory
        self._fill = 0

    def close(self) -> None:
        """Write the last, partial segment (zero-padded to the alignment) and wait for all."""
        if self._fill:
            padded = -(-self._fill // ALIGN) * ALIGN
            self._buf[self._fill : padded] = bytes(padded - self._fill)
            self._jobs.put((self._buf, self.base, padded))
        self._jobs.put(None)
        self._thread.join()
        os.close(self.fd)
        if self.error is not None:
            raise self.error

    def _io_loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            buf, offset, length = job
            try:
                if self.error is None:
                    self._write(memoryview(buf)[:length], offset)
            except OSError as exc:  # reported to the next append or at close
                self.error = exc
            self._free.put(buf)

    def _write(self, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            fd = self.fd if self.mode == "direct" else self.buffered_fd
            try:
                n = os.pwrite(fd, view[done:], offset + done)
            except OSError as exc:
                if exc.errno != errno.EINVAL or self.mode != "direct":
                    raise
                self.mode = "buffered"  # the filesystem refuses O_DIRECT writes: fall back
                continue
            if n <= 0:
                raise OSError(errno.EIO, "short write")
            if self.mode == "direct" and n % ALIGN:
                self.mode = "buffered"  # a short unaligned direct write: finish buffered
            done += n
