"""Concurrent experience collection: a child process steps the envs while the learner updates.

:class:`Collector` starts one process (``multiprocessing`` spawn context) that builds the vector
env and an agent of the same algorithm, config and seed as the learner's (CPU, one torch thread),
and acts with that agent's own ``random_actions`` / ``act(explore=True)`` / ``after_env_step``, so
burn-in and exploration (epsilon by env steps or episodes, action noise) follow the same schedule
as in the sequential loop. It sends the transitions to the learner in chunks over a pipe (numpy
arrays, true final observations where an episode ended, terminated and truncated apart); the
learner inserts them into its replay buffer.

The learner publishes the policy network's weights (DQN's ``q``, DDPG's ``actor``) to shared-memory
tensors every ``sync_every`` updates; a lock guards the copy both ways, so the collector never
loads a half-written set, and a version counter tells it when there is a new one.

:class:`RateLimiter` keeps updates per env step at the sequential loop's ratio
(``gradient_steps`` per ``train_freq`` vector steps after ``learning_starts``), like Reverb's
SampleToInsertRatio: the learner waits for data when it is ahead, the collector waits when it is
more than ``collect_ahead`` env steps ahead of the learner.
"""

from __future__ import annotations

import math
import multiprocessing.connection
import os
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as tmp

from fastrl.agents.registry import get_algo
from fastrl.training.device import config_for_device
from fastrl.training.envs import env_states, make_vec_env, restore_env_states
from fastrl.training.rollout import Transition, env_step


class CollectorError(RuntimeError):
    """The collector process failed (its traceback is in the message) or died."""


