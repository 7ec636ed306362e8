"""Parallel appends to an open zip file: each entry's place is reserved under a short lock, then
its header and data are written with ``pwrite`` by the calling thread (CRC computed there too),
so encoding threads never queue behind one another's I/O. A write-behind thread starts flushing
to disk as data accumulates, so the fsync at commit has little left to do. ``zipfile`` writes the
central directory at close as usual."""

from __future__ import annotations

import os
import threading
import time
import zipfile

from isal.isal_zlib import crc32  # same CRC-32 as zlib, ~4x faster (pclmul)

SYNC_EVERY = 256 * 2**20  # bytes written between background fdatasync calls


class ParallelZipWriter:
    """Stored (uncompressed) entries appended to ``zf`` (opened with mode ``"a"``)."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.fd = zf.fp.fileno()
        self._offset = zf.start_dir
        self._lock = threading.Lock()
        self._unsynced = 0
        self._wake = threading.Event()
        self._stop = False
        self._error: BaseException | None = None
        self._syncer = threading.Thread(target=self._sync_loop, name="maxrf-sync", daemon=True)
        self._syncer.start()

    def write(self, arcname: str, data: bytes) -> None:
        """Append one entry (thread-safe)."""
        if self._error is not None:
            raise self._error
        info = zipfile.ZipInfo(arcname, date_time=time.localtime(time.time())[:6])
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        info.file_size = info.compress_size = len(data)
        info.CRC = crc32(data)
        header = info.FileHeader(zip64=False)
        with self._lock:
            info.header_offset = self._offset
            self._offset += len(header) + len(data)
            self.zf.filelist.append(info)
            self.zf.NameToInfo[arcname] = info
        view = memoryview(data)
        total = len(header) + len(view)
        done = os.pwritev(self.fd, [header, view], info.header_offset)
        while done < total:  # short writes are rare but legal
            rest = (header + bytes(view))[done:]
            done += os.pwrite(self.fd, rest, info.header_offset + done)
        with self._lock:
            self._unsynced += total
            if self._unsynced >= SYNC_EVERY:
                self._unsynced = 0
                self._wake.set()

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
        """Stop the write-behind thread and let ``zipfile`` write the directory after the data."""
        self._stop = True
        self._wake.set()
        self._syncer.join()
        if self._error is not None:
            raise self._error
        self.zf.start_dir = self._offset
        self.zf._didModify = True  # zipfile writes the directory at close only when set
        self.zf.fp.seek(self._offset)
