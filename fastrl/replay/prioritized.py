"""fastrl.PrioritizedReplayBuffer: prioritized experience replay over the C++ sum / min trees."""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import Any, cast

import numpy as np
import torch

from fastrl import _core
from fastrl._util import as_ids, as_numpy, check_int, check_nstep, out_array
from fastrl._util import check_real as _real
from fastrl.replay.batch import N_STD as _N_STD
from fastrl.replay.batch import Batch
from fastrl.replay.batch import to_device as _to_device
from fastrl.replay.buffer import ReplayBuffer
from fastrl.replay.prefetch import Prefetcher

_new_tuple = tuple.__new__  # Batch(...) without the keyword parsing of a NamedTuple's __new__


def _tree_bytes(n: int, k: int) -> int:
    """Bytes of one K-ary float64 tree over n leaves, as sum_tree.hpp allocates it (levels padded
    to multiples of K, the root level too, 64-byte aligned)."""
    sizes = [n]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // k))
    total = sum(-(-s // k) * k for s in sizes)
    return -(-total * 8 // 64) * 64


class PrioritizedReplayBuffer(ReplayBuffer):
    """Prioritized experience replay (Schaul et al., 2016) with the storage of :class:`ReplayBuffer`.

    Args:
        *args, **kwargs: as :class:`ReplayBuffer` (capacity, shapes, dtypes, num_envs, seed, ...).
        alpha: prioritization exponent (>= 0; 0 is uniform). Changeable later: ``buf.alpha = a``.
        eps: added to every priority passed to :meth:`update_priorities`, so a transition with a
            zero TD error can still be sampled; fixed at construction.

    A row with priority ``p`` (e.g. ``|TD error|``) has the raw priority ``r = p + eps`` and is
    sampled with probability ``P(i) = r_i**alpha / sum_j r_j**alpha``. New rows enter with the
    largest raw priority seen so far (1.0 before any update). Sums are float64 trees whose nodes
    are always recomputed from their children, so they never drift. Sampling is stratified: the
    total mass is cut into ``batch_size`` equal slices and one row is drawn in each, with the
    buffer's one seeded generator (shared with everything else the buffer draws; saved with it).
    """

    def __init__(self, *args: Any, alpha: float = 0.6, eps: float = 1e-6, **kwargs: Any) -> None:
        self._alpha0 = _real("alpha", alpha)
        self._eps = _real("eps", eps)
        self._per_prepared: dict[int, tuple[Any, ...]] = {}  # id(batch) -> (batch, B, ids, weights, arrays, discounts)
        super().__init__(*args, **kwargs)
        self._config["eps"] = self._eps

    def _make_impl(
        self, fields: list[Any], capacity: int, num_envs: int, seed: int, returns_gamma: float, options: dict[str, Any]
    ) -> Any:
        self._per = _core.PrioritizedReplayBuffer(
            fields, capacity, num_envs, seed, self._alpha0, self._eps, returns_gamma, **options
        )
        return self._per.base  # writes through it update the trees (under the buffer's lock)

    def memory_usage(self) -> dict[str, int]:
        """As :meth:`ReplayBuffer.memory_usage`, plus the raw priorities and the sum / min trees."""
        out = super().memory_usage()
        out["priorities"] = 8 * self.capacity
        out["priority_trees"] = 2 * _tree_bytes(self.capacity, _core.SUM_TREE_FANOUT)
        return out

    # ------------------------------------------------------------------ priorities
    @property
    def alpha(self) -> float:
        """Prioritization exponent; setting it recomputes every leaf from the raw priorities (O(N))."""
        return self._per.alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self._per.set_alpha(_real("alpha", value))

    eps = property(attrgetter("_per.eps"), doc="Added to every priority (float), fixed at construction.")
    max_priority = property(
        attrgetter("_per.max_priority"),
        doc="The raw priority (``p + eps``, float) new rows enter with: the running maximum, 1.0 at the start.",
    )

    def update_priorities(self, indices: Any, priorities: Any) -> int:
        """Set the priorities ``p`` (e.g. ``|TD error|``) of the rows ``indices`` (``batch.indices``).

        ``indices``: integer ``[B]``; ``priorities``: ``[B]`` (or any shape with B elements) of any
        real dtype, numpy or torch, on any device (moved to CPU). Rows overwritten since they were
        sampled are skipped, so a stale update never touches a newer transition. Negative, NaN or
        infinite priorities raise ValueError and change nothing; so do indices never written
        (IndexError). The GIL is released while C++ updates. Returns the number of rows updated.
        """
        return self._per.update_priorities(
            as_numpy("indices", indices, any_device=True), as_numpy("priorities", priorities, any_device=True)
        )

    def priorities(self, indices: Any) -> np.ndarray:
        """Raw priorities ``p + eps`` (float64) of stored rows (IndexError if one is not stored)."""
        return self._per.priorities(as_ids(indices))

    # ------------------------------------------------------------------ sampling
    def sample_indices(self, batch_size: int, beta: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
        """Prioritized ids ``int64[B]`` and importance weights ``float64[B]``, gathering no rows.

        Same draw as :meth:`sample` (and the same generator). To gather later, e.g. n-step
        returns, pass the ids to the buffer's gathering methods; a row may be overwritten in
        between if another thread writes.
        """
        batch_size = check_int("batch_size", batch_size, 1)
        return self._per.sample_ids(batch_size, _real("beta", beta))

    def _pbatch(self, arrays: tuple[Any, ...]) -> Batch:
        # (ids, weights, fields..., discounts or None)
        t = tuple(map(torch.from_numpy, arrays[:-1]))
        extras = dict(zip(self._extra_names, t[_N_STD + 2 :])) if self._extra_names else {}
        disc = None if arrays[-1] is None else torch.from_numpy(arrays[-1])
        return _new_tuple(Batch, (t[2], t[3], t[4], t[5], t[6], t[7], t[0], extras, t[1], disc))

    def sample(  # type: ignore[override]  # beta comes second, as in every PER API
        self,
        batch_size: int,
        beta: float = 0.4,
        *,
        replace: bool = True,
        device: Any = None,
        n_step: int = 1,
        gamma: float | None = None,
    ) -> Batch:
        """Sample ``batch_size`` transitions with probability ``P(i)``, stratified.

        ``batch.weights`` (``float32[B]``) are the importance weights ``(N * P(i))**-beta``
        divided by the largest possible one, ``(N * P_min)**-beta`` (computed in float64), so
        they lie in (0, 1]; ``batch.indices`` go to :meth:`update_priorities`. Sampling is with
        replacement. O(B log N + B * row bytes); the GIL is released. ``device``, ``n_step``
        and ``gamma`` (n-step targets from each drawn start, ``batch.discounts``) as in
        :meth:`ReplayBuffer.sample`; the draw and the n-step gather happen under one lock.
        """
        if n_step != 1 or gamma is not None:
            n_step, gamma = check_nstep(n_step, gamma)
        if type(batch_size) is not int or batch_size < 1:
            batch_size = check_int("batch_size", batch_size, 1)
        batch_size = self._check_batch_bytes(batch_size)  # MemoryError -> ValueError naming batch_size
        if type(beta) is not float:  # a float is range-checked in C++
            beta = _real("beta", beta)
        if replace is not True and not replace:
            raise ValueError("prioritized sampling draws with replacement; replace=False is not supported")
        if device is None or torch.device(device).type == "cpu":
            return self._pbatch(self._per.sample(batch_size, beta, n_step, gamma))
        device = torch.device(device)
        staging = self.empty_batch(batch_size, pin_memory=device.type == "cuda", discounts=gamma is not None)
        self._per_prepared.pop(id(staging), None)
        self.sample_into(staging, batch_size, beta=beta, n_step=n_step, gamma=gamma)
        return _to_device(staging, device)

    def prefetcher(  # type: ignore[override]  # beta comes second, as in sample
        self,
        batch_size: int,
        beta: float = 0.4,
        *,
        device: Any = None,
        n_step: int = 1,
        gamma: float | None = None,
    ) -> Prefetcher:
        """As :meth:`ReplayBuffer.prefetcher`, drawing prioritized batches; ``pf.next(beta=b)``
        sets the beta of the draws that follow (each batch is drawn one ``next()`` ahead, so it
        does not see the priorities updated since: a lag of one batch)."""
        return self._prefetcher(batch_size, device, n_step, gamma, beta)

    def empty_batch(
        self, batch_size: int, *, device: Any = None, pin_memory: bool = False, discounts: bool = False
    ) -> Batch:
        """As :meth:`ReplayBuffer.empty_batch`, with a ``float32[B]`` ``weights`` tensor."""
        b = super().empty_batch(batch_size, device=device, pin_memory=pin_memory, discounts=discounts)
        self._prepared.pop(id(b), None)
        idx = b.indices
        if idx.device.type != "cpu":
            w = torch.empty(idx.shape, dtype=torch.float32, device=idx.device)
        elif idx.is_pinned():
            w = torch.from_numpy(torch.empty(idx.shape, dtype=torch.float32, pin_memory=True).numpy())
        else:
            w = torch.from_numpy(np.empty(idx.shape, np.float32))
        out = b._replace(weights=w)
        if idx.device.type == "cpu":
            arrays = tuple(cast(torch.Tensor, t).numpy() for t in out[:_N_STD]) + tuple(
                out.extras[n].numpy() for n in self._extra_names
            )
            if len(self._per_prepared) >= 16:
                self._per_prepared.pop(next(iter(self._per_prepared)))
            disc = None if out.discounts is None else cast(torch.Tensor, out.discounts).numpy()
            self._per_prepared[id(out)] = (out, len(idx), idx.numpy(), w.numpy(), arrays, disc)
        return out

    def sample_into(  # type: ignore[override]  # beta: a float, not None
        self,
        out: Batch,
        batch_size: int | None = None,
        *,
        beta: float = 0.4,
        replace: bool = True,
        n_step: int = 1,
        gamma: float | None = None,
    ) -> Batch:
        """Prioritized sample into caller-owned tensors (e.g. from :meth:`empty_batch`).

        As :meth:`ReplayBuffer.sample_into`; ``out.weights`` must be a ``float32[B]`` tensor.
        Returns ``out``.
        """
        beta = _real("beta", beta)
        if n_step != 1 or gamma is not None:
            n_step, gamma = check_nstep(n_step, gamma)
        if gamma is not None and isinstance(out, Batch) and out.discounts is None:
            raise ValueError(
                "out.discounts: n-step sampling (gamma=...) needs a discounts tensor; "
                "make the batch with empty_batch(batch_size, discounts=True)"
            )
        if not replace:
            raise ValueError("prioritized sampling draws with replacement; replace=False is not supported")
        prepared = self._per_prepared.get(id(out))
        if prepared is not None and prepared[0] is out and (batch_size is None or batch_size == prepared[1]):
            self._per.sample_into(
                prepared[1],
                beta,
                prepared[2],
                prepared[3],
                prepared[4],
                n_step,
                gamma,
                prepared[5] if gamma is not None else None,
            )
            return out
        if not isinstance(out, Batch):
            raise TypeError(f"out must be a fastrl Batch (see empty_batch), got {type(out).__name__}")
        if out.weights is None:
            raise ValueError("out.weights is None: make out with this buffer's empty_batch")
        batch_size = check_int("batch_size", len(out.indices) if batch_size is None else batch_size)
        if isinstance(out.indices, torch.Tensor) and out.indices.device.type != "cpu":
            return self._through_staging(
                out,
                batch_size,
                out.discounts is not None,
                lambda staging: self.sample_into(staging, batch_size, beta=beta, n_step=n_step, gamma=gamma),
            )
        arrays = self._out_arrays(out)
        disc = None if gamma is None else out_array("discounts out", out.discounts)
        self._per.sample_into(
            batch_size,
            beta,
            out_array("indices out", out.indices),
            out_array("weights out", out.weights),
            arrays,
            n_step,
            gamma,
            disc,
        )
        return out

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> dict[str, Any]:
        meta = super()._meta()
        meta["state"].update(alpha=self._per.alpha, max_priority=self._per.max_priority)
        return meta

    def _arrays(self, n: int, writable: bool = False) -> dict[str, np.ndarray]:
        return {**super()._arrays(n, writable), "priorities": self._per.priorities_view(writable)[:n]}

    def _check_state(self, state: Mapping[str, Any], where: str) -> None:
        try:
            _real("alpha", state["alpha"])
            if not _real("max_priority", state["max_priority"]) > 0:
                raise ValueError
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"{where}: damaged prioritized state {state!r}") from None

    def _check_arrays(self, arrays: Mapping[str, np.ndarray], where: str) -> None:
        p = arrays["priorities"]
        if not (np.isfinite(p).all() and (p >= 0).all()):
            raise ValueError(f"{where}: damaged priorities (negative, NaN or infinite values)")

    def _restore(self, meta: Mapping[str, Any]) -> None:
        st = meta["state"]
        self._per.set_max_priority(float(st["max_priority"]))
        self._per.set_alpha(float(st["alpha"]))
