"""Saving and restoring replay buffers: ``state_dict`` / ``load_state_dict`` snapshots and files.

What a buffer saves: its ``config`` (the constructor arguments, so a file rebuilds the same
buffer), its ``state`` (rows ever added, the generator's state, the running episodes' first ids
with episode returns; a prioritized buffer adds alpha and the running maximum priority) and its
arrays: the first ``min(total, capacity)`` slots of every stored field, the observation store's
fixed arrays (frames kept for stacks, the newest steps' next observations), the kept next
observations of the compact layout (``side_slots`` / ``side_rows``, of variable size) and, for a
prioritized buffer, the raw priorities. Everything read back is validated before the buffer
changes: a damaged file or snapshot raises ValueError and leaves the buffer as it was.

The byte layout of files is :mod:`fastrl.replay.persistence`; the in-place save and the reopening
of memory-mapped buffers are :mod:`fastrl.replay.storage`. The buffer classes call the functions
here from their ``state_dict``, ``load_state_dict``, ``save`` and ``load``; a subclass adds its own
state through the hooks ``_meta``, ``_arrays``, ``_check_state``, ``_check_arrays`` and ``_restore``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from fastrl.replay import persistence, storage

if TYPE_CHECKING:
    from fastrl.replay.buffer import ReplayBuffer

    B = TypeVar("B", bound=ReplayBuffer)

STORE = "observation_store/"
SIDE_SLOTS, SIDE_ROWS = STORE + "side_slots", STORE + "side_rows"
_LAYOUT_DEFAULTS = {"store_next_observations": True, "frame_stack": 1, "frame_padding": "reset"}


def with_layout_defaults(config: Any) -> Any:
    """A saved config with the layout keys of files written before they existed (full layout)."""
    return {**_LAYOUT_DEFAULTS, **config} if isinstance(config, dict) else config


# ---------------------------------------------------------------------------- what is saved
def meta(buf: ReplayBuffer) -> dict[str, Any]:
    """The JSON-able part: class, config and state (counters, generator, episode starts)."""
    rng = [str(w) for w in buf._impl.rng_state()]
    state: dict[str, Any] = {"total": buf._impl.total, "rng": rng}
    if buf.episode_returns_gamma is not None:
        state["episode_starts"] = [int(s) for s in buf._impl.episode_starts()]
    return {"class": type(buf).__name__, "config": buf._config, "state": state}


def field_arrays(buf: ReplayBuffer, n: int, writable: bool = False) -> dict[str, np.ndarray]:
    """Views of the first ``n`` slots of every field with storage (mapped with ``storage_path``)."""
    return {f.name: buf._impl.field_view(i, writable)[:n] for i, (f, has) in enumerate(buf._stored) if has}


def arrays(buf: ReplayBuffer, n: int, writable: bool = False) -> dict[str, np.ndarray]:
    """Views of everything saved with a fixed size: the fields' first ``n`` slots and the
    observation store's fixed arrays."""
    out = field_arrays(buf, n, writable)
    for name, v in buf._impl.observation_state_views(writable).items():
        out[STORE + name] = v
    return out


def side_arrays(buf: ReplayBuffer) -> dict[str, np.ndarray]:
    """The kept next observations (compact layout): slots and rows, copies of variable size."""
    if buf.store_next_observations:
        return {}
    slots, rows = buf._impl.side_entries()
    return {SIDE_SLOTS: slots, SIDE_ROWS: rows}


def field_index(buf: ReplayBuffer) -> dict[str, int]:
    return {f.name: i for i, (f, _) in enumerate(buf._stored)}


# ---------------------------------------------------------------------------- checks
def check_meta(buf: ReplayBuffer, meta: Mapping[str, Any], where: str) -> tuple[int, list[int]]:
    """``(total, rng)`` of a saved header or snapshot made by a buffer of this schema."""
    if meta.get("class") != type(buf).__name__:
        raise ValueError(f"{where}: holds a {meta.get('class')!r}, not a {type(buf).__name__}")
    if with_layout_defaults(meta.get("config")) != buf._config:
        raise ValueError(f"{where}: schema {meta.get('config')!r} does not match this buffer's {buf._config!r}")
    st: Any = meta.get("state")
    try:
        total = int(st["total"])
        rng = [int(w) for w in st["rng"]]
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"{where}: damaged state {st!r}") from None
    if total < 0 or total % buf.num_envs or len(rng) != 4 or not all(0 <= w < 2**64 for w in rng) or not any(rng):
        raise ValueError(f"{where}: damaged state {st!r}")
    buf._check_state(st, where)
    return total, rng


def check_episode_starts(buf: ReplayBuffer, meta: Mapping[str, Any], total: int, where: str) -> list[int] | None:
    """The first id of each stream's running episode (episode returns only), validated."""
    if buf.episode_returns_gamma is None:
        return None
    try:
        starts = [int(v) for v in meta["state"]["episode_starts"]]
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"{where}: damaged state (episode_starts)") from None
    n = buf.num_envs
    if len(starts) != n or any(v < s or v > total + s or (v - s) % n for s, v in enumerate(starts)):
        raise ValueError(f"{where}: damaged state (episode_starts {starts})")
    return starts


