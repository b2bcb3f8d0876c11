"""The concurrent loop (``collectors=N``, or ``concurrent=True`` for one): N
:class:`fastrl.training.collector.Collector` processes step their envs while this process inserts
their chunks, keeps the books and updates.

Streams. Collector ``i`` owns env streams ``i * E ... (i + 1) * E - 1`` of the replay buffer
(``E = collector_envs``); the buffer's vector step ``k`` is step ``k`` of every collector, side by
side, so a run with N collectors stores what N sequential env streams with the collectors' seeds
would (:func:`fastrl.training.collector.collector_seeds`). Each collector's newest step is held
back until its successor arrives (or the collector has stepped its share of the run): if the
collector dies, that step is stored with ``truncated`` set, since its episode ends there, and a
new collector with fresh envs continues the streams. So nothing is stored twice (chunks carry their
first step's index, checked on arrival) and no episode runs across a restart.

Replay ratio (``replay_ratio_mode``). ``fixed``: the sequential loop's updates per env step
(:class:`fastrl.training.collector.RateLimiter`, counted in env steps), the learner waiting for data
when it is ahead and the collectors waiting when they are ``collect_ahead`` env steps ahead of it;
``free``: the learner updates as fast as it can, the collectors at most ``collect_ahead`` env steps
ahead of what is inserted; the ratio reached is logged as ``perf/replay_ratio``.

An evaluation at step N first does the updates due at N, so it rates the policy the sequential loop
would have at N. Checkpoints pause every collector at the same step (they flush and report their
envs' states, exploration and generators), insert all they sent, do the updates due so far, save,
and let them go on: a checkpoint at step N holds what a sequential run's would (buffer, envs,
counters, the updates due at N), so a resume continues from a consistent state. Runs are not
bit-reproducible: which weights act at a step depends on timing.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.multiprocessing as tmp

from fastrl.training.collector import (
    Collector,
    CollectorError,
    CollectorSpec,
    RateLimiter,
    SharedWeights,
    _state_tensors,
    collector_seeds,
    policy_modules,
)
from fastrl.training.ray_collector import RayCollector, RayWeights, start_ray

if TYPE_CHECKING:
    from fastrl.training.trainer import Trainer, TrainResult


def train_concurrent(trainer: Trainer) -> TrainResult:
    """``trainer.train()`` with collector processes; ``trainer.concurrent_stats`` then holds the
    updates done, the seconds the learner waited for data (before the first chunk, and after) and the
    collectors' restarts."""
    return ConcurrentLearner(trainer).run()


_MAX_CHUNK = 64
"""The most vector steps a collector process sends at once."""
_MAX_CHUNK_RAY = 256
"""The most a Ray actor sends at once: each call costs the learner's process a fixed amount (Ray's
driver threads submit it and take its answer), so with 8 actors 64-step calls slowed the learner's
updates ~10%, 256-step ones did not (bench_actors, free ratio)."""


