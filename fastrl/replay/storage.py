"""Memory-mapped field storage: a fastrl buffer file whose field arrays are the buffer's storage.

A buffer made with ``storage_path=`` lays its file out as a valid fastrl file (see
:mod:`fastrl.replay.persistence`) whose header has a fixed reserved size, so the data section starts at
a fixed, page-aligned offset. Each field's whole storage (``capacity`` rows) is a page-aligned
region of it, mapped with ``MAP_SHARED`` (``fastrl._core.MappedFile``); the file is created
sparse, so untouched rows take no disk space. Saving in place flushes the mapping, writes the
small variable arrays (kept next observations, priorities, ...) after the mapped regions and the
header (with every array's CRC-32) into its reserved space: the rows are never copied.
"""

from __future__ import annotations

import mmap
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastrl import _core
from fastrl.replay import persistence as serialization

_PAGE = max(mmap.PAGESIZE, mmap.ALLOCATIONGRANULARITY)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass(frozen=True)
class Layout:
    """Where things are in a mapped buffer file (offsets in bytes)."""

    data_start: int  # absolute start of the data section == start of the mapped region
    offsets: list[int]  # per field (core order): its region inside the mapped region (0 without storage)
    length: int  # bytes of the mapped region

    @property
    def header_size(self) -> int:
        """Bytes reserved for the JSON header."""
        return self.data_start - serialization._PREFIX.size


def layout(row_bytes: list[int | None], capacity: int, num_envs: int) -> Layout:
    """The layout for fields of ``row_bytes`` each (None: the field has no storage)."""
    header = 64 * 1024 + 64 * num_envs  # config, counters, array table, per-stream episode starts
    data_start = _round_up(serialization._PREFIX.size + header, _PAGE)
    offsets, off = [], 0
    for rb in row_bytes:
        offsets.append(off)
        if rb is not None:
            off += _round_up(max(1, capacity * rb), _PAGE)
    return Layout(data_start, offsets, max(off, _PAGE))


def check_new_file(path: str, lay: Layout) -> None:
    """Refuse an existing file (it may hold a saved buffer) or a disk too small for the layout."""
    if os.path.lexists(path):
        raise FileExistsError(
            f"storage_path {path!r} exists; reopen a saved mapped buffer with "
            f"ReplayBuffer.load(path, mmap=True), or remove the file"
        )
    free = shutil.disk_usage(os.path.dirname(path) or ".").free
    need = lay.data_start + lay.length
    if need > free:
        raise ValueError(
            f"storage_path: the buffer needs {need / 2**30:.2f} GiB, the disk has {free / 2**30:.2f} GiB free"
        )


def map_file(path: str, lay: Layout, create: bool) -> Any:
    """The mapped region of ``path`` (created sparse when ``create``)."""
    return _core.MappedFile(path, lay.data_start, lay.length, create)


def same_file(a: str | os.PathLike[str], b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def save_in_place(
    path: str,
    lay: Layout,
    mapped: Any,
    meta: dict[str, Any],
    fields: Mapping[str, np.ndarray],
    field_index: Mapping[str, int],
    arrays: Mapping[str, np.ndarray],
) -> None:
    """Make ``path`` a complete fastrl file: flush the mapped ``fields`` (views of the first rows of
    each field) where they are, append every other array of ``arrays`` after the mapped region,
    and write the header into its reserved space. Only the header and those arrays are written."""
    mapped.flush()
    entries = [serialization.entry(name, a, lay.offsets[field_index[name]]) for name, a in fields.items()]
    off = _round_up(lay.length, 64)
    with open(path, "r+b") as f:
        for name, a in arrays.items():
            if name in fields:
                continue
            a = np.ascontiguousarray(a)
            entries.append(serialization.entry(name, a, off))
            f.seek(lay.data_start + off)
            if a.nbytes:
                f.write(a.data.cast("B"))
            off += _round_up(a.nbytes, 64)
        f.truncate(lay.data_start + off)
        f.seek(0)
        f.write(serialization.header_bytes(meta, entries, lay.header_size))
        f.flush()
        os.fsync(f.fileno())


def check_mapped_header(path: str | os.PathLike[str], header: Mapping[str, Any], num_envs: Any) -> None:
    """Before mapping: the file's data section must start where a mapped buffer's does (its
    first field at offset 0 of it)."""
    first = next((e for e in header["arrays"] if e.get("name") == "observations"), None)
    try:
        want = layout([], 0, int(num_envs)).data_start
    except (TypeError, ValueError):
        raise ValueError(f"{path}: damaged configuration (num_envs {num_envs!r})") from None
    if first is None or int(first["offset"]) != want:
        raise ValueError(
            f"{path}: was not saved by a memory-mapped buffer (saved with storage_path=); load it with mmap=False"
        )


def check_mapped_entries(
    path: str | os.PathLike[str],
    lay: Layout,
    header: Mapping[str, Any],
    fields: Mapping[str, np.ndarray],
    field_index: Mapping[str, int],
    verify: bool,
) -> None:
    """The header's field arrays must be the mapped regions (``fields``: views of their first rows);
    with ``verify`` their CRC-32 is checked in place."""
    entries = {e["name"]: e for e in header["arrays"]}
    for name, view in fields.items():
        e = entries.get(name)
        want = lay.data_start + lay.offsets[field_index[name]]
        if e is None or int(e["offset"]) != want:
            raise ValueError(
                f"{path}: was not saved by a memory-mapped buffer (array {name!r} is not at its "
                f"mapped place); load it with mmap=False"
            )
        if np.dtype(e["dtype"]) != view.dtype or tuple(e["shape"]) != view.shape:
            raise ValueError(
                f"{path}: array {name!r} has dtype {e['dtype']} shape {tuple(e['shape'])}, "
                f"expected {view.dtype.str} {view.shape}"
            )
        if verify and serialization._crc(np.ascontiguousarray(view).data) != int(e["crc32"]):
            raise ValueError(f"{path}: array {name!r} is damaged (checksum mismatch)")
