"""fastrl.ReplayBuffer: the circular replay buffer over the C++ core.

Storage. Rows are time-major: with ``num_envs=N`` row ``r`` is env ``r % N`` at step ``r // N``,
and every row has an id (``total_added`` counts them); slot ``id % capacity`` holds it, so each
env stream owns ``capacity / N`` slots (``capacity`` must be a multiple of ``num_envs``).

Layouts (``store_next_observations``). True stores ``next_observations`` as its own field (twice
the observation memory). False stores each observation once: the next observation of a step is
read from the next step of the same stream; where the env emitted something else (the true final
observation at an episode end, or any non-consecutive rows) the given next observation is kept in
a small side store, so sampling returns exactly what was added, bit for bit. The newest step of
each stream keeps its next observation aside until its successor arrives, so every stored step
stays sampleable and batches equal those of the full layout (same ids, same values). None (the
default) picks False for observations of 1 KiB or more (pixels) or with ``frame_stack``, True for
small ones (vectors), where the full layout is faster to add to and sample from.

Frame stacking (``frame_stack=k > 1``). The buffer stores single frames and samples
``observations`` and ``next_observations`` as stacks ``[B, k, *observation_shape]`` (oldest frame
first), built at sample time as gymnasium's ``FrameStackObservation(env, k)`` builds them; ``add``
/ ``extend`` take single frames or whole stacks (only the newest frame of a stack is kept). An
episode starts at a stream's first step and after every terminated or truncated step. Positions
before an episode's first frame repeat that frame (``frame_padding="reset"``, gymnasium's default)
or are zeros (``"zero"``). The frames of the last ``(k - 1) * num_envs`` overwritten steps are
kept, so every stored step's stack is complete.

Terminated steps' next observations (``terminated_next_observations``). ``"keep"`` (the default)
returns them as added. ``"zero"`` (compact layout only) does not keep them: the next observation of
a terminated step reads as zeros (the newest frame of a next stack, with ``frame_stack``). A target
masked by ``1 - terminated`` never uses it, and where terminations are frequent (lost lives as
terminals in Atari) the kept final frames are the only memory beyond one frame per step.

Episode returns (``episode_returns_gamma=g``). When an episode of a stream ends (terminated or
truncated), C++ fills the computed fields ``returns`` (the discounted return-to-go) and
``has_return`` of every stored step of it in one backward pass; steps of a running episode have
``returns == 0`` and ``has_return == False`` until it ends. A truncated episode gets its observed
partial return, not bootstrapped: a lower bound of the true return when rewards are non-negative
(what SAIL-DQN uses). Steps whose episode started before overwritten rows still get their exact
return-to-go (it only depends on later, still-stored rewards).

Memory-mapped storage (``storage_path=``). The field storage lives in a new sparse file, mapped
into memory (buffers larger than RAM; the OS pages rows in and out): see
:mod:`fastrl.replay.storage`. Saving and loading: :mod:`fastrl.replay.files`.

Casting. Values are cast into a field's dtype only when no information of their kind is lost:
float fields take bools, ints and floats; int fields take bools and ints that fit; bool fields
take bools and 0 / 1. Anything else raises and changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from operator import attrgetter
from typing import Any

import numpy as np
import torch

from fastrl import _core
from fastrl._util import (
    as_ids,
    check_int,
    check_nstep,
    check_real,
    check_unit,
    out_array,
    seed_value,
)
from fastrl.replay import files, spaces, storage
from fastrl.replay.batch import N_STD as _N_STD
from fastrl.replay.batch import Batch
from fastrl.replay.batch import copy_batch as _copy_batch
from fastrl.replay.batch import to_device as _to_device
from fastrl.replay.prefetch import Prefetcher
from fastrl.replay.schema import TORCH_DTYPES as _TORCH_DTYPES
from fastrl.replay.schema import Field, build_fields

__all__ = ["Batch", "ReplayBuffer", "available_memory"]

_COMPACT_FROM_BYTES = 1024  # auto layout: observations stored once from this row size on
_RETURN_FIELDS = {"returns": "float32", "has_return": "bool"}  # computed by C++ (episode_returns_gamma)


def available_memory() -> int:
    """Bytes of memory this process can still get (MemAvailable + SwapFree; physical memory as fallback)."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()}
        return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 1 << 62


