"""The fastrl file format for replay buffers: a JSON header, then raw arrays. No pickle.

Layout (all integers little-endian)::

    magic      8 bytes   b"FASTRLB1"
    hlen       8 bytes   uint64: length of the JSON header in bytes
    hcrc       4 bytes   uint32: zlib.crc32 of the JSON header
    header     hlen bytes of UTF-8 JSON:
                 {"format": "fastrl.replay_buffer", "version": 1, "class": ...,
                  "config": {...constructor arguments...}, "state": {...counters, generator...},
                  "arrays": [{"name", "dtype", "shape", "offset", "nbytes", "crc32"}, ...]}
    padding    to a multiple of 64 bytes: the data section starts there
    arrays     each array's raw C-order bytes at its ``offset`` from the start of the data section

Every array carries its size and CRC-32, so a truncated or corrupted file is detected and reported
with a ValueError; nothing in the file is ever executed.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

import numpy as np

from fastrl._util import atomic_write

MAGIC = b"FASTRLB1"
FORMAT = "fastrl.replay_buffer"
VERSION = 1
_ALIGN = 64
_PREFIX = struct.Struct("<8sQI")
_MAX_HEADER = 64 << 20


def _crc(view: memoryview | bytes, crc: int = 0) -> int:
    if memoryview(view).nbytes == 0:
        return crc
    mv = memoryview(view).cast("B")
    step = 64 << 20
    for start in range(0, len(mv), step):
        crc = zlib.crc32(mv[start : start + step], crc)
    return crc


def _data_start(header_len: int) -> int:
    return -(-(_PREFIX.size + header_len) // _ALIGN) * _ALIGN


def entry(name: str, a: np.ndarray, offset: int) -> dict[str, Any]:
    """The header entry of a C-contiguous array stored at ``offset`` of the data section."""
    return {
        "name": name,
        "dtype": a.dtype.str,
        "shape": list(a.shape),
        "offset": int(offset),
        "nbytes": int(a.nbytes),
        "crc32": _crc(a.data),
    }


def header_bytes(meta: dict[str, Any], entries: list[dict[str, Any]], size: int | None = None) -> bytes:
    """Prefix and JSON header; with ``size``, the JSON is padded with spaces to ``size`` bytes so that
    the data section starts at a fixed place (``_data_start(size)``)."""
    body = json.dumps(dict(meta, format=FORMAT, version=VERSION, arrays=entries), sort_keys=True).encode()
    if size is not None:
        if len(body) > size:
            raise ValueError(f"header of {len(body)} bytes does not fit the {size} bytes reserved for it")
        body += b" " * (size - len(body))
    return _PREFIX.pack(MAGIC, len(body), zlib.crc32(body)) + body


def write_file(path: str | os.PathLike[str], meta: dict[str, Any], arrays: Iterable[tuple[str, np.ndarray]]) -> None:
    """Write ``meta`` and the arrays atomically (to ``path.tmp``, then renamed over ``path``)."""
    arrays = [(name, np.ascontiguousarray(a)) for name, a in arrays]
    entries: list[dict[str, Any]] = []
    offset = 0
    for name, a in arrays:
        entries.append(entry(name, a, offset))
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    head = header_bytes(meta, entries)
    start = _data_start(len(head) - _PREFIX.size)
    with atomic_write(path, "wb", fsync=True) as f:
        f.write(head)
        for e, (_, a) in zip(entries, arrays):
            f.write(b"\0" * (start + e["offset"] - f.tell()))
            if a.nbytes:
                f.write(a.data.cast("B"))


def read_header(f: BinaryIO, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the prefix and JSON header; raises ValueError on any damage."""
    size = os.fstat(f.fileno()).st_size
    prefix = f.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size:
        raise ValueError(f"{path}: not a fastrl buffer file (too short: {size} bytes)")
    magic, hlen, hcrc = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ValueError(f"{path}: not a fastrl buffer file (bad magic {magic!r})")
    if hlen > _MAX_HEADER or _PREFIX.size + hlen > size:
        raise ValueError(f"{path}: truncated or damaged header (declared {hlen} bytes, file has {size})")
    body = f.read(hlen)
    if zlib.crc32(body) != hcrc:
        raise ValueError(f"{path}: damaged header (checksum mismatch)")
    try:
        header = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: damaged header ({err})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastrl replay buffer file")
    if header.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported format version {header.get('version')!r} (this fastrl reads {VERSION})")
    arrays = header.get("arrays")
    if not isinstance(arrays, list):
        raise ValueError(f"{path}: damaged header (no array table)")  # noqa: TRY004 - a damaged file
    for e in arrays:
        entry = e
        try:
            dtype = np.dtype(e["dtype"])
            shape = tuple(int(d) for d in e["shape"])
            nbytes, offset = int(e["nbytes"]), int(e["offset"])
            if offset < 0:
                raise ValueError
            int(e["crc32"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: damaged header (bad array entry {entry!r})") from None
        if dtype.hasobject or any(d < 0 for d in shape) or nbytes != int(np.prod(shape)) * dtype.itemsize:
            raise ValueError(f"{path}: damaged header (inconsistent array entry {e.get('name')!r})")
        offset += _data_start(hlen)
        e["offset"] = offset  # absolute from here on
        if offset + nbytes > size or nbytes < 0:
            raise ValueError(
                f"{path}: file is truncated (array {e.get('name')!r} ends at {offset + nbytes}, file has {size} bytes)"
            )
    return header


def read_array_into(f: Any, path: str | os.PathLike[str], entry: dict[str, Any], out: np.ndarray) -> None:
    """Read one array of the file straight into ``out`` (no intermediate copy) and verify its CRC."""
    name = entry["name"]
    if out.dtype != np.dtype(entry["dtype"]) or out.shape != tuple(entry["shape"]) or not out.flags.c_contiguous:
        raise ValueError(
            f"{path}: array {name!r} has dtype {entry['dtype']} shape {tuple(entry['shape'])}, "
            f"expected {out.dtype.str} {out.shape}"
        )
    f.seek(int(entry["offset"]))
    mv = out.data.cast("B") if out.nbytes else memoryview(b"")
    got = 0
    while got < len(mv):
        n = f.readinto(mv[got:])
        if not n:
            raise ValueError(f"{path}: file is truncated inside array {name!r}")
        got += n
    if _crc(mv) != int(entry["crc32"]):
        raise ValueError(f"{path}: array {name!r} is damaged (checksum mismatch)")


def read_arrays(
    path: str | os.PathLike[str], allocate: Callable[[dict[str, Any]], dict[str, np.ndarray | None]]
) -> dict[str, Any]:
    """Read a file: ``allocate(header)`` returns the destination array for each array name (None:
    the caller has it in place already, e.g. memory-mapped, and checks it itself)."""
    with open(path, "rb") as f:
        header = read_header(f, path)
        outs = allocate(header)
        names = {e["name"] for e in header["arrays"]}
        if names != set(outs):
            raise ValueError(f"{path}: arrays {sorted(names)} do not match the schema {sorted(outs)}")
        for e in header["arrays"]:
            out = outs[e["name"]]
            if out is not None:
                read_array_into(f, path, e, out)
    return header
