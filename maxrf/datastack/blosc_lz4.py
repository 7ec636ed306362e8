"""Blosc-1 LZ4 chunks written by a compiled kernel, byte for byte what c-blosc writes.

numcodecs' c-blosc is built with SSE2 shuffles only. Here the shuffles are numba loops that the
compiler vectorises for the machine at hand (AVX2 / AVX-512; the gain is in docs/performance.md),
and each shuffled stream is compressed by the same
``LZ4_compress_fast`` that numcodecs' blosc library exports, with blosc 1.21's block sizes, splits,
acceleration and fall-backs (stored streams, memcpy'd chunks). The output is therefore identical
to ``numcodecs.Blosc("lz4", clevel, shuffle).encode`` (tested on many shapes and contents), and
any blosc reader decodes it. ``available()`` is False when the LZ4 symbol cannot be found; callers
then use c-blosc itself.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import numpy as np
from numba import njit, types, uint8, uint64

from maxrf.compat.numcodecs import blosc_function

MIN_BUFFERSIZE = 128  # blosc.c: smaller buffers are stored
MAX_SPLITS = 16
L1 = 32 * 1024
OVERHEAD = 16  # BLOSC_MAX_OVERHEAD: header + room for the stored-chunk fall-back
MAX_NBYTES = 2**31 - 2**20  # chunks above this are left to c-blosc (int32 sizes)
_FLAG_SHUFFLE, _FLAG_MEMCPYED, _FLAG_BITSHUFFLE, _FLAG_DONT_SPLIT = 0x1, 0x2, 0x4, 0x10
_LZ4_FORMAT = 1  # BLOSC_LZ4_FORMAT, also its version format

# The compiled code calls this name; ``available()`` binds it to numcodecs' LZ4_compress_fast (a
# name of our own, so no other library's LZ4 is ever bound, and numba's cache stays valid).
_SYMBOL = "maxrf_blosc_LZ4_compress_fast"
_lz4_compress_fast = types.ExternalFunction(
    _SYMBOL,
    types.int32(types.intp, types.intp, types.int32, types.int32, types.int32),
)


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether numcodecs' blosc library exports ``LZ4_compress_fast`` for the kernel to call."""
    fn = blosc_function("LZ4_compress_fast")
    if fn is None:
        return False
    try:
        import llvmlite.binding as llvm

        llvm.add_symbol(_SYMBOL, ctypes.cast(fn, ctypes.c_void_p).value)
    except (ImportError, RuntimeError):
        return False
    return True


def splits(typesize: int, blocksize: int) -> bool:
    """c-blosc 1.21's ``split_block`` for LZ4 (forward-compatible mode): one stream per byte."""
    return typesize <= MAX_SPLITS and blocksize // typesize >= MIN_BUFFERSIZE


