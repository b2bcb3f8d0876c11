"""Collectors as Ray actors (``collector_backend="ray"``): the same :class:`Stepper` as a collector
process, driven by calls instead of shared counters.

The learner keeps up to two calls in flight per actor (``DEPTH``): ``collect(upto, weights)`` steps
until the actor has ``upto`` vector steps (at most a chunk past what was asked before, never past
the learner's limit) and returns them; ``state()`` reports where it stands (a pause). An actor runs
its calls one at a time, in the order they were sent, so while the learner takes one chunk the actor
already steps the next, and the learner can look for chunks less often without idling the actor.
Weights go through the object store, one ``ray.put`` per publish; a call carries the newest
reference in a list, so Ray does not resolve it, and the actor fetches it only when its version is
new. An actor that dies (its node lost, killed, its env raising) fails its call:
:meth:`RayCollector.poll` raises :class:`CollectorError` and the learner restarts it, as it restarts
a collector process.

Ray is optional (the ``ray`` extra): it is imported inside functions.
"""

from __future__ import annotations

import itertools
import os
import socket
import tempfile
from collections import deque
from typing import Any

import numpy as np
import torch

from fastrl._util import first_line
from fastrl.config import ConfigError, ray_resources
from fastrl.training.collector import CollectorError, CollectorSpec, Stepper, _state_tensors

_STARTS = itertools.count()
DEPTH = 2
"""Calls in flight per actor."""
RAY_MISSING = 'collector_backend=ray needs Ray: pip install "fastrl[ray]"'


def import_ray(missing: str = RAY_MISSING) -> Any:
    """The ``ray`` module, or a ConfigError of one line naming the extra."""
    try:
        import ray
    except ImportError:
        raise ConfigError(missing) from None
    return ray


def start_ray(address: str | None, num_cpus: int | None = None, missing: str = RAY_MISSING) -> tuple[Any, bool]:
    """Join the Ray cluster at ``address`` (host:port; checked with a 3-second TCP connect first, so
    an unreachable one fails within seconds) or start a local instance with ``num_cpus``. Returns
    ``(ray, started)``: ``started`` if this call started Ray (the caller shuts it down)."""
    ray = import_ray(missing)
    if ray.is_initialized():
        return ray, False
    if address and address not in ("auto", "local") and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or address, int(port) if port.isdigit() else 6379), timeout=3.0).close()
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot reach Ray at {address}: {first_line(e)}") from None
    opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    # Ray starts its workers in the driver's working directory, with it on sys.path: from a source
    # checkout (the repository root) that shadows the installed fastrl, whose source tree has no
    # compiled _core. Start Ray from a neutral folder.
    cwd = os.getcwd()
    try:
        os.chdir(tempfile.gettempdir())
        if address:
            ray.init(address=address, **opts)
        else:
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **opts)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot start or reach Ray at {address or 'local'}: {first_line(e)}") from None
    finally:
        os.chdir(cwd)
    return ray, True


class CollectorActor:
    """What runs in the actor: a :class:`Stepper` and the newest weights it has loaded."""

    def __init__(self, cfg: Any, algo: str, spec: CollectorSpec, start: dict[str, Any], chunk: int) -> None:
        self.stepper = Stepper(cfg, algo, spec, start, chunk)
        self.version = 0

    def collect(self, upto: int, weights: list[Any], version: int) -> tuple[str, int, dict[str, np.ndarray]]:
        if version != self.version:
            import ray

            with torch.no_grad():
                for dst, src in zip(self.stepper.targets, ray.get(weights[0])):
                    dst.copy_(torch.from_numpy(src))
            self.version = version
        while self.stepper.iterations < upto and not self.stepper.full:
            self.stepper.step()
        taken = self.stepper.take(copy=True)
        assert taken is not None
        return ("data", *taken)

    def state(self) -> tuple[str, dict[str, Any]]:
        return ("paused", self.stepper.state())

    def node_id(self) -> str:
        """The Ray node this actor runs on (hex)."""
        import ray

        return str(ray.get_runtime_context().get_node_id())