def _check_capacity(capacity: Any, num_envs: Any) -> tuple[int, int]:
    capacity, num_envs = check_int("capacity", capacity, 1), check_int("num_envs", num_envs, 1)
    if capacity % num_envs:
        low = capacity // num_envs * num_envs
        near = f"{low} or {low + num_envs}" if low else f"{num_envs}"
        raise ValueError(
            f"capacity={capacity} must be a multiple of num_envs={num_envs} (each env stream "
            f"gets capacity / num_envs slots): use {near}"
        )
    return capacity, num_envs


class ReplayBuffer:
    """Circular replay buffer with named fields, one or many env streams, stored in C++.

    Args:
        capacity: number of transitions kept; a multiple of ``num_envs``.
        observation_shape, observation_dtype: per-step observation.
        action_shape, action_dtype: per-step action (``()`` and int64 for Discrete).
        reward_dtype: dtype of ``rewards`` (float32 by default).
        num_envs: parallel env streams; ``extend`` takes one step of all of them at once.
        seed: seed of the buffer's own generator (random when None).
        extra_fields: ``{name: (shape, dtype)}`` stored beside the standard fields.
        episode_returns_gamma: when given (in [0, 1]), also keep each transition's observed
            discounted return-to-go, filled when its episode ends: ``Batch.extras["returns"]``
            (float32) and ``["has_return"]`` (bool); see the module docstring.
        store_next_observations: False stores each observation once (half the memory, same
            batches), True stores ``next_observations`` too; None picks False for observations of
            1 KiB or more or with ``frame_stack``.
        frame_stack: k > 1 stores single frames and samples stacks ``[B, k, *observation_shape]``,
            as gymnasium's ``FrameStackObservation(env, k)``; ``observation_shape`` is one frame's.
        frame_padding: ``"reset"`` (repeat the first frame) or ``"zero"``, as its ``padding_type``.
        terminated_next_observations: ``"keep"`` or ``"zero"``: a terminated step's next
            observation is not stored and reads as zeros (compact layout: ``store_next_observations``
            False, or None, which it then resolves to False).
        storage_path: a new file to keep the field storage in, memory-mapped (buffers larger than
            RAM); ``ReplayBuffer.load(path, mmap=True)`` reopens it after ``save(storage_path)``.

    Values are cast into a field's dtype only where nothing is lost (see the module docstring).
    """

    def __init__(
        self,
        capacity: int,
        observation_shape: Any = (),
        action_shape: Any = (),
        observation_dtype: Any = np.float32,
        action_dtype: Any = np.int64,
        reward_dtype: Any = np.float32,
        num_envs: int = 1,
        seed: int | None = None,
        extra_fields: Mapping[str, tuple[Any, Any]] | None = None,
        episode_returns_gamma: float | None = None,
        store_next_observations: bool | None = None,
        frame_stack: int = 1,
        frame_padding: str = "reset",
        terminated_next_observations: str = "keep",
        storage_path: str | os.PathLike[str] | None = None,
        _open_existing: bool = False,
    ) -> None:
        capacity, num_envs = _check_capacity(capacity, num_envs)
        check_int("frame_stack", frame_stack, 1, 1024)
        if store_next_observations is not None and not isinstance(store_next_observations, (bool, np.bool_)):
            raise TypeError(
                f"store_next_observations must be a bool or None, got {type(store_next_observations).__name__}"
            )
        if frame_padding not in ("reset", "zero"):
            raise ValueError(f"frame_padding must be 'reset' or 'zero', got {frame_padding!r}")
        if terminated_next_observations not in ("keep", "zero"):
            raise ValueError(
                f"terminated_next_observations must be 'keep' or 'zero', got {terminated_next_observations!r}"
            )
        zero_terminated = terminated_next_observations == "zero"
        if zero_terminated and store_next_observations:
            raise ValueError(
                "terminated_next_observations='zero' needs the compact layout (store_next_observations=False or None)"
            )
        user_fields = build_fields(
            observation_shape, action_shape, observation_dtype, action_dtype, reward_dtype, extra_fields
        )
        fields = user_fields
        self._input_names = tuple(f.name for f in user_fields[_N_STD:])  # extras the caller supplies
        if episode_returns_gamma is not None:
            episode_returns_gamma = check_unit("episode_returns_gamma", episode_returns_gamma)
            taken = sorted(set(self._input_names) & set(_RETURN_FIELDS))
            if taken:
                raise ValueError(f"extra_fields: {taken} are reserved when episode_returns_gamma is set")
            fields = fields + tuple(Field(n, (), d) for n, d in _RETURN_FIELDS.items())
        self.frame_stack = int(frame_stack)
        self.frame_padding = frame_padding
        self.terminated_next_observations = terminated_next_observations
        if store_next_observations is None:  # auto: compact where the memory it saves matters
            store_next_observations = (
                frame_stack == 1 and user_fields[0].row_bytes < _COMPACT_FROM_BYTES and not zero_terminated
            )
        self.store_next_observations = bool(store_next_observations)
        self._frame_shape = user_fields[0].shape
        # fields as stored (``_stored``: with storage or not) and as sampled (``fields``: stacks)
        self._stored = tuple((f, not (i == 3 and not self.store_next_observations)) for i, f in enumerate(fields))
        if self.frame_stack > 1:
            stacked = (self.frame_stack, *self._frame_shape)
            fields = tuple(Field(f.name, stacked, f.dtype) if i in (0, 3) else f for i, f in enumerate(fields))
        self.fields: tuple[Field, ...] = fields
        self._extra_names = tuple(f.name for f in self.fields[_N_STD:])
        self._row_bytes = sum(f.row_bytes for f in self.fields)
        stored_row = sum(f.row_bytes for f, has in self._stored if has)
        need = capacity * stored_row
        self._mapped: Any = None
        self._storage_path: str | None = None
        layout = None
        if storage_path is not None:
            self._storage_path = os.path.abspath(os.fspath(storage_path))
            layout = storage.layout([f.row_bytes if has else None for f, has in self._stored], capacity, num_envs)
            if not _open_existing:
                storage.check_new_file(self._storage_path, layout)
        elif need > available_memory():
            raise ValueError(
                f"capacity={capacity} needs {need / 2**30:.2f} GiB for {stored_row} bytes per "
                f"transition, more than the {available_memory() / 2**30:.2f} GiB available; "
                f"use a smaller capacity or storage_path= (memory-mapped storage)"
            )
        self._config = {
            "capacity": capacity,
            "observation_shape": list(self._frame_shape),
            "action_shape": list(self.fields[1].shape),
            "observation_dtype": self.fields[0].dtype,
            "action_dtype": self.fields[1].dtype,
            "reward_dtype": self.fields[2].dtype,
            "num_envs": num_envs,
            "extra_fields": {f.name: [list(f.shape), f.dtype] for f in user_fields[_N_STD:]},
        }
        if episode_returns_gamma is not None:
            self._config["episode_returns_gamma"] = episode_returns_gamma
        self._config.update(
            store_next_observations=self.store_next_observations,
            frame_stack=self.frame_stack,
            frame_padding=self.frame_padding,
        )
        if zero_terminated:  # saved only when set: files without it load as "keep"
            self._config["terminated_next_observations"] = terminated_next_observations
        # id(batch) -> (batch, B, ids array, field arrays, discounts array or None)
        self._prepared: dict[int, tuple[Batch, int, np.ndarray, tuple[np.ndarray, ...], np.ndarray | None]] = {}
        self._staging: dict[Any, Batch] = {}
        self._staging_events: dict[Any, Any] = {}
        options: dict[str, Any] = {
            "store_next_observations": self.store_next_observations,
            "frame_stack": self.frame_stack,
            "zero_padding": frame_padding == "zero",
            "zero_terminated_next": zero_terminated,
        }
        if layout is not None:
            assert self._storage_path is not None
            self._mapped = storage.map_file(self._storage_path, layout, create=not _open_existing)
            self._layout = layout
            options.update(mapped=self._mapped, field_offsets=layout.offsets)
        self._impl = self._make_impl(
            [(f.name, list(f.shape), f.dtype) for f in user_fields],
            capacity,
            num_envs,
            seed_value(seed),
            -1.0 if episode_returns_gamma is None else episode_returns_gamma,
            options,
        )

    def _make_impl(
        self, fields: list[Any], capacity: int, num_envs: int, seed: int, returns_gamma: float, options: dict[str, Any]
    ) -> Any:
        """The C++ core; subclasses that wrap it in a composite (prioritized) override this."""
        return _core.ReplayBuffer(fields, capacity, num_envs, seed, returns_gamma, **options)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_env(cls, env: Any, capacity: int, **kwargs: Any) -> ReplayBuffer:
        """A buffer whose schema matches a gymnasium env or vector env (Box / Discrete spaces).

        For a vector env ``num_envs`` is taken from it; store its steps with :meth:`extend` and
        :func:`fastrl.final_observations`. A vector env must autoreset in the same step
        (``AutoresetMode.SAME_STEP``) or not at all (``DISABLED``): gymnasium's default
        ``NEXT_STEP`` returns a reset step after each episode end, which is no transition, so it
        raises ValueError naming the fix.
        When the env is wrapped in gymnasium's ``FrameStackObservation`` (found through the
        wrapper chain, and in the first sub-env of a ``SyncVectorEnv``), the buffer stores single
        frames and stacks them itself: ``frame_stack`` and ``frame_padding`` default to the
        wrapper's ``stack_size`` and ``padding_type`` (a custom padding observation is not
        supported), and sampled observations keep the env's stacked shape. Pass
        ``frame_stack=1`` to store the stacks as they are instead.
        """
        spec = spaces.schema_from_env(env)
        for k in spec:
            if k in kwargs:
                raise TypeError(f"from_env: {k} is read from the env; do not pass it")
        wrapper = spaces.frame_stack_of(env)
        if wrapper is not None and kwargs.get("frame_stack", wrapper[0]) != 1:
            size, padding = wrapper
            if kwargs.setdefault("frame_stack", size) != size:
                raise ValueError(f"frame_stack={kwargs['frame_stack']} but the env stacks {size} frames")
            if padding not in ("reset", "zero"):
                raise ValueError(
                    "from_env: FrameStackObservation with a custom padding observation is not "
                    "supported (use padding_type='reset' or 'zero', or frame_stack=1)"
                )
            if kwargs.setdefault("frame_padding", padding) != padding:
                raise ValueError(f"frame_padding={kwargs['frame_padding']!r} but the env pads with {padding!r}")
            spec["observation_shape"] = spec["observation_shape"][1:]
        return cls(capacity, **spec, **kwargs)

    # ------------------------------------------------------------------ properties
    # read from the C++ core (operator.attrgetter: no Python frame per access)
    capacity = property(attrgetter("_impl.capacity"), doc="Maximum number of stored transitions (int).")
    num_envs = property(attrgetter("_impl.num_envs"), doc="Parallel env streams (int).")
    total_added = property(
        attrgetter("_impl.total"),
        doc="Transitions ever added (int); ids of stored rows are in ``[total_added - len(self), total_added)``.",
    )
    storage_path = property(
        attrgetter("_storage_path"),
        doc="The memory-mapped file holding the field storage (str), or None (heap memory).",
    )

    @property
    def episode_returns_gamma(self) -> float | None:
        """Discount of the ``returns`` field, or None when the buffer keeps no episode returns."""
        g = self._impl.episode_returns_gamma
        return None if g < 0 else g

    def __len__(self) -> int:
        return self._impl.size

    def memory_usage(self) -> dict[str, int]:
        """Bytes the buffer holds, by part: each stored field (``capacity`` rows; in the mapped
        file with ``storage_path``), ``observation_store`` (kept next observations, the newest
        steps' next observations, the frames kept for stacks) and, for prioritized buffers, the
        priorities and their trees. Sampled batches are not counted."""
        out = {f.name: int(self._impl.storage_bytes(i)) for i, (f, has) in enumerate(self._stored) if has}
        if not self.store_next_observations or self.frame_stack > 1:
            out["observation_store"] = int(self._impl.side_bytes + self._impl.observation_fixed_bytes)
        return out

    def memory_bytes(self) -> int:
        """Total bytes of :meth:`memory_usage`."""
        return sum(self.memory_usage().values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}: {f.dtype}{list(f.shape)}" for f in self.fields)
        layout = "" if self.store_next_observations else ", compact"
        if self.frame_stack > 1:
            layout += f", frame_stack={self.frame_stack} ({self.frame_padding})"
        return (
            f"{type(self).__name__}(size={len(self)}, capacity={self.capacity}, num_envs={self.num_envs}"
            f"{layout}, {fields})"
        )

    # ------------------------------------------------------------------ writing
    def _values(self, args: tuple[Any, ...], extras: dict[str, Any]) -> tuple[Any, ...]:
        if extras.keys() != set(self._input_names):
            missing = sorted(set(self._input_names) - extras.keys())
            unknown = sorted(extras.keys() - set(self._input_names))
            raise ValueError(
                f"extra fields: missing {missing}, unknown {unknown} (this buffer declares {list(self._input_names)})"
            )
        return args + tuple(extras[n] for n in self._input_names)

    def _frames(self, x: Any, lead: int) -> Any:
        """With frame stacking: the newest frame of a stack ``[*lead, k, *frame_shape]``, else ``x``."""
        a = x if isinstance(x, np.ndarray) else np.asarray(x)
        if a.ndim == lead + 1 + len(self._frame_shape) and a.shape[lead] == self.frame_stack:
            return a[(slice(None),) * lead + (-1,)]
        return x

    def add(
        self, obs: Any, action: Any, reward: Any, next_obs: Any, terminated: Any, truncated: Any, **extras: Any
    ) -> None:
        """Store one step of one env (``num_envs == 1``). O(row bytes)."""
        if self.frame_stack > 1:
            obs, next_obs = self._frames(obs, 0), self._frames(next_obs, 0)
        if extras or self._input_names:
            self._impl.add(self._values((obs, action, reward, next_obs, terminated, truncated), extras))
        else:
            self._impl.add((obs, action, reward, next_obs, terminated, truncated))

    def extend(
        self, obs: Any, action: Any, reward: Any, next_obs: Any, terminated: Any, truncated: Any, **extras: Any
    ) -> None:
        """Store K rows: ``[K, ...]`` arrays, K a multiple of ``num_envs``.

        Rows are time-major: row ``r`` is env ``r % num_envs`` at step ``r // num_envs``; with
        ``num_envs=N`` one vector-env step is ``[N, ...]``. For gymnasium vector envs,
        ``next_obs`` must be the true final observation where an episode ended (see
        :func:`fastrl.final_observations`). The GIL is released while C++ copies.
        """
        if self.frame_stack > 1:
            obs, next_obs = self._frames(obs, 1), self._frames(next_obs, 1)
        self._impl.extend(self._values((obs, action, reward, next_obs, terminated, truncated), extras))

    # ------------------------------------------------------------------ sampling
    def _batch(self, arrays: tuple[Any, ...], discounts: np.ndarray | None = None) -> Batch:
        t = tuple(map(torch.from_numpy, arrays))
        extras = dict(zip(self._extra_names, t[_N_STD + 1 :])) if self._extra_names else {}
        disc = None if discounts is None else torch.from_numpy(discounts)
        return tuple.__new__(Batch, (t[1], t[2], t[3], t[4], t[5], t[6], t[0], extras, None, disc))

    def _check_require_return(self, require_return: Any) -> bool:
        if require_return and self.episode_returns_gamma is None:
            raise ValueError(
                "require_return=True needs a buffer that keeps episode returns "
                "(ReplayBuffer(..., episode_returns_gamma=...))"
            )
        return bool(require_return)

    def sample(
        self,
        batch_size: int,
        beta: float | None = None,
        *,
        replace: bool = True,
        device: Any = None,
        n_step: int = 1,
        gamma: float | None = None,
        require_return: bool = False,
    ) -> Batch:
        """Sample ``batch_size`` transitions uniformly (with replacement by default).

        On CPU the tensors wrap the arrays C++ allocated and filled (zero-copy). With a CUDA
        ``device`` the batch is gathered into pinned host memory and copied with
        ``non_blocking=True``. O(batch_size), independent of capacity. With ``frame_stack > 1`` a
        one-step CPU batch's observations and next observations are two views of one array of
        k + 1-frame windows (see :class:`Batch`).

        n-step targets: with ``gamma`` given, each sampled start contributes the discounted sum
        of up to ``n_step`` rewards of its own env stream. Summing stops after a terminated step
        (nothing to bootstrap), after a truncated step (bootstrap from its true final
        observation) and at the newest stored step of the stream; it never reads another stream
        or an unwritten or overwritten step. ``next_observations``, ``terminated`` and
        ``truncated`` then belong to the last summed step, and ``Batch.discounts`` is
        ``gamma ** k`` for the k steps summed (see :class:`Batch`). O(batch_size * n_step).

        ``require_return=True`` draws only transitions whose episode has ended (uniformly among
        them), so every ``extras["has_return"]`` is True; needs ``episode_returns_gamma``.

        ``beta`` is accepted (and validated) as :meth:`PrioritizedReplayBuffer.sample` takes it,
        so one call serves both buffers; it changes nothing here and ``batch.weights`` is None.
        """
        if type(batch_size) is not int or batch_size < 1:
            batch_size = check_int("batch_size", batch_size, 1)
        batch_size = self._check_batch_bytes(batch_size)
        if beta is not None:
            check_real("beta", beta)
        plain = n_step == 1 and gamma is None and not require_return
        if not plain:
            n_step, gamma = check_nstep(n_step, gamma)
            require_return = self._check_require_return(require_return)
        if device is None or torch.device(device).type == "cpu":
            if plain:
                return self._batch(self._impl.sample(batch_size, bool(replace)))
            arrays = self._impl.sample_ex(batch_size, bool(replace), require_return, n_step, gamma)
            return self._batch(arrays[:-1], arrays[-1])
        device = torch.device(device)
        staging = self.empty_batch(batch_size, pin_memory=device.type == "cuda", discounts=gamma is not None)
        self._prepared.pop(id(staging), None)
        self.sample_into(
            staging, batch_size, replace=replace, n_step=n_step, gamma=gamma, require_return=require_return
        )
        return _to_device(staging, device)

    def _check_batch_bytes(self, batch_size: int) -> int:
        need = batch_size * (self._row_bytes + 8)
        if need > 1 << 28 and need > available_memory():  # reading /proc/meminfo costs ~40 us: big batches only
            raise ValueError(f"batch_size={batch_size} needs {need / 2**30:.2f} GiB, more than the memory available")
        return batch_size

    def prefetcher(
        self,
        batch_size: int,
        beta: float | None = None,
        *,
        device: Any = None,
        n_step: int = 1,
        gamma: float | None = None,
    ) -> Prefetcher:
        """A background sampler: a C++ thread draws the next batch (uniformly, as :meth:`sample`
        with these arguments) into host memory, pinned for CUDA, while you train on the current
        one; see :mod:`fastrl.replay.prefetch` for the order of draws and when to call ``wait()``.
        ``beta`` (here and in ``next(beta=...)``) is validated and ignored, as in :meth:`sample`."""
        return self._prefetcher(batch_size, device, n_step, gamma, beta)

    def _prefetcher(self, batch_size: Any, device: Any, n_step: Any, gamma: Any, beta: Any) -> Prefetcher:
        beta = None if beta is None else check_real("beta", beta)
        batch_size = self._check_batch_bytes(check_int("batch_size", batch_size, 1))
        if n_step != 1 or gamma is not None:
            n_step, gamma = check_nstep(n_step, gamma)
        return Prefetcher(
            self, batch_size, torch.device("cpu") if device is None else torch.device(device), n_step, gamma, beta
        )

    def empty_batch(
        self, batch_size: int, *, device: Any = None, pin_memory: bool = False, discounts: bool = False
    ) -> Batch:
        """Preallocated tensors shaped for :meth:`sample_into`: on CPU (pinned when asked and
        CUDA is present) or on ``device``. With ``discounts=True`` the batch is for n-step
        sampling (``sample_into(..., gamma=...)``): it has a ``discounts`` tensor, and ``rewards``
        has the n-step dtype (float32, or float64 for a float64 reward field).

        CPU batches made here are registered with the buffer, so :meth:`sample_into` skips
        re-validating them; their storage cannot be resized. With ``frame_stack > 1`` an unpinned
        CPU batch for 1-step sampling has observations and next observations as two views of one
        array of k + 1-frame windows, as :meth:`sample` returns them (see :class:`Batch`).
        """
        batch_size = self._check_batch_bytes(check_int("batch_size", batch_size, 1))
        device = torch.device("cpu") if device is None else torch.device(device)
        pin = False
        if device.type != "cpu":

            def make(shape: tuple[int, ...], dtype: str) -> torch.Tensor:
                return torch.empty(shape, dtype=_TORCH_DTYPES[dtype], device=device)
        else:
            pin = bool(pin_memory) and torch.cuda.is_available()

            def make(shape: tuple[int, ...], dtype: str) -> torch.Tensor:
                # from_numpy gives storage that cannot be resized under the cached numpy views
                if pin:
                    return torch.from_numpy(torch.empty(shape, dtype=_TORCH_DTYPES[dtype], pin_memory=True).numpy())
                return torch.from_numpy(np.empty(shape, dtype))

        nstep_dtype = "float64" if self.fields[2].dtype == "float64" else "float32"
        t = [
            make((batch_size, *f.shape), nstep_dtype if discounts and i == 2 else f.dtype)
            for i, f in enumerate(self.fields)
        ]
        if device.type == "cpu" and not pin and not discounts and self.frame_stack > 1:
            # 1-step stacks: observations and next_observations as views of one array of k + 1-frame
            # windows, as sample() returns them (k + 1 frames copied per row, not 2k)
            k, frame = self.frame_stack, self.fields[0].shape[1:]
            w = np.empty((batch_size, k + 1, *frame), self.fields[0].dtype)
            t[0], t[3] = torch.from_numpy(w[:, :k]), torch.from_numpy(w[:, 1:])
        idx = make((batch_size,), "int64")
        disc = make((batch_size,), nstep_dtype) if discounts else None
        out = Batch(t[0], t[1], t[2], t[3], t[4], t[5], idx, dict(zip(self._extra_names, t[_N_STD:])), discounts=disc)
        if device.type == "cpu":
            arrays = tuple(x.numpy() for x in t)
            if len(self._prepared) >= 16:
                self._prepared.pop(next(iter(self._prepared)))
            self._prepared[id(out)] = (out, batch_size, idx.numpy(), arrays, None if disc is None else disc.numpy())
        return out

    def sample_into(
        self,
        out: Batch,
        batch_size: int | None = None,
        *,
        beta: float | None = None,
        replace: bool = True,
        n_step: int = 1,
        gamma: float | None = None,
        require_return: bool = False,
    ) -> Batch:
        """Sample into caller-owned tensors (e.g. from :meth:`empty_batch`); allocates nothing on CPU.

        Every output must have the field's exact dtype and shape ``[B, *shape]`` and be
        contiguous; nothing is converted. ``extras`` entries may be left out to skip a field.
        CUDA outputs are filled through pinned staging memory with non-blocking copies.
        ``n_step``, ``gamma`` and ``require_return`` are those of :meth:`sample`; with ``gamma``
        the batch needs a ``discounts`` tensor (``empty_batch(..., discounts=True)``). ``beta``
        is validated and ignored, as in :meth:`sample`. Returns ``out``.
        """
        if beta is not None:
            check_real("beta", beta)
        if n_step == 1 and gamma is None and not require_return:
            prepared = self._prepared.get(id(out))
            if prepared is not None and prepared[0] is out and (batch_size is None or batch_size == prepared[1]):
                self._impl.sample_into(prepared[1], bool(replace), prepared[2], prepared[3])
                return out
        return self._sample_into_ex(out, batch_size, replace, n_step, gamma, require_return)

    def _through_staging(self, out: Batch, batch_size: int, discounts: bool, fill: Any) -> Batch:
        """Fill device tensors ``out``: ``fill(staging)`` samples into pinned host memory, then
        non-blocking copies; the staging memory is reused once its previous copy has finished."""
        key = (batch_size, discounts)
        staging = self._staging.get(key)
        if staging is None:
            staging = self._staging[key] = self.empty_batch(batch_size, pin_memory=True, discounts=discounts)
        event = self._staging_events.get(key)
        if event is not None:
            event.synchronize()
        fill(staging)
        _copy_batch(staging, out)
        if staging.indices.is_pinned():  # on the stream that copies: the current one of out's device
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(out.indices.device))
            self._staging_events[key] = event
        return out

    def _out_arrays(self, out: Batch) -> tuple[Any, ...]:
        """The numpy views of a caller's field outputs (None for a skipped extra), without conversion."""
        unknown = set(out.extras) - set(self._extra_names)
        if unknown:
            raise ValueError(f"out.extras: unknown fields {sorted(unknown)}")
        return tuple(out_array(f"{f.name} out", t) for f, t in zip(self.fields, out[:_N_STD])) + tuple(
            out_array(f"{n} out", out.extras[n]) if n in out.extras else None for n in self._extra_names
        )

    def _sample_into_ex(
        self, out: Batch, batch_size: int | None, replace: bool, n_step: Any, gamma: Any, require_return: Any
    ) -> Batch:
        n_step, gamma = check_nstep(n_step, gamma)
        require_return = self._check_require_return(require_return)
        prepared = self._prepared.get(id(out))
        if (
            prepared is not None
            and prepared[0] is out
            and (batch_size is None or batch_size == prepared[1])
            and (gamma is None or prepared[4] is not None)
        ):
            self._impl.sample_into_ex(
                prepared[1],
                bool(replace),
                require_return,
                n_step,
                gamma,
                prepared[2],
                prepared[3],
                prepared[4] if gamma is not None else None,
            )
            return out
        if not isinstance(out, Batch):
            raise TypeError(f"out must be a fastrl Batch (see empty_batch), got {type(out).__name__}")
        if gamma is not None and out.discounts is None:
            raise ValueError(
                "out.discounts: n-step sampling (gamma=...) needs a discounts tensor; "
                "make the batch with empty_batch(batch_size, discounts=True)"
            )
        if batch_size is None:
            batch_size = len(out.indices)
        batch_size = check_int("batch_size", batch_size, 1)
        if isinstance(out.indices, torch.Tensor) and out.indices.device.type != "cpu":
            return self._through_staging(
                out,
                batch_size,
                gamma is not None,
                lambda staging: self._sample_into_ex(staging, batch_size, replace, n_step, gamma, require_return),
            )
        arrays = self._out_arrays(out)
        ids = out_array("indices out", out.indices)
        disc = out_array("discounts out", out.discounts) if gamma is not None else None
        self._impl.sample_into_ex(batch_size, bool(replace), require_return, n_step, gamma, ids, arrays, disc)
        return out

    def gather_nstep(self, indices: Any, n_step: int, gamma: float) -> dict[str, np.ndarray]:
        """n-step targets (as in :meth:`sample`) of the stored rows with the given ids, as numpy
        arrays by field name plus ``discounts``; for samplers that draw their own ids."""
        n_step, g = check_nstep(n_step, gamma)
        arrays = self._impl.gather_nstep(as_ids(indices), n_step, 1.0 if g is None else g)
        out = {f.name: a for f, a in zip(self.fields, arrays)}
        out["discounts"] = arrays[-1]
        return out

    # ------------------------------------------------------------------ views
    def field(self, name: str) -> np.ndarray:
        """Read-only numpy view of one field's whole storage, indexed by slot.

        Shares memory with the buffer and stays valid after the buffer is deleted.
        Slot ``i`` holds the row with id ``i + k * capacity`` for the newest such stored id.
        With ``frame_stack`` the ``observations`` storage holds single frames; with
        ``store_next_observations=False`` ``next_observations`` has no storage (ValueError:
        read it with :meth:`get`).
        """
        for i, f in enumerate(self.fields):
            if f.name == name:
                return self._impl.field_view(i)
        raise KeyError(f"unknown field {name!r}; this buffer has {[f.name for f in self.fields]}")

    def get(self, indices: Any) -> dict[str, np.ndarray]:
        """The stored rows with the given ids as numpy arrays, as :meth:`sample` returns them
        (stacks with ``frame_stack``); IndexError if one is not stored."""
        ids = as_ids(indices)
        return {f.name: self._impl.gather(i, ids) for i, f in enumerate(self.fields)}

    # ------------------------------------------------------------------ persistence (fastrl/replay/files.py)
    def state_dict(self) -> dict[str, Any]:
        """A snapshot: config, counters, generator state and a copy of every stored row."""
        return files.state_dict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; validated fully before anything changes."""
        files.load_state_dict(self, state)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the buffer to ``path`` (fastrl format: JSON header + raw arrays with CRC-32).

        The stored rows are written straight from the buffer's memory; the file is written to
        ``path.tmp`` and renamed, so an interrupted save never leaves a half-written ``path``.
        A memory-mapped buffer saved to its own ``storage_path`` writes no second copy: the
        mapped rows are flushed where they are and the header and the small side arrays are
        written in place (not atomic: a save interrupted there leaves a file that ``load``
        rejects as damaged; the file also stops matching its header once rows are added).
        """
        files.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False, verify: bool = True) -> ReplayBuffer:
        """Read a buffer written by :meth:`save`; raises ValueError if the file is damaged.

        With ``mmap=True`` the file must have been written by a buffer with ``storage_path``
        (saved to it): its rows are mapped, not read, and the loaded buffer keeps using the
        file as its storage (``storage_path == path``). ``verify`` checks the mapped rows'
        CRC-32 (one read pass over them).
        """
        return files.load(cls, path, mmap, verify)

    # what a subclass adds to what is saved (see fastrl/replay/files.py)
    def _meta(self) -> dict[str, Any]:
        return files.meta(self)

    def _arrays(self, n: int, writable: bool = False) -> dict[str, np.ndarray]:
        return files.arrays(self, n, writable)

    def _check_state(self, state: Mapping[str, Any], where: str) -> None:
        """Validate what a subclass adds to ``meta['state']``."""

    def _check_arrays(self, arrays: Mapping[str, np.ndarray], where: str) -> None:
        """Validate restored per-slot arrays' values before they are used."""

    def _restore(self, meta: Mapping[str, Any]) -> None:
        """Restore what a subclass adds to ``meta['state']``, after the rows and counters."""