def blocksize_for(clevel: int, typesize: int, nbytes: int) -> int:
    """c-blosc 1.21's automatic block size for LZ4 (``compute_blocksize``, forward-compatible
    splits), for ``nbytes >= L1``."""
    blocksize = {1: L1 // 2, 2: L1, 3: 2 * L1, 4: 4 * L1, 5: 4 * L1}.get(clevel, 8 * L1)
    if splits(typesize, blocksize):
        blocksize = min(blocksize, 1 << 18) * typesize
        blocksize = min(max(blocksize, 1 << 16), 1 << 20)
    blocksize = min(blocksize, nbytes)
    if blocksize > typesize:
        blocksize = blocksize // typesize * typesize
    return blocksize


@njit(inline="always")
def _pack4(a):  # pragma: no cover
    """Bytes 0, 2, 4, 6 of ``a`` into its low 4 bytes."""
    c = a & uint64(0x00FF00FF00FF00FF)
    c = (c | (c >> uint64(8))) & uint64(0x0000FFFF0000FFFF)
    return (c | (c >> uint64(16))) & uint64(0xFFFFFFFF)


@njit(inline="always")
def _transpose8(t):  # pragma: no cover
    """Transpose the 8x8 bit matrix held in ``t`` (row = byte, column = bit)."""
    u = (t ^ (t >> uint64(7))) & uint64(0x00AA00AA00AA00AA)
    t = t ^ u ^ (u << uint64(7))
    u = (t ^ (t >> uint64(14))) & uint64(0x0000CCCC0000CCCC)
    t = t ^ u ^ (u << uint64(14))
    u = (t ^ (t >> uint64(28))) & uint64(0x00000000F0F0F0F0)
    return t ^ u ^ (u << uint64(28))


@njit(inline="always")
def _byte_planes(x, ts, dst):  # pragma: no cover
    """Byte ``j`` of every element of ``x`` (unsigned ints of ``ts`` bytes) to plane ``j``."""
    n = x.size
    for i in range(n):  # ts is the view's item size: a constant, so this unrolls and vectorises
        v = x[i]
        for j in range(ts):
            dst[j * n + i] = uint8(v >> x.dtype.type(8 * j))


@njit(nogil=True, cache=True)
def _shuffle(src, ts, dst):  # pragma: no cover
    """Blosc byte-shuffle of ``src`` (elements of ``ts`` bytes; trailing bytes copied)."""
    n = src.size // ts
    if ts == 4:
        _byte_planes(src[: 4 * n].view(np.uint32), 4, dst)
    elif ts == 2:
        _byte_planes(src[: 2 * n].view(np.uint16), 2, dst)
    else:
        for j in range(ts):
            for i in range(n):
                dst[j * n + i] = src[i * ts + j]
    for i in range(n * ts, src.size):
        dst[i] = src[i]


@njit(nogil=True, cache=True)
def _bitshuffle(src, ts, dst, tmp, words):  # pragma: no cover
    """Blosc (bshuf) bit-shuffle: bit plane ``8 j + k`` holds bit ``k`` of byte ``j`` of every
    element, eight elements per byte, least significant first. Blocks whose element count is not
    a multiple of 8 are copied, as blosc does."""
    n = src.size // ts
    if n % 8:
        dst[:] = src
        return
    m = n // 8  # bytes per bit plane
    if ts == 2:  # byte planes packed straight from the elements: 4 elements per uint64
        x = src[: 2 * n].view(np.uint64)
        for i in range(m):
            a = x[2 * i]
            b = x[2 * i + 1]
            a_hi, b_hi = a >> uint64(8), b >> uint64(8)
            words[i] = _transpose8(_pack4(a) | (_pack4(b) << uint64(32)))
            words[m + i] = _transpose8(_pack4(a_hi) | (_pack4(b_hi) << uint64(32)))
    else:
        _shuffle(src[: n * ts], ts, tmp)
        w = tmp[: n * ts].view(np.uint64)
        for i in range(ts * m):
            words[i] = _transpose8(w[i])
    for j in range(ts):
        for k in range(8):
            base = (j * 8 + k) * m
            shift = uint64(8 * k)
            for i in range(m):
                dst[base + i] = uint8(words[j * m + i] >> shift)
    for i in range(n * ts, src.size):
        dst[i] = src[i]


@njit(nogil=True, cache=True)
def _put32(buf, at, value):  # pragma: no cover
    for k in range(4):
        buf[at + k] = uint8((value >> (8 * k)) & 0xFF)


@njit(nogil=True, cache=True)
def _compress_blocks(src, ts, mode, blocksize, split, accel, dest, tmp, tmp2, words):
    """Blocks of ``src`` shuffled (``mode`` 1) or bit-shuffled (2) and LZ4-compressed into
    ``dest`` after the header and block starts; returns the chunk's size, 0 if it does not fit
    (then blosc stores the whole chunk)."""
    nbytes = src.size
    maxbytes = dest.size
    nblocks = (nbytes + blocksize - 1) // blocksize
    ntbytes = OVERHEAD + 4 * nblocks
    for b in range(nblocks):
        _put32(dest, OVERHEAD + 4 * b, ntbytes)
        start = b * blocksize
        bsize = min(blocksize, nbytes - start)
        leftover = bsize < blocksize
        block = src[start : start + bsize]
        data = block
        if mode == 1 and ts > 1:
            _shuffle(block, ts, tmp[:bsize])
            data = tmp[:bsize]
        elif mode == 2 and bsize >= ts:
            _bitshuffle(block, ts, tmp[:bsize], tmp2, words)
            data = tmp[:bsize]
        nsplits = ts if split and not leftover else 1
        neblock = bsize // nsplits
        for j in range(nsplits):
            ntbytes += 4
            maxout = neblock
            if ntbytes + maxout > maxbytes:
                maxout = maxbytes - ntbytes
                if maxout <= 0:
                    return 0
            stream = data[j * neblock : (j + 1) * neblock]
            out = dest[ntbytes:]
            cbytes = _lz4_compress_fast(stream.ctypes.data, out.ctypes.data, neblock, maxout, accel)
            if cbytes < 0 or cbytes > maxout:
                return -1
            if cbytes == 0 or cbytes == neblock:  # not compressible: stored
                if ntbytes + neblock > maxbytes:
                    return 0
                dest[ntbytes : ntbytes + neblock] = stream
                cbytes = neblock
            _put32(dest, ntbytes - 4, cbytes)
            ntbytes += cbytes
    return ntbytes


@njit(nogil=True, cache=True)
def _encode(src, ts, mode, blocksize, split, accel, flags, dest, scratch):  # pragma: no cover
    """The whole chunk: blocks, or the stored bytes when they do not fit; then the header."""
    nbytes = src.size
    tmp, tmp2 = scratch[:blocksize], scratch[blocksize : 2 * blocksize]
    words = scratch[2 * blocksize : 2 * blocksize + blocksize // 8 * 8].view(np.uint64)
    n = _compress_blocks(src, ts, mode, blocksize, split, accel, dest, tmp, tmp2, words)
    if n < 0:
        return n
    if n == 0:  # incompressible: the whole chunk stored after the header
        flags |= _FLAG_MEMCPYED
        dest[OVERHEAD : OVERHEAD + nbytes] = src
        n = OVERHEAD + nbytes
    dest[0] = 2  # blosc format version
    dest[1] = _LZ4_FORMAT
    dest[2] = flags
    dest[3] = ts
    _put32(dest, 4, nbytes)
    _put32(dest, 8, blocksize)
    _put32(dest, 12, n)
    return n


@lru_cache(maxsize=64)
def _plan(clevel: int, ts: int, nbytes: int, shuffle: int) -> tuple[int, bool, int]:
    """Block size, split and header flags, as c-blosc 1.21 chooses them."""
    blocksize = blocksize_for(clevel, ts, nbytes)
    split = splits(ts, blocksize)
    flags = (_FLAG_SHUFFLE if shuffle == 1 else 0) | (_FLAG_BITSHUFFLE if shuffle == 2 else 0)
    flags |= (0 if split else _FLAG_DONT_SPLIT) | (_LZ4_FORMAT << 5)
    return blocksize, split, flags


def encode_into(data: np.ndarray, clevel: int, shuffle: int, dest: np.ndarray, scratch) -> int:
    """Blosc-LZ4 chunk of ``data`` (C-contiguous, ``nbytes >= L1``) in ``dest`` (uint8, at least
    ``nbytes + 16``); returns its length. ``shuffle``: 0 none, 1 byte, 2 bit.
    ``scratch(name, nbytes)`` gives reusable uint8 buffers."""
    if not available():  # also makes the LZ4 symbol known to the compiled code: call it first
        raise RuntimeError("LZ4_compress_fast not found in numcodecs' blosc library")
    if not 1 <= clevel <= 9 or shuffle not in (0, 1, 2):
        raise ValueError(f"unsupported blosc parameters clevel={clevel}, shuffle={shuffle}")
    src = data.reshape(-1).view(np.uint8)
    nbytes = src.size
    if not L1 <= nbytes <= MAX_NBYTES:
        raise ValueError(f"{nbytes} bytes: outside the compiled encoder's range")
    ts = data.dtype.itemsize if data.dtype.itemsize <= 255 else 1
    blocksize, split, flags = _plan(clevel, ts, nbytes, shuffle)
    work = scratch("lz4", 3 * blocksize + 8)
    dest = dest[: nbytes + OVERHEAD]
    n = _encode(src, ts, shuffle, blocksize, split, 10 - clevel, flags, dest, work)
    if n < 0:
        raise RuntimeError("LZ4 compression failed")
    return n
