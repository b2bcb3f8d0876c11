"""Concurrent experience collection: collector processes step envs while the learner updates.

:class:`Collector` starts one process (``multiprocessing`` spawn context) whose :class:`Stepper`
builds the vector env and an agent of the same algorithm and config as the learner's (CPU, one
torch thread; seeds from :func:`collector_seeds`, one collector of :class:`CollectorSpec` ``count``),
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

import dataclasses
import math
import multiprocessing.connection
import os
import pickle
import selectors
import signal
import time
import traceback
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as tmp

from fastrl.agents.registry import get_algo
from fastrl.schedules import Schedule
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

    A schedule can restart (:meth:`restart`): from iteration ``start``, with ``done`` updates counted
    as done there, it is the schedule of a fresh run with its own ``learning_starts``. A run resumed
    without its replay buffer restarts it, so updates wait until the buffer has refilled.
    """

    num_envs: int
    train_freq: int
    gradient_steps: int
    learning_starts: int
    ahead: int
    """Iterations the collector may run ahead (>= 1)."""
    start: int = 0
    """The iteration the schedule (re)starts at."""
    done: int = 0
    """Updates counted as done at ``start``."""

    def __post_init__(self) -> None:
        for name in ("num_envs", "train_freq", "gradient_steps", "ahead"):
            if getattr(self, name) < 1:
                raise ValueError(f"RateLimiter: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_starts", "start", "done"):
            if getattr(self, name) < 0:
                raise ValueError(f"RateLimiter: {name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, cfg: Any) -> RateLimiter:
        n = cfg.num_envs
        ahead_steps = cfg.collect_ahead or max(2 * cfg.train_freq * n, 64)
        # at least three vector steps of all the collectors' streams: the learner holds each
        # collector's newest step back (see ConcurrentLearner), and every collector must be able to step
        ahead = max(1, math.ceil(ahead_steps / n), math.ceil(3 * cfg.streams / n))
        return cls(n, cfg.train_freq, cfg.gradient_steps, cfg.learning_starts, ahead)

    def restart(self, iterations: int, learning_starts: int) -> RateLimiter:
        """This schedule up to ``iterations``, then a fresh run's that waits for ``learning_starts``
        more env steps (a resume without the replay buffer: it must refill before learning)."""
        return dataclasses.replace(
            self, start=iterations, done=self.updates_due(iterations), learning_starts=learning_starts
        )

    @property
    def first_phase(self) -> int:
        """The first iteration after which the sequential loop trains."""
        j = self.start + max(1, -(-self.learning_starts // self.num_envs))
        return -(-j // self.train_freq) * self.train_freq

    def updates_due(self, iterations: int) -> int:
        """Updates the sequential loop has done after ``iterations`` iterations."""
        j0 = self.first_phase
        if iterations < j0:
            return self.done
        return self.done + ((iterations - j0) // self.train_freq + 1) * self.gradient_steps

    def iterations_covered(self, updates: int) -> int:
        """The most iterations whose due updates are <= ``updates`` (all done with ``updates``)."""
        return self.first_phase + ((updates - self.done) // self.gradient_steps) * self.train_freq - 1

    def can_update(self, iterations: int, updates: int) -> bool:
        """May the learner do one more update, with ``iterations`` iterations in the buffer?"""
        return updates < self.updates_due(iterations)

    def collect_limit(self, updates: int) -> int:
        """The most iterations the collector may have stepped while the learner has done ``updates``."""
        return self.iterations_covered(updates) + self.ahead

    def can_collect(self, iterations: int, updates: int) -> bool:
        """May the collector step once more, having stepped ``iterations`` iterations?"""
        return iterations + 1 <= self.collect_limit(updates)

    # With N collectors of E envs each, the learner's vector step is one step of every collector
    # (``streams = N * E`` env steps), which need not be a whole number of the sequential loop's
    # iterations: the schedule is then counted in env steps.
    def updates_due_at(self, env_steps: int) -> int:
        """Updates the sequential loop has done after ``env_steps`` env steps."""
        return self.updates_due(env_steps // self.num_envs)

    def vector_limit(self, updates: int, streams: int) -> int:
        """The most vector steps of ``streams`` env steps each the collectors may have stepped while
        the learner has done ``updates`` (``ahead`` must be >= 3 * streams / num_envs: see from_config)."""
        return self.collect_limit(updates) * self.num_envs // streams


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


# ---------------------------------------------------------------------------- who a collector is
@dataclass(frozen=True)
class CollectorSpec:
    """One collector of ``count``: its envs, seeds, share of the run and exploration.

    Collector ``i`` steps ``num_envs`` envs, streams ``i * num_envs ...`` of the learner's buffer.
    ``env_seed``: the envs are reset with it (env ``j`` gets ``env_seed + j``); None when the start
    state restores saved env states. Its burn-in and step budget are its share of the run's, in its
    own env steps and vector steps.
    """

    index: int
    count: int
    num_envs: int
    env_seed: int | None
    agent_seed: int
    torch_seed: int
    learning_starts: int
    max_iterations: int
    apex: bool = False


def collector_seeds(
    seeds: list[int], cfg_seed: int, index: int, num_envs: int, restart: int = 0
) -> tuple[int, int, int]:
    """``(env_seed, agent_seed, torch_seed)`` of collector ``index`` after ``restart`` restarts.

    The first start of collector ``i`` resets its envs with ``seed + i * num_envs``, so the
    collectors' envs together are seeded as one sequential vector env of all the streams; collector 0
    acts with the learner's own exploration and torch seeds (``seeds[2]``, ``seeds[0]``), so one
    collector repeats the sequential loop's random draws; the others and every restart draw
    theirs from ``SeedSequence([seed, i, restart])``."""
    if index == 0 and restart == 0:
        return cfg_seed, seeds[2], seeds[0]
    a, t, e = (
        int(x) for x in np.random.SeedSequence([cfg_seed, index, restart, 17]).generate_state(3, dtype=np.uint64)
    )
    env_seed = cfg_seed + index * num_envs if restart == 0 else int(e % 2**31)
    return env_seed, a, t


def apex_schedule(cfg: Any, index: int, count: int) -> Schedule:
    """Ape-X's fixed exploration of collector ``index`` of ``count``: epsilon ``0.4 ** (1 + 7 i / (N - 1))``
    for DQN-family agents, the noise scale ``noise_sigma * 0.4 ** (7 i / (N - 1))`` for DDPG / TD3."""
    frac = index / (count - 1) if count > 1 else 0.0
    value = cfg.noise_sigma * 0.4 ** (7 * frac) if hasattr(cfg, "noise_sigma") else 0.4 ** (1 + 7 * frac)
    return Schedule(kind="constant", start=value, end=value)


# ---------------------------------------------------------------------------- initial priorities
def chunk_priorities(agent: Any, chunk: dict[str, np.ndarray]) -> np.ndarray:
    """Ape-X's initial priorities of a chunk of ``[T, E]`` steps: ``float32[T, E]`` |n-step TD
    error| from the collector's copy of the online network (:meth:`DQN.fresh_priorities`).

    Step ``t`` of stream ``e`` sums up to ``n_step`` discounted rewards of its own stream, as the
    buffer's n-step sampling does: stopping after a terminated or truncated step (a truncated one
    bootstraps from its true final observation), and at the chunk's end, which bootstraps from the
    last step's next observation with ``gamma ** k`` (k < n_step there: the later rewards are not
    collected yet)."""
    cfg = agent.config
    rewards, ends = chunk["rewards"], chunk["terminated"] | chunk["truncated"]
    T, E = rewards.shape
    returns, discounts = np.zeros((T, E)), np.ones((T, E))
    last = np.broadcast_to(np.arange(T)[:, None], (T, E)).copy()  # the last step summed
    alive = np.ones((T, E), bool)
    for k in range(cfg.n_step):
        at = np.minimum(np.arange(T) + k, T - 1)
        on = alive & (np.arange(T) + k < T)[:, None]
        returns += np.where(on, discounts * rewards[at], 0.0)
        discounts = np.where(on, discounts * cfg.gamma, discounts)
        last = np.where(on, at[:, None], last)
        alive = on & ~ends[at]
    cols = np.broadcast_to(np.arange(E), (T, E))
    flat = (T * E, *chunk["observations"].shape[2:])
    td = agent.fresh_priorities(
        chunk["observations"].reshape(flat),
        chunk["actions"].reshape(T * E, *chunk["actions"].shape[2:]),
        returns.reshape(-1),
        discounts.reshape(-1),
        chunk["next_observations"][last, cols].reshape(flat),
        chunk["terminated"][last, cols].reshape(-1),
    )
    return td.reshape(T, E)


# ---------------------------------------------------------------------------- the child
_NAP_MIN, _NAP_MAX = 1e-4, 2e-3
"""A blocked collector sleeps 0.1 ms, then twice as long each time up to 2 ms: waking thousands of
times a second would take CPU from the learner on a machine with two cores."""


@dataclass
class _Shared:
    limit: Any  # RawValue q: iterations the collector may have stepped (written by the learner only)
    stop: Any  # RawValue b: the learner wants the collector to exit
    pause: Any  # RawValue q: pause requests so far (flush, report the state, wait until resumed)
    pause_at: Any  # RawValue q: pause once at least this many iterations are stepped
    resumed: Any  # RawValue q: the last pause request the learner has ended
    weights: SharedWeights


class Stepper:
    """A collector's envs and acting agent (CPU, one torch thread): what a collector process and a
    Ray collector actor both run. :meth:`step` takes one vector step into a chunk of ``chunk``
    steps; :meth:`take` returns the chunk so far as ``(first_iteration, arrays)``."""

    def __init__(self, cfg: Any, algo: str, spec: CollectorSpec, start: dict[str, Any], chunk: int) -> None:
        torch.set_num_threads(1)
        torch.manual_seed(spec.torch_seed & (2**63 - 1))
        self.spec, n = spec, spec.num_envs
        self.envs = make_vec_env(
            cfg.env_id, n, cfg.vector_mode, cfg.max_episode_steps, cfg.frame_stack, **cfg.env_options()
        )
        try:
            agent = self.agent = get_algo(
                algo
            ).agent.from_spaces(  # on the CPU: no CUDA graph even if the learner has one
                self.envs.single_observation_space,
                self.envs.single_action_space,
                config_for_device(cfg, "cpu"),
                "cpu",
                seed=spec.agent_seed,
            )
            if spec.apex:
                agent.exploration = apex_schedule(cfg, spec.index, spec.count)
            elif start.get("exploration") is not None:  # the run's schedule where the learner has it
                agent.exploration.load_state_dict(start["exploration"])
            agent.exploration.scale = spec.count  # one step here stands for one of each collector's
            if start.get("rng") is not None:  # resumed: exploration draws where the checkpoint left them
                agent.rng.bit_generator.state = start["rng"]
            self.targets = _state_tensors(policy_modules(agent))  # views of the parameters, updated in place
            if start.get("env_states") is not None:
                self.obs = restore_env_states(self.envs, start["env_states"])
            else:
                self.obs, _ = self.envs.reset(seed=spec.env_seed)
        except BaseException:
            self.envs.close()
            raise
        self.iterations = int(start["iterations"])
        o = np.asarray(self.obs)
        rng_state = agent.rng.bit_generator.state
        a0 = np.asarray(agent.random_actions(n))  # the actions' shape and dtype; the draw is undone
        agent.rng.bit_generator.state = rng_state
        self.bufs = {
            "observations": np.empty((chunk, *o.shape), o.dtype),
            "actions": np.empty((chunk, *a0.shape), a0.dtype),
            "rewards": np.empty((chunk, n), np.float64),
            "next_observations": np.empty((chunk, *o.shape), o.dtype),
            "terminated": np.empty((chunk, n), bool),
            "truncated": np.empty((chunk, n), bool),
            "scores": np.empty((chunk, n), np.float64),  # the books (see rollout.Books)
            "game_over": np.empty((chunk, n), bool),
        }
        self.t = 0

    @property
    def full(self) -> bool:
        return self.t == len(self.bufs["rewards"])

    def step(self) -> None:
        n = self.spec.num_envs
        transition, self.obs, books = env_step(
            self.agent, self.envs, self.obs, self.iterations * n, self.spec.learning_starts
        )
        t, bufs = self.t, self.bufs
        for name, value in zip(Transition._fields, transition):
            bufs[name][t] = value
        bufs["scores"][t], bufs["game_over"][t] = books
        self.t += 1
        self.iterations += 1

    def take(self, copy: bool = False) -> tuple[int, dict[str, np.ndarray]] | None:
        """The chunk so far, ``(first iteration, [T, num_envs, ...] arrays)`` (views unless ``copy``), or None."""
        t, self.t = self.t, 0
        if not t:
            return None
        out = {k: (v[:t].copy() if copy else v[:t]) for k, v in self.bufs.items()}
        if getattr(self.agent.config, "collector_priorities", False):
            out["priorities"] = chunk_priorities(self.agent, out)
        return self.iterations - t, out

    def state(self) -> dict[str, Any]:
        """Where it stands: ``iterations``, ``obs``, ``env_states``, ``rng``, ``exploration``."""
        return {
            "iterations": self.iterations,
            "obs": np.asarray(self.obs).copy(),
            "env_states": env_states(self.envs),
            "rng": self.agent.rng.bit_generator.state,
            "exploration": self.agent.exploration.state_dict(),
        }

    def close(self) -> None:
        try:
            self.envs.close()
        except Exception:
            pass


def _collector_main(
    conn: Any, shared: _Shared, cfg: Any, algo: str, spec: CollectorSpec, start: dict[str, Any], chunk: int
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle: it stops us
    stepper = None
    try:
        stepper = Stepper(cfg, algo, spec, start, chunk)
        version = shared.weights.load_into(stepper.targets)
        parent = multiprocessing.parent_process()

        def flush() -> None:
            taken = stepper.take()
            if taken is not None:
                conn.send(("data", *taken))

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

        acked = 0  # requests start at 0: one made while we were starting up is still to answer
        while not shared.stop.value:
            if shared.pause.value > acked and stepper.iterations >= shared.pause_at.value:
                acked = int(shared.pause.value)
                flush()
                conn.send(("paused", stepper.state()))
                continue
            if shared.resumed.value < acked:
                idle()
                continue
            if stepper.iterations >= spec.max_iterations or stepper.iterations >= shared.limit.value:
                flush()
                idle()
                continue
            nap[0] = _NAP_MIN
            if shared.weights.version.value != version:
                version = shared.weights.load_into(stepper.targets)
            stepper.step()
            if stepper.full:
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
        if stepper is not None:
            stepper.close()
        conn.close()


# ---------------------------------------------------------------------------- the learner's handle
_POLL_SET: tuple[tuple[weakref.ref[Any], ...], selectors.BaseSelector] | None = None


def _poll_set(collectors: list[Any]) -> selectors.BaseSelector:
    """A selector over ``collectors``' pipes and process sentinels (each key's data: its index), made
    anew when the list holds other objects (a collector restarted, another run). It holds them weakly:
    a closed run's collectors and their shared weights are not kept alive by it."""
    global _POLL_SET
    if _POLL_SET is not None:
        held, sel = _POLL_SET
        if len(held) == len(collectors) and all(h() is c for h, c in zip(held, collectors)):
            return sel
        sel.close()
    sel = selectors.DefaultSelector()
    for i, c in enumerate(collectors):
        for w in c.waitables:
            sel.register(w, selectors.EVENT_READ, i)
    _POLL_SET = (tuple(weakref.ref(c) for c in collectors), sel)
    return sel


class Collector:
    """The learner's end of one collector process.

    ``Collector(cfg, algo, spec, start, weights, chunk)`` starts the child (``start``:
    ``iterations`` and, to continue a saved state, ``env_states``, ``exploration``, ``rng``;
    ``pause_at``: started during a pause, it steps to there, as after :meth:`request_pause`);
    :meth:`get` returns its next message: ``("data", first_iteration, arrays)`` with
    ``[T, num_envs, ...]`` arrays of T consecutive vector steps, or ``("paused", state)`` after
    :meth:`request_pause`. A failure in the child raises :class:`CollectorError` here. It steps while
    its iterations are below :meth:`set_limit`'s limit. :meth:`close` stops it (always call it).
    """

    def __init__(
        self,
        cfg: Any,
        algo: str,
        spec: CollectorSpec,
        start: dict[str, Any],
        weights: SharedWeights,
        chunk: int,
        limit: int = 0,
        pause_at: int | None = None,
    ) -> None:
        ctx = tmp.get_context("spawn")
        self.spec = spec
        self.shared = _Shared(
            ctx.RawValue("q", limit),
            ctx.RawValue("b", 0),
            ctx.RawValue("q", 0),
            ctx.RawValue("q", 0),
            ctx.RawValue("q", 0),
            weights,
        )
        if pause_at is not None:  # started during a pause: the child reads it before its first step
            self.request_pause(pause_at)
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=_collector_main,
            args=(child_conn, self.shared, cfg, algo, spec, start, chunk),
            name=f"fastrl-collector-{spec.index}",
            # a daemon may not start processes: async vector envs need a non-daemon child (close()
            # always stops it; it also exits by itself when the learner's process is gone)
            daemon=cfg.vector_mode != "async",
        )
        self.process.start()
        child_conn.close()
        self._closed = False

    @property
    def waitables(self) -> list[Any]:
        """What :func:`multiprocessing.connection.wait` watches: the pipe and the process sentinel."""
        return [self._conn, self.process.sentinel]

    # ------------------------------------------------------------------ learner -> collector
    def set_limit(self, iterations: int) -> None:
        self.shared.limit.value = iterations

    def request_pause(self, at: int = 0) -> None:
        """Ask the child to step on until it has ``at`` iterations, then flush its chunk, send
        ``("paused", state)`` and wait for :meth:`resume`; ``state``: ``iterations``, ``obs``,
        ``env_states``, ``rng`` and ``exploration`` after its last step. A paused child may be asked
        again (with a larger ``at``): it steps on to it and pauses again."""
        prev = int(self.shared.pause.value)
        self.shared.pause_at.value = at
        self.shared.pause.value = prev + 1
        if self.shared.resumed.value < prev:  # paused: let it go on to ``at``
            self.shared.resumed.value = prev

    def resume(self) -> None:
        self.shared.resumed.value = self.shared.pause.value

    # ------------------------------------------------------------------ collector -> learner
    @staticmethod
    def wait_any(collectors: list[Any], timeout: float) -> list[int]:
        """The indices of ``collectors`` with messages to read or that ended, waiting up to ``timeout`` s.
        The learner asks after every update, so the poll set is kept while the collectors stay the
        same (``multiprocessing.connection.wait`` builds one a call: ~28 us for 8 collectors, ~1 us so)."""
        ready = {key.data for key, _ in _poll_set(collectors).select(timeout)}
        return sorted(ready)

    def poll(self) -> list[tuple[Any, ...]]:
        """Every message that has come; CollectorError if the child failed or ended (after reading
        all it sent)."""
        out = []
        while (msg := self.get(0)) is not None:
            out.append(msg)
        if not self.process.is_alive():
            self.process.join(1.0)
            raise CollectorError(f"collector process exited unexpectedly (exit code {self.process.exitcode})")
        return out

    def get(self, timeout: float | None = None) -> tuple[Any, ...] | None:
        """The next message, waiting up to ``timeout`` seconds (None: until one comes); None if none came."""
        if not self._conn.poll(0):
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    return None
                ready = multiprocessing.connection.wait(self.waitables, left)
                if self._conn in ready or (ready and self._conn.poll(0)):
                    break
                if ready:  # the child ended without a message
                    self.process.join(1.0)
                    raise CollectorError(f"collector process exited unexpectedly (exit code {self.process.exitcode})")
        try:
            msg = self._conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):  # died mid-message: nothing of it is used
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
                except (EOFError, OSError, pickle.UnpicklingError):
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


__all__ = [
    "Collector",
    "CollectorError",
    "CollectorSpec",
    "RateLimiter",
    "SharedWeights",
    "apex_schedule",
    "chunk_priorities",
    "collector_seeds",
    "policy_modules",
]