class RayWeights:
    """Policy weights in Ray's object store, with a version. :meth:`publish` only notes the new
    version; the first call that hands weights to an actor after it puts them (:meth:`ref`), so a
    learner that publishes every update makes at most one ``ray.put`` per call it sends."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.ray = import_ray()
        self.sources = _state_tensors(modules)
        self.version = 0
        self._ref: list[Any] | None = None
        self.publish(self.sources)

    def publish(self, sources: list[torch.Tensor]) -> None:
        self.sources = sources
        self.version += 1
        self._ref = None

    def ref(self) -> list[Any]:
        """The newest version in the object store (in a list, so Ray does not resolve it in calls)."""
        if self._ref is None:
            self._ref = [self.ray.put([t.detach().cpu().numpy().copy() for t in self.sources])]
        return self._ref


class RayCollector:
    """The learner's handle of one collector actor, with the interface of
    :class:`fastrl.training.collector.Collector` (set_limit, request_pause, resume, poll, close)."""

    def __init__(
        self,
        cfg: Any,
        algo: str,
        spec: CollectorSpec,
        start: dict[str, Any],
        weights: RayWeights,
        chunk: int,
        limit: int = 0,
        pause_at: int | None = None,
    ) -> None:
        self.ray = import_ray()
        self.spec, self.weights, self.chunk, self.limit = spec, weights, chunk, limit
        # spread over the cluster's nodes (best effort), as Ape-X spreads its actors; a restart after
        # a lost node goes to the nodes left
        actor_cls = self.ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0, scheduling_strategy="SPREAD")(
            CollectorActor
        )
        resources = ray_resources(cfg.ray_resources) if cfg.ray_resources else {}
        # named, so a person (or a test) can find it: ray.util.list_named_actors()
        name = f"fastrl-{os.getpid()}-collector-{spec.index}-{next(_STARTS)}"
        self.actor = actor_cls.options(name=name, resources=resources).remote(cfg, algo, spec, start, chunk)
        self.asked = int(start["iterations"])  # vector steps asked for (answered or in flight)
        self.inflight: deque[Any] = deque()  # calls in the order the actor runs them
        # a pause requested: report once at this many steps. Set before the first calls go out, so a
        # collector started during a pause does not step past it (request_pause after them would be late)
        self.pause_at = pause_at
        self.pausing = False  # the state() call is in flight
        self.paused = False  # reported; waits for resume
        self._closed = False
        self._pump()

    def _pump(self) -> None:
        """Put the next calls in flight, up to DEPTH, as far as they are due."""
        while len(self.inflight) < DEPTH and not (self._closed or self.paused or self.pausing):
            if self.pause_at is not None and self.asked >= self.pause_at:
                self.inflight.append(self.actor.state.remote())
                self.pausing = True
                return
            upto = min(self.limit, self.spec.max_iterations, self.asked + self.chunk)
            if self.pause_at is not None:
                upto = min(upto, max(self.pause_at, self.asked + 1))
            if upto <= self.asked:
                return
            self.inflight.append(self.actor.collect.remote(upto, self.weights.ref(), self.weights.version))
            self.asked = upto

    def set_limit(self, iterations: int) -> None:
        self.limit = iterations
        self._pump()

    def request_pause(self, at: int = 0) -> None:
        """Report the actor's state once it has stepped ``max(at, what is already asked for)``: calls
        in flight are answered first (a collector process likewise sends what it stepped)."""
        self.pause_at, self.paused = at, False
        self._pump()

    def resume(self) -> None:
        self.pause_at, self.paused = None, False
        self._pump()

    @staticmethod
    def wait_any(collectors: list[Any], timeout: float) -> list[int]:
        refs = {c.inflight[0]: i for i, c in enumerate(collectors) if c.inflight}
        if not refs:
            return []
        ray = collectors[0].ray
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        return sorted(refs[r] for r in ready)

    def poll(self) -> list[tuple[Any, ...]]:
        """The answers that have come, in order: the first call's (waited for), then those behind it
        that are ready too."""
        msgs: list[tuple[Any, ...]] = []
        while self.inflight:
            if msgs and not self.ray.wait([self.inflight[0]], timeout=0)[0]:
                break
            ref = self.inflight.popleft()
            try:
                msg = self.ray.get(ref)
            except self.ray.exceptions.RayError as e:
                self.inflight.clear()
                raise CollectorError(f"collector actor failed: {e}") from None
            if msg[0] == "paused":
                self.pausing, self.paused = False, True
            msgs.append(msg)
        self._pump()
        return msgs

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.ray.kill(self.actor, no_restart=True)
        except Exception:
            pass


__all__ = ["CollectorActor", "RayCollector", "RayWeights", "import_ray", "start_ray"]