class ConcurrentLearner:
    """The learner's side of a run with collectors, built on the trainer's parts (run state, sampler,
    learn step, log / evaluate / checkpoint)."""

    def __init__(self, trainer: Trainer) -> None:
        t = self.t = trainer
        cfg = t.cfg
        self.n = cfg.n_collectors
        self.envs_each = cfg.collector_envs or cfg.num_envs
        self.streams = cfg.streams
        self.free = cfg.replay_ratio_mode == "free"
        self.limiter = RateLimiter.from_config(cfg)
        if t.learning_from > cfg.learning_starts:  # resumed without its buffer: refill, then learn
            start = t.state.env_steps // cfg.num_envs
            self.limiter = self.limiter.restart(start, t.learning_from - start * cfg.num_envs)
        self.ahead_iters = max(3, self.limiter.ahead * cfg.num_envs // self.streams)
        max_chunk = _MAX_CHUNK_RAY if cfg.collector_backend == "ray" else _MAX_CHUNK
        if self.free:  # no schedule to keep: room for full chunks (few calls per step with Ray)
            self.ahead_iters = max(self.ahead_iters, 4 * max_chunk)
        self.max_iterations = -(-cfg.total_steps // self.streams)
        self.updates = 0 if self.free else self.limiter.updates_due_at(t.state.env_steps)
        self.updates_at_start = self.updates
        self.checkpoint_due = False
        self.stats = trainer.concurrent_stats = {
            "startup_seconds": 0.0,
            "wait_seconds": 0.0,
            "updates": 0,
            "restarts": 0,
        }
        self.modules = policy_modules(t.agent)
        self._sources = _state_tensors(self.modules)
        self.restarts = [0] * self.n
        self.pending: list[deque[dict[str, np.ndarray]]] = [deque() for _ in range(self.n)]
        self.received = [t.state.iterations] * self.n
        self.origin: list[dict[str, Any]] = self._start_states()
        self.paused: list[dict[str, Any] | None] = [None] * self.n
        self.pause_target: int | None = None
        self.chunk = max(1, min(max_chunk, self.ahead_iters // 4))
        # between updates the learner looks for new chunks without waiting: a pipe poll is cheap, a
        # ray.wait over every actor's call is not, so with Ray it looks at most every 20 ms (it still
        # waits for data whenever it cannot update). Each actor has a second call queued behind the
        # one it runs (ray_collector.DEPTH), so it does not idle while its answer waits to be taken.
        self.poll_every = 0.02 if cfg.collector_backend == "ray" else 0.0
        self._polled = 0.0

    # ------------------------------------------------------------------ collectors
    def _start_states(self) -> list[dict[str, Any]]:
        """Each collector's start: a fresh one's iteration count, or a resumed run's saved envs,
        exploration and generator state."""
        t, it, e = self.t, self.t.state.iterations, self.envs_each
        states = [{"iterations": it, "exploration": t.agent.exploration.state_dict()} for _ in range(self.n)]
        if t.saved_env_states is None:
            return states
        saved = t.saved_collectors
        agent_state = t.agent.state_dict()
        for i, s in enumerate(states):
            s["env_states"] = t.saved_env_states[i * e : (i + 1) * e]
            if saved is not None and len(saved) == self.n:
                s.update(rng=saved[i]["rng"], exploration=saved[i]["exploration"])
            elif i == 0:  # a sequential run's checkpoint: its exploration generator goes on in collector 0
                s["rng"] = agent_state["rng"]
        return states

    def _spec(self, i: int, start: dict[str, Any]) -> CollectorSpec:
        cfg = self.t.cfg
        env_seed, agent_seed, torch_seed = collector_seeds(
            self.t.seeds, cfg.seed, i, self.envs_each, restart=self.restarts[i]
        )
        return CollectorSpec(
            index=i,
            count=self.n,
            num_envs=self.envs_each,
            env_seed=None if start.get("env_states") is not None else env_seed,
            agent_seed=agent_seed,
            torch_seed=torch_seed,
            learning_starts=-(-cfg.learning_starts // self.n),
            max_iterations=self.max_iterations,
            apex=cfg.apex_epsilon,
        )

    def _start(self, i: int, start: dict[str, Any]) -> Any:
        handle = RayCollector if self.t.cfg.collector_backend == "ray" else Collector
        # a collector restarted during a pause is told its target as it starts, so it stops there
        spec, at = self._spec(i, start), self.pause_target
        return handle(self.t.cfg, self.t.algo, spec, start, self.weights, self.chunk, self._limit(), at)

    def restart(self, i: int, error: CollectorError) -> None:
        """Replace dead collector ``i``: end its held step's episodes (truncated) and start fresh envs
        after it, or, if everything it sent is stored, continue from its last reported state."""
        self.restarts[i] += 1
        self.stats["restarts"] += 1
        if self.restarts[i] > self.t.cfg.collector_restarts:
            raise CollectorError(f"collector {i} failed {self.restarts[i]} times (collector_restarts): {error}")
        warnings.warn(f"collector {i} died, restarting it ({self.restarts[i]}): {error}", stacklevel=2)
        self.collectors[i].close(timeout=1.0)
        if self.pending[i]:  # its newest step is held back: its episodes end there
            held = self.pending[i][-1]
            for name in ("truncated", "game_over"):  # in the logs too: the game ends there
                held[name] = held[name].copy()  # (Ray hands out read-only arrays)
                held[name][-1] = True
            start: dict[str, Any] = {
                "iterations": self.received[i],
                "exploration": self.t.agent.exploration.state_dict(),
            }
        else:  # all it sent is stored: go on from where it last stood
            start = self.origin[i]
            assert start["iterations"] == self.received[i]
        self.paused[i] = None
        self.collectors[i] = self._start(i, start)

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        t, cfg, state = self.t, self.t.cfg, self.t.state
        first_step = state.env_steps
        ray_started = False
        if cfg.collector_backend == "ray":
            _, ray_started = start_ray(cfg.ray_address, num_cpus=max(2, self.n))
            self.weights: Any = RayWeights(self.modules)
        else:
            self.weights = SharedWeights(tmp.get_context("spawn"), self.modules)
        self.collectors: list[Any] = []
        t.start()
        try:
            for i in range(self.n):
                self.collectors.append(self._start(i, self.origin[i]))
            while True:
                if time.perf_counter() - self._polled >= self.poll_every:
                    self.receive(0)
                if self.checkpoint_due:
                    self.checkpoint_due = False
                    states = self.pause_all()
                    with state.untimed():
                        t.save_checkpoint(periodic=True, states=states[0], collectors=states[1])
                    t.saved_env_states = None
                    self.resume_all()
                    continue
                if state.solved:
                    break
                if self.free and min(self.received) >= self.max_iterations:  # free: no updates are due
                    break
                if self.can_update():
                    self.learn()
                    continue
                if min(self.received) >= self.max_iterations:  # each has stepped its share
                    break
                w0 = time.perf_counter()
                self.receive(1.0)
                waited = time.perf_counter() - w0
                if state.env_steps == first_step:  # the children's imports and env setup: like the sequential
                    self.stats["startup_seconds"] += waited  # envs' (made in __init__), not training time
                    state.exclude(waited)
                else:
                    self.stats["wait_seconds"] += waited
            env_states, collectors = self.pause_all()
            if t.metrics or state.solved or "log" in t.triggers.fired(t._last_log[1], state.env_steps):
                self.log()
            state.stop_clock()
            solved_by_eval = state.solved and cfg.solve_on == "eval"  # that evaluation rated the final policy
            if not solved_by_eval and (not state.evals or state.evals[-1]["step"] != state.env_steps):
                t.evaluate()
            # a checkpoint due at the last step (met while storing the held steps) is this one
            t.save_checkpoint(periodic=self.checkpoint_due, states=env_states, collectors=collectors)
        finally:
            t.end()
            for c in self.collectors:
                c.close()
            if ray_started:
                import ray

                ray.shutdown()
        return t.finish()

    # ------------------------------------------------------------------ learning
    def can_update(self) -> bool:
        state = self.t.state
        if self.free:
            return state.env_steps >= self.t.learning_from and len(self.t.buffer) >= self.t.cfg.batch_size
        return self.updates < self.limiter.updates_due_at(state.env_steps)

    def _limit(self) -> int:
        """The most iterations a collector may have stepped now."""
        if self.free:
            return self.t.state.iterations + self.ahead_iters
        return self.limiter.vector_limit(self.updates, self.streams)

    def _publish_limit(self) -> None:
        limit = self._limit()
        for c in self.collectors:
            c.set_limit(limit)

    def learn(self) -> None:
        self.t.learn()
        self.updates += 1
        self.stats["updates"] = self.updates
        if self.updates % self.t.cfg.sync_every == 0:
            self.weights.publish(self._sources)
        if not self.free:
            self._publish_limit()

    def log(self) -> None:
        state = self.t.state
        extra = {
            "perf/replay_ratio": (self.updates - self.updates_at_start) / max(state.env_steps, 1),
            "perf/collector_restarts": float(self.stats["restarts"]),
        }
        if not self.free:
            extra["perf/update_lag"] = float(self.limiter.updates_due_at(state.env_steps) - self.updates)
        self.t.log(**extra)

    # ------------------------------------------------------------------ data
    def receive(self, timeout: float) -> None:
        """Take every message that has come (waiting up to ``timeout`` seconds for the first), restart
        collectors that died, and store what all collectors have sent."""
        self._polled = time.perf_counter()
        for i in type(self.collectors[0]).wait_any(self.collectors, timeout):
            try:
                for msg in self.collectors[i].poll():
                    if msg[0] == "data":
                        self._take(i, msg[1], msg[2])
                    elif msg[0] == "paused":
                        self.paused[i] = msg[1]
            except CollectorError as e:
                self.restart(i, e)
        self.insert()

    def _take(self, i: int, first: int, arrays: dict[str, np.ndarray]) -> None:
        if first != self.received[i]:
            raise RuntimeError(f"collector {i} sent step {first}, expected {self.received[i]}")
        self.pending[i].append(arrays)
        self.received[i] += len(arrays["rewards"])

    def insert(self, everything: bool = False) -> None:
        """Store the vector steps every collector has sent, each collector's newest held back unless
        ``everything`` (all paused)."""
        k = min(self.received) - (0 if everything else 1) - self.t.state.iterations
        if k <= 0:
            return
        parts = [self._pop(i, k) for i in range(self.n)]
        self.consume({name: np.concatenate([p[name] for p in parts], axis=1) for name in parts[0]})
        self._publish_limit()

    def _pop(self, i: int, k: int) -> dict[str, np.ndarray]:
        """The oldest ``k`` held vector steps of collector ``i``."""
        out: list[dict[str, np.ndarray]] = []
        q, need = self.pending[i], k
        while need:
            head = q[0]
            m = len(head["rewards"])
            if m <= need:
                out.append(q.popleft())
                need -= m
            else:
                out.append({name: v[:need] for name, v in head.items()})
                q[0] = {name: v[need:] for name, v in head.items()}
                need = 0
        if len(out) == 1:
            return out[0]
        return {name: np.concatenate([o[name] for o in out]) for name in out[0]}

    def consume(self, d: dict[str, np.ndarray]) -> None:
        """Insert ``[T, streams, ...]`` arrays and keep the books of each of their steps."""
        t, state, n = self.t, self.t.state, self.streams
        T = len(d["rewards"])
        flat = {k: v.reshape(T * n, *v.shape[2:]) for k, v in d.items()}
        t.sampler.before_write()
        first = t.buffer.total_added
        t.buffer.extend(
            flat["observations"],
            flat["actions"],
            flat["rewards"],
            flat["next_observations"],
            flat["terminated"],
            flat["truncated"],
        )
        if "priorities" in flat:  # collector_priorities: the collectors' |TD errors| (Ape-X)
            t.buffer.update_priorities(np.arange(first, first + T * n), flat["priorities"])
        for i in range(T):
            prev = state.env_steps
            t.agent.after_env_step(d["game_over"][i])  # the learner's schedule follows the collectors'
            t.record_step(d["scores"][i], d["game_over"][i])
            for event in t.triggers.fired(prev, state.env_steps):
                if event == "log":
                    self.log()
                elif event == "evaluate" and not state.solved:
                    # evaluate what the sequential loop would: the policy after the updates due here
                    while not self.free and self.can_update():
                        self.learn()
                    t.evaluate()
                elif event == "checkpoint":
                    self.checkpoint_due = True
        t.bar.update(T * n)

    # ------------------------------------------------------------------ pausing
    def pause_all(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Stop every collector at the same step, store all they sent and do the updates due (none
        once solved: the sequential loop stops there; steps collected past it are kept, not learned
        from). Returns the envs' states (all streams) and each collector's generator and exploration."""
        state = self.t.state
        for c in self.collectors:
            c.request_pause(0)
        self.pause_target = 0
        self._wait_paused()
        target = max(p["iterations"] for p in self.paused if p is not None)
        if any(p is None or p["iterations"] < target for p in self.paused):
            self.pause_target = target
            for i, c in enumerate(self.collectors):
                p = self.paused[i]
                if p is not None and p["iterations"] < target:
                    self.paused[i] = None
                    c.request_pause(target)
            self._wait_paused()
        self.pause_target = None
        self.insert(everything=True)
        if state.iterations != target or self.received != [target] * self.n:
            raise RuntimeError(f"collectors paused at {self.received}, learner at {state.iterations}")
        while not state.solved and not self.free and self.can_update():
            self.learn()
        paused = [p for p in self.paused if p is not None]
        self.origin = [{k: p[k] for k in ("iterations", "env_states", "rng", "exploration")} for p in paused]
        self.t.obs = np.concatenate([p["obs"] for p in paused])
        env_states = [s for p in paused for s in p["env_states"]]
        return env_states, [{"rng": p["rng"], "exploration": p["exploration"]} for p in paused]

    def _wait_paused(self) -> None:
        while any(p is None for p in self.paused):
            self.receive(1.0)

    def resume_all(self) -> None:
        self.paused = [None] * self.n
        for c in self.collectors:
            c.resume()


__all__ = ["ConcurrentLearner", "train_concurrent"]