# ---------------------------------------------------------------------------- rate limiter
@dataclass(frozen=True)
class RateLimiter:
    """The sequential loop's update schedule, as bounds for a learner and a collector that run at once.

    Counts are in vector-env steps ("iterations", ``num_envs`` env steps each). The sequential loop
    does ``gradient_steps`` updates after every iteration ``k`` with ``k % train_freq == 0`` and
    ``k * num_envs >= learning_starts``; :meth:`updates_due` is how many it has done after ``k``
    iterations. The learner may do update ``u + 1`` once the data of an iteration that makes it due
    is in the buffer (:meth:`can_update`); the collector may step once more while that keeps it at
    most ``ahead`` iterations past the last iteration whose updates are all done
    (:meth:`can_collect`). So at any time the learner's updates lie between
    ``updates_due(collected - ahead)`` and ``updates_due(collected)``.
    """

    num_envs: int
    train_freq: int
    gradient_steps: int
    learning_starts: int
    ahead: int
    """Iterations the collector may run ahead (>= 1)."""

    def __post_init__(self) -> None:
        for name in ("num_envs", "train_freq", "gradient_steps", "ahead"):
            if getattr(self, name) < 1:
                raise ValueError(f"RateLimiter: {name} must be >= 1, got {getattr(self, name)}")
        if self.learning_starts < 0:
            raise ValueError(f"RateLimiter: learning_starts must be >= 0, got {self.learning_starts}")

    @classmethod
    def from_config(cls, cfg: Any) -> RateLimiter:
        n = cfg.num_envs
        ahead_steps = cfg.collect_ahead or max(2 * cfg.train_freq * n, 64)
        return cls(n, cfg.train_freq, cfg.gradient_steps, cfg.learning_starts, max(1, math.ceil(ahead_steps / n)))

    @property
    def first_phase(self) -> int:
        """The first iteration after which the sequential loop trains."""
        j = max(1, -(-self.learning_starts // self.num_envs))
        return -(-j // self.train_freq) * self.train_freq

    def updates_due(self, iterations: int) -> int:
        """Updates the sequential loop has done after ``iterations`` iterations."""
        j0 = self.first_phase
        if iterations < j0:
            return 0
        return ((iterations - j0) // self.train_freq + 1) * self.gradient_steps

    def iterations_covered(self, updates: int) -> int:
        """The most iterations whose due updates are <= ``updates`` (all done with ``updates``)."""
        return self.first_phase + (updates // self.gradient_steps) * self.train_freq - 1

    def can_update(self, iterations: int, updates: int) -> bool:
        """May the learner do one more update, with ``iterations`` iterations in the buffer?"""
        return updates < self.updates_due(iterations)

    def collect_limit(self, updates: int) -> int:
        """The most iterations the collector may have stepped while the learner has done ``updates``."""
        return self.iterations_covered(updates) + self.ahead

    def can_collect(self, iterations: int, updates: int) -> bool:
        """May the collector step once more, having stepped ``iterations`` iterations?"""
        return iterations + 1 <= self.collect_limit(updates)


# ---------------------------------------------------------------------------- weights
def policy_modules(agent: Any) -> list[torch.nn.Module]:
    """The networks an agent acts with: DQN's ``q``, DDPG's ``actor``."""
    for name in ("actor", "q"):
        m = getattr(agent, name, None)
        if isinstance(m, torch.nn.Module):
            return [m]
    raise TypeError(f"concurrent collection: no acting network (q or actor) on {type(agent).__name__}")


def _state_tensors(modules: list[torch.nn.Module]) -> list[torch.Tensor]:
    return [t for m in modules for t in m.state_dict().values()]


class SharedWeights:
    """Policy weights in shared memory, a lock around every copy in or out, and a version counter."""

    def __init__(self, ctx: Any, modules: list[torch.nn.Module]) -> None:
        self.tensors = [t.detach().to("cpu", copy=True).share_memory_() for t in _state_tensors(modules)]
        self.lock = ctx.Lock()
        self.version = ctx.RawValue("q", 1)

    def publish(self, sources: list[torch.Tensor]) -> None:
        """Copy ``sources`` (:func:`_state_tensors` of the modules, which alias their parameters)
        in and bump the version."""
        with torch.no_grad(), self.lock:
            for dst, src in zip(self.tensors, sources):
                dst.copy_(src)
            self.version.value += 1

    def load_into(self, targets: list[torch.Tensor]) -> int:
        """Copy the published set into ``targets`` (:func:`_state_tensors` of the modules); returns its version."""
        with torch.no_grad(), self.lock:
            for dst, src in zip(targets, self.tensors):
                dst.copy_(src)
            return int(self.version.value)


# ---------------------------------------------------------------------------- the child
_NAP_MIN, _NAP_MAX = 1e-4, 2e-3
"""A blocked collector sleeps 0.1 ms, then twice as long each time up to 2 ms: waking thousands of
times a second would take CPU from the learner on a machine with two cores."""


@dataclass
class _Shared:
    updates: Any  # RawValue q: updates the learner has done (written by the learner only)
    stop: Any  # RawValue b: the learner wants the collector to exit
    pause: Any  # RawValue q: pause requests so far (flush, report the state, wait until resumed)
    resumed: Any  # RawValue q: the last pause request the learner has ended
    weights: SharedWeights


def _collector_main(
    conn: Any,
    shared: _Shared,
    cfg: Any,
    algo: str,
    seeds: list[int],
    start: dict[str, Any],
    limiter: RateLimiter,
    chunk: int,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle: it stops us
    envs = None
    try:
        torch.set_num_threads(1)
        torch.manual_seed(seeds[0] & (2**63 - 1))
        envs = make_vec_env(
            cfg.env_id, cfg.num_envs, cfg.vector_mode, cfg.max_episode_steps, cfg.frame_stack, **cfg.env_options()
        )
        agent = get_algo(algo).agent.from_spaces(  # on the CPU: no CUDA graph even if the learner has one
            envs.single_observation_space, envs.single_action_space, config_for_device(cfg, "cpu"), "cpu", seed=seeds[2]
        )
        if start.get("exploration") is not None:  # resumed: exploration where the checkpoint left it
            agent.exploration.load_state_dict(start["exploration"])
            agent.rng.bit_generator.state = start["rng"]
        targets = _state_tensors(policy_modules(agent))  # views of the parameters, updated in place
        version = shared.weights.load_into(targets)
        if start.get("env_states") is not None:
            obs = restore_env_states(envs, start["env_states"])
        else:
            obs, _ = envs.reset(seed=cfg.seed)
        steps, iters, n = int(start["env_steps"]), int(start["iterations"]), cfg.num_envs
        parent = multiprocessing.parent_process()

        o = np.asarray(obs)
        rng_state = agent.rng.bit_generator.state
        a0 = np.asarray(agent.random_actions(n))  # the actions' shape and dtype; the draw is undone
        agent.rng.bit_generator.state = rng_state
        bufs = {
            "observations": np.empty((chunk, *o.shape), o.dtype),
            "actions": np.empty((chunk, *a0.shape), a0.dtype),
            "rewards": np.empty((chunk, n), np.float64),
            "next_observations": np.empty((chunk, *o.shape), o.dtype),
            "terminated": np.empty((chunk, n), bool),
            "truncated": np.empty((chunk, n), bool),
            "scores": np.empty((chunk, n), np.float64),  # the books (see rollout.Books)
            "game_over": np.empty((chunk, n), bool),
        }
        t = 0

        def flush() -> None:
            nonlocal t
            if t:
                conn.send(("data", {k: v[:t] for k, v in bufs.items()}))
                t = 0

        last_check = time.monotonic()
        nap = [_NAP_MIN]

        def idle() -> None:  # wait a little, longer the longer we wait; exit if the learner is gone
            nonlocal last_check
            time.sleep(nap[0])
            nap[0] = min(2 * nap[0], _NAP_MAX)
            now = time.monotonic()
            if now - last_check > 1.0:
                last_check = now
                if parent is not None and not parent.is_alive():
                    raise SystemExit(0)

        acked = int(shared.pause.value)
        while not shared.stop.value:
            if shared.pause.value > acked:
                acked = int(shared.pause.value)
                flush()
                conn.send(
                    (
                        "paused",
                        {
                            "env_steps": steps,
                            "iterations": iters,
                            "obs": np.asarray(obs).copy(),
                            "env_states": env_states(envs),
                        },
                    )
                )
                continue
            if shared.resumed.value < acked:
                idle()
                continue
            if steps >= cfg.total_steps or not limiter.can_collect(iters, int(shared.updates.value)):
                flush()
                idle()
                continue
            nap[0] = _NAP_MIN
            if shared.weights.version.value != version:
                version = shared.weights.load_into(targets)
            transition, obs, books = env_step(agent, envs, obs, steps, cfg.learning_starts)
            for name, value in zip(Transition._fields, transition):
                bufs[name][t] = value
            bufs["scores"][t], bufs["game_over"][t] = books
            t += 1
            steps += n
            iters += 1
            if t == chunk:
                flush()
        flush()
    except (SystemExit, BrokenPipeError, EOFError):
        pass
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, EOFError):
            pass
    finally:
        if envs is not None:
            try:
                envs.close()
            except Exception:
                pass
        conn.close()


# ---------------------------------------------------------------------------- the learner's handle
class Collector:
    """The learner's end of a collector process.

    ``Collector(cfg, algo, agent, seeds, start)`` starts the child (``start``: ``env_steps``,
    ``iterations`` and, when resuming, ``env_states``, ``exploration``, ``rng``); :meth:`get`
    returns its next message: ``("data", arrays)`` with ``[T, num_envs, ...]`` arrays of T
    consecutive vector steps, or ``("paused", state)`` after :meth:`request_pause`. A failure in the
    child raises :class:`CollectorError` here. :meth:`close` stops it (always call it: ``with``).
    """

    def __init__(
        self,
        cfg: Any,
        algo: str,
        agent: Any,
        seeds: list[int],
        start: dict[str, Any],
        limiter: RateLimiter | None = None,
        chunk: int | None = None,
        updates: int = 0,
    ) -> None:
        ctx = tmp.get_context("spawn")
        self.limiter = limiter if limiter is not None else RateLimiter.from_config(cfg)
        if chunk is None:
            chunk = max(1, min(64, self.limiter.ahead // 4))
        self.chunk = chunk
        self.modules = policy_modules(agent)
        self._sources = _state_tensors(self.modules)  # alias the parameters (updated in place)
        self.shared = _Shared(
            ctx.RawValue("q", updates),
            ctx.RawValue("b", 0),
            ctx.RawValue("q", 0),
            ctx.RawValue("q", 0),
            SharedWeights(ctx, self.modules),
        )
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=_collector_main,
            args=(child_conn, self.shared, cfg, algo, seeds, start, self.limiter, chunk),
            name="fastrl-collector",
            # a daemon may not start processes: async vector envs need a non-daemon child (close()
            # always stops it; it also exits by itself when the learner's process is gone)
            daemon=cfg.vector_mode != "async",
        )
        self.process.start()
        child_conn.close()
        self._closed = False

    # ------------------------------------------------------------------ learner -> collector
    def set_updates(self, updates: int) -> None:
        self.shared.updates.value = updates

    def publish(self) -> None:
        self.shared.weights.publish(self._sources)

    def request_pause(self) -> None:
        """Ask the child to flush its chunk, send ``("paused", state)`` and wait for :meth:`resume`;
        ``state``: ``env_steps``, ``iterations``, ``obs`` and ``env_states`` after its last step."""
        self.shared.pause.value += 1

    def resume(self) -> None:
        self.shared.resumed.value = self.shared.pause.value

    def pause(self, on_data: Any) -> dict[str, Any]:
        """:meth:`request_pause` and wait for the state, passing the data that comes before it to
        ``on_data``."""
        self.request_pause()
        while True:
            msg = self.get()
            assert msg is not None
            if msg[0] == "paused":
                return msg[1]  # type: ignore[no-any-return]
            on_data(msg[1])

    # ------------------------------------------------------------------ collector -> learner
    def get(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """The next message, waiting up to ``timeout`` seconds (None: until one comes); None if none came."""
        if not self._conn.poll(0):
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    return None
                ready = multiprocessing.connection.wait([self._conn, self.process.sentinel], left)
                if self._conn in ready or (ready and self._conn.poll(0)):
                    break
                if ready:  # the child ended without a message
                    self.process.join(1.0)
                    raise CollectorError(f"collector process exited unexpectedly (exit code {self.process.exitcode})")
        try:
            msg = self._conn.recv()
        except EOFError:
            self.process.join(1.0)
            raise CollectorError(f"collector process exited unexpectedly (exit code {self.process.exitcode})") from None
        if msg[0] == "error":
            raise CollectorError(f"collector process failed:\n{msg[1]}")
        return msg  # type: ignore[no-any-return]

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child (ask, then terminate, then kill) and wait for it."""
        if self._closed:
            return
        self._closed = True
        self.shared.stop.value = 1
        deadline = time.monotonic() + timeout
        while self.process.is_alive() and time.monotonic() < deadline:
            while self._conn.poll(0):  # a child blocked on a full pipe needs us to read
                try:
                    self._conn.recv()
                except (EOFError, OSError):
                    break
            self.process.join(0.01)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2.0)
        if self.process.is_alive() and self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.join(2.0)
        self._conn.close()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Collector", "CollectorError", "RateLimiter", "SharedWeights", "policy_modules"]