def check_side(
    buf: ReplayBuffer, arrays: Mapping[str, Any], n: int, where: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """Validated side arrays (slots distinct, in [0, n)), or None without a compact layout."""
    if buf.store_next_observations:
        return None
    slots, rows = np.asarray(arrays[SIDE_SLOTS]), np.asarray(arrays[SIDE_ROWS])
    obs = buf._stored[0][0]
    if (
        slots.dtype != np.int64
        or slots.ndim != 1
        or rows.dtype != np.dtype(obs.dtype)
        or rows.shape != (len(slots), *obs.shape)
    ):
        raise ValueError(
            f"{where}: damaged kept next observations (slots {slots.dtype} {slots.shape}, "
            f"rows {rows.dtype} {rows.shape})"
        )
    if len(slots) and (slots.min() < 0 or slots.max() >= n or len(np.unique(slots)) != len(slots)):
        raise ValueError(f"{where}: damaged kept next observations (slots out of [0, {n}) or repeated)")
    return np.ascontiguousarray(slots), np.ascontiguousarray(rows)


def set_state(
    buf: ReplayBuffer,
    meta: Mapping[str, Any],
    total: int,
    rng: list[int],
    starts: list[int] | None,
    side: tuple[np.ndarray, np.ndarray] | None,
) -> None:
    """Restore validated counters, generator, episode starts and side store, then the subclass's state."""
    if starts is None:
        buf._impl.set_state(total, rng)
    else:
        buf._impl.set_full_state(total, rng, starts)
    if side is not None:
        buf._impl.set_side_entries(*side)
    buf._restore(meta)


# ---------------------------------------------------------------------------- snapshots
def state_dict(buf: ReplayBuffer) -> dict[str, Any]:
    views = {k: v.copy() for k, v in buf._arrays(len(buf)).items()}
    return {
        "format": persistence.FORMAT,
        "version": persistence.VERSION,
        **buf._meta(),
        "arrays": {**views, **side_arrays(buf)},
    }


def load_state_dict(buf: ReplayBuffer, state: Mapping[str, Any]) -> None:
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping, got {type(state).__name__}")
    if state.get("version") != persistence.VERSION:
        raise ValueError(f"state: unsupported version {state.get('version')!r}")
    total, rng = check_meta(buf, state, "state")
    starts = check_episode_starts(buf, state, total, "state")
    n = min(total, buf.capacity)
    views = buf._arrays(n, writable=True)
    given = state.get("arrays")
    expected = set(views) | set(side_arrays(buf))
    if not isinstance(given, Mapping) or set(given) != expected:
        raise ValueError(f"state['arrays'] must hold exactly {sorted(expected)}")
    checked = {}
    for name, v in views.items():
        a = np.asarray(given[name])
        if a.dtype != v.dtype or a.shape != v.shape:
            raise ValueError(f"state['arrays'][{name!r}]: expected {v.dtype} {v.shape}, got {a.dtype} {a.shape}")
        checked[name] = a
    buf._check_arrays(checked, "state")
    side = check_side(buf, given, n, "state")
    for name, a in checked.items():
        views[name][...] = a
    set_state(buf, state, total, rng, starts, side)


# ---------------------------------------------------------------------------- files
def save(buf: ReplayBuffer, path: str | os.PathLike[str]) -> None:
    n = len(buf)
    if buf._storage_path is not None and storage.same_file(path, buf._storage_path):
        storage.save_in_place(
            buf._storage_path,
            buf._layout,
            buf._mapped,
            buf._meta(),
            field_arrays(buf, n),
            field_index(buf),
            {**buf._arrays(n), **side_arrays(buf)},
        )
        return
    persistence.write_file(path, buf._meta(), [*buf._arrays(n).items(), *side_arrays(buf).items()])


def load(cls: type[B], path: str | os.PathLike[str], mmap: bool, verify: bool) -> B:
    where = str(path)
    made: dict[str, Any] = {}

    def allocate(header: dict[str, Any]) -> dict[str, np.ndarray | None]:
        """Build the buffer the header describes; the arrays to read the file into."""
        cfg = header.get("config")
        if header.get("class") != cls.__name__ or not isinstance(cfg, dict):
            raise ValueError(f"{path}: holds a {header.get('class')!r}, not a {cls.__name__}")
        if mmap:
            storage.check_mapped_header(path, header, cfg.get("num_envs"))
        kwargs: dict[str, Any] = {**with_layout_defaults(cfg), "seed": 0}
        if mmap:
            kwargs.update(storage_path=path, _open_existing=True)
        try:
            buf = cls(**kwargs)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"{path}: damaged configuration or not a mapped buffer file ({e})") from None
        total, _ = check_meta(buf, header, where)
        check_episode_starts(buf, header, total, where)
        n = min(total, buf.capacity)
        made.update(buf=buf, n=n, views=buf._arrays(n, writable=True), side={})
        entries = {ent.get("name"): ent for ent in header["arrays"]}
        for name in side_arrays(buf):  # variable size: allocated as the header declares
            ent = entries.get(name)
            if ent is None:
                raise ValueError(f"{path}: no array {name!r}")
            shape = tuple(ent["shape"])
            if not shape or shape[0] > n:
                raise ValueError(f"{path}: damaged kept next observations ({name} shape {shape})")
            made["side"][name] = np.empty(shape, np.dtype(ent["dtype"]))
        outs: dict[str, np.ndarray | None] = {**made["views"], **made["side"]}
        if mmap:
            storage.check_mapped_entries(path, buf._layout, header, field_arrays(buf, n), field_index(buf), verify)
            outs.update(dict.fromkeys(field_arrays(buf, 0)))  # mapped rows are in place: nothing to read
        return outs

    header = persistence.read_arrays(path, allocate)
    buf: B = made["buf"]
    total, rng = check_meta(buf, header, where)
    buf._check_arrays(made["views"], where)
    side = check_side(buf, made["side"], made["n"], where) if made["side"] else None
    set_state(buf, header, total, rng, check_episode_starts(buf, header, total, where), side)
    return buf
