"""How the training loop draws batches, decided once from the agent's :class:`ReplaySpec`:
uniform or prioritized (beta annealed over the run), one-step or n-step, plain or prefetched in
a background thread; and the prioritized-replay feedback after each update."""

from __future__ import annotations

from typing import Any

import torch

from fastrl.replay.batch import Batch
from fastrl.replay.buffer import ReplayBuffer
from fastrl.replay.spec import ReplaySpec
from fastrl.schedules import LinearSchedule


class Sampler:
    """``sample(env_steps)`` draws a batch on ``device``; ``after_update(agent)`` gives a
    prioritized buffer the update's ``agent.td_abs`` as the batch's new priorities (nothing
    otherwise); ``before_write()`` must precede every write to the buffer (with prefetch it waits
    for the background draw, so that draws do not depend on thread timing); ``close()`` stops
    the prefetch thread."""

    def __init__(
        self,
        buffer: ReplayBuffer,
        spec: ReplaySpec,
        batch_size: int,
        device: torch.device,
        total_steps: int,
        prefetch: bool,
    ) -> None:
        self.buffer = buffer
        self.batch_size, self.device, self.prefetch = batch_size, device, prefetch
        self._kwargs = spec.sample_kwargs()
        self._beta = LinearSchedule(spec.beta_start, 1.0, max(1, total_steps)) if spec.prioritized else None
        self._prefetcher: Any = None  # made at the first draw
        self._indices: torch.Tensor | None = None

    def sample(self, env_steps: int) -> Batch:
        beta = None if self._beta is None else self._beta(env_steps)
        if self.prefetch:
            if self._prefetcher is None:
                self._prefetcher = self.buffer.prefetcher(self.batch_size, beta, device=self.device, **self._kwargs)
            batch: Batch = self._prefetcher.next(beta=beta)
        else:
            batch = self.buffer.sample(self.batch_size, beta, device=self.device, **self._kwargs)
        self._indices = batch.indices
        return batch

    def after_update(self, agent: Any) -> None:
        if self._beta is not None:  # the buffer adds its eps
            self.before_write()
            self.buffer.update_priorities(self._indices, agent.td_abs)  # type: ignore[attr-defined]

    def before_write(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.wait()

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None
