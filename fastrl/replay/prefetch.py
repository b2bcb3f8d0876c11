"""Background prefetch of the next batch (into pinned memory for CUDA) while the current one trains.

    pf = buffer.prefetcher(256, device="cuda")       # or PrioritizedReplayBuffer: beta=...
    for step in ...:
        batch = pf.next()          # the batch drawn in the background (beta: pf.next(beta=b))
        ... update on batch ...
        pf.wait()                  # before writing the buffer (extend, update_priorities)
        buffer.extend(...)

A C++ worker thread samples into one of two slots of host memory (pinned when the device is
CUDA) while the caller trains on the other; with a CUDA device, :meth:`Prefetcher.next` copies
the slot to the device with ``non_blocking=True`` and reuses a slot's memory only after its copy
has finished.

Order and determinism: ``next()`` returns the batch drawn at the previous ``next()`` call (the
first one is drawn at construction) and starts drawing the following one at once. So a batch is
drawn from the buffer as it was at the previous ``next()``: without the transitions written
since, and, for prioritized replay, without the priorities updated since. Call :meth:`wait`
before every write to the buffer, and the draws do not depend on thread timing: a run with the
same seed repeats exactly (it differs from a run without prefetch, whose draws see one more step).
On CPU, the batch returned by ``next()`` is valid until the following ``next()`` call (its memory
is refilled then); on CUDA the returned tensors are the caller's.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Self

import torch

from fastrl import _core
from fastrl._util import check_real
from fastrl.replay.batch import N_STD as _N_STD
from fastrl.replay.batch import to_device

if TYPE_CHECKING:
    from fastrl.replay.batch import Batch
    from fastrl.replay.buffer import ReplayBuffer


class Prefetcher:
    """Made by :meth:`fastrl.ReplayBuffer.prefetcher`; see the module docstring.

    ``close()`` (or ``with``) stops the worker; the buffer stays usable. Errors of a background
    draw (e.g. sampling an empty buffer) are raised by the ``next()`` that would return its batch.
    """

    def __init__(
        self,
        buffer: ReplayBuffer,
        batch_size: int,
        device: torch.device,
        n_step: int,
        gamma: float | None,
        beta: float | None,
    ) -> None:
        self._to_device, self._real = to_device, check_real
        self._device = device
        cuda = device.type == "cuda"
        discounts = gamma is not None
        self._slots: list[Batch] = [
            buffer.empty_batch(batch_size, pin_memory=cuda, discounts=discounts) for _ in range(2)
        ]
        self._events: list[Any] = [None, None]
        per = getattr(buffer, "_per", None)
        self._prioritized = per is not None
        self._beta = 0.0 if beta is None else float(beta)
        arrays = []
        for s in self._slots:
            std: tuple[torch.Tensor, ...] = s[:_N_STD]  # type: ignore[assignment]
            fields = tuple(t.numpy() for t in std) + tuple(s.extras[n].numpy() for n in buffer._extra_names)
            arrays.append(
                (
                    s.indices.numpy(),
                    None if s.weights is None else s.weights.numpy(),
                    fields,
                    None if s.discounts is None else s.discounts.numpy(),
                )
            )
        self._core = _core.Prefetcher(buffer._impl, per, batch_size, n_step, gamma, arrays)
        self._next = 0
        self._closed = self._refill = False
        self._core.request(0, self._beta)

    @property
    def batch_size(self) -> int:
        return len(self._slots[0].indices)

    def next(self, beta: float | None = None) -> Batch:
        """The prefetched batch; starts drawing the next one (with ``beta``, else the last beta
        given; a uniform buffer validates ``beta`` and ignores it)."""
        if self._closed:
            raise RuntimeError("the prefetcher is closed")
        if beta is not None:  # validated for both buffers; a uniform one ignores it
            self._beta = self._real("beta", beta)
        if self._refill:  # the last draw failed: draw this slot again
            self._refill = False
            self._core.request(self._next, self._beta)
        try:
            self._core.wait()  # slot k is filled (the GIL is released while waiting)
        except BaseException:
            self._refill = True
            raise
        k = self._next
        other = 1 - k
        event = self._events[other]
        if event is not None:  # the last device copy out of the other slot must be done
            event.synchronize()
        self._core.request(other, self._beta)
        self._next = other
        batch = self._slots[k]
        if self._device.type == "cpu":
            return batch
        out = self._to_device(batch, self._device)
        if self._device.type == "cuda":  # on the stream that copies: the current one of that device
            self._events[k] = torch.cuda.Event()
            self._events[k].record(torch.cuda.current_stream(self._device))
        return out

    def wait(self) -> None:
        """Block until the background draw is done (call before writing the buffer)."""
        if not self._closed:
            self._core.wait()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._core.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # nothing to report to at interpreter exit
            self.close()
