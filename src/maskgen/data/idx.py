"""Reader (and a small writer, for tests and tools) for the IDX format of MNIST-style files.

An IDX file is a 4-byte magic ``0x00 0x00 TYPE NDIM``, then NDIM big-endian uint32 sizes,
then the data in C order, big-endian.  Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import MaskgenError

# IDX type byte -> numpy dtype (big-endian as stored on disk).
_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in _TYPES.items()}


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        if head == b"\x1f\x8b":  # gzip magic: detect by content, not by file name
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise MaskgenError(f"corrupt or truncated IDX file {path}: {e}") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian numpy array."""
    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"missing IDX file: {path}")
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise MaskgenError(f"not an IDX file (bad magic number): {path}")
    code, ndim = data[2], data[3]
    if code not in _TYPES:
        raise MaskgenError(f"IDX file {path} has unknown data type 0x{code:02x}")
    if ndim == 0:
        raise MaskgenError(f"IDX file {path} has zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MaskgenError(f"truncated IDX file (header cut short): {path}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(data) - header
    if body < expected:
        raise MaskgenError(f"truncated IDX file {path}: {body} data bytes, expected {expected} for shape {shape}")
    if body > expected:
        raise MaskgenError(f"IDX file {path} has {body - expected} trailing bytes after shape {shape}")
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return arr.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip it when ``compress`` (default: name ends in .gz)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise MaskgenError(f"IDX cannot store dtype {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise MaskgenError(f"IDX needs 1..255 dimensions, got {array.ndim}")
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(_TYPES[code], copy=False).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path
