"""The concurrent loop (``concurrent=True``): a :class:`fastrl.training.collector.Collector` process
steps the envs while this process inserts its chunks, keeps the books and updates, as often per
env step as the sequential loop (:class:`fastrl.training.collector.RateLimiter`).

An evaluation at step N first does the updates due at N (the learner may lag behind the
collector), so it rates the policy the sequential loop would have at N. Checkpoints pause the
collector (it flushes and reports its envs' states), insert what it sent, do the updates due so
far, save, and let it go on: a checkpoint at step N holds what a sequential run's would (buffer,
envs, counters, the updates due at N), so a resume, with or without ``concurrent``, continues from
a consistent state. Runs are not bit-reproducible: which weights act at a step depends on timing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from fastrl.training.collector import Collector, RateLimiter

if TYPE_CHECKING:
    from fastrl.training.trainer import Trainer, TrainResult


def train_concurrent(trainer: Trainer) -> TrainResult:
    """``trainer.train()`` with a collector process; ``trainer.concurrent_stats`` then holds the
    updates done and the seconds the learner waited for data (before the first chunk, and after)."""
    return ConcurrentLearner(trainer).run()


class ConcurrentLearner:
    """The learner's side of a concurrent run, built on the trainer's parts (run state, sampler,
    learn step, log / evaluate / checkpoint)."""

    def __init__(self, trainer: Trainer) -> None:
        self.t = trainer
        self.limiter = RateLimiter.from_config(trainer.cfg)
        self.updates = self.limiter.updates_due(trainer.state.iterations)
        self.checkpoint_due = False
        self.stats = trainer.concurrent_stats = {"startup_seconds": 0.0, "wait_seconds": 0.0, "updates": 0}

    def run(self) -> TrainResult:
        t, cfg, state = self.t, self.t.cfg, self.t.state
        start: dict[str, Any] = {"env_steps": state.env_steps, "iterations": state.iterations}
        if t.saved_env_states is not None:  # resumed: the collector continues the saved envs and exploration
            agent_state = t.agent.state_dict()
            start.update(env_states=t.saved_env_states, exploration=agent_state["exploration"], rng=agent_state["rng"])
        first_step = state.env_steps
        self.collector = Collector(cfg, t.algo, t.agent, t.seeds, start, self.limiter, updates=self.updates)
        t.start()
        try:
            while True:
                while (msg := self.collector.get(0)) is not None:
                    self.consume(msg[1])
                if self.checkpoint_due:
                    self.checkpoint_due = False
                    env_states = self.pause_and_catch_up()
                    with state.untimed():
                        t.save_checkpoint(periodic=True, states=env_states)
                    t.saved_env_states = None
                    self.collector.resume()
                    continue
                if state.solved:
                    break
                if self.limiter.can_update(state.iterations, self.updates):
                    self.learn()
                    continue
                if state.env_steps >= cfg.total_steps:
                    break
                w0 = time.perf_counter()
                msg = self.collector.get()
                waited = time.perf_counter() - w0
                if state.env_steps == first_step:  # the child's imports and env setup: like the sequential
                    self.stats["startup_seconds"] += waited  # envs' (made in __init__), not training time
                    state.exclude(waited)
                else:
                    self.stats["wait_seconds"] += waited
                if msg is not None:
                    self.consume(msg[1])
            env_states = self.pause_and_catch_up()
            if t.metrics or state.solved or "log" in t.triggers.fired(t._last_log[1], state.env_steps):
                self.log()
            state.stop_clock()
            solved_by_eval = state.solved and cfg.solve_on == "eval"  # that evaluation rated the final policy
            if not solved_by_eval and (not state.evals or state.evals[-1]["step"] != state.env_steps):
                t.evaluate()
            t.save_checkpoint(periodic=False, states=env_states)
        finally:
            t.end()
            self.collector.close()
        return t.finish()

    def learn(self) -> None:
        self.t.learn()
        self.updates += 1
        self.stats["updates"] = self.updates
        self.collector.set_updates(self.updates)
        if self.updates % self.t.cfg.sync_every == 0:
            self.collector.publish()

    def log(self) -> None:
        lag = self.limiter.updates_due(self.t.state.iterations) - self.updates
        self.t.log(**{"perf/update_lag": float(lag)})

    def consume(self, d: dict[str, np.ndarray]) -> None:
        """Insert one chunk (``[T, num_envs, ...]`` arrays) and keep the books of each of its steps."""
        t, state, n = self.t, self.t.state, self.t.cfg.num_envs
        T = len(d["rewards"])
        flat = {k: v.reshape(T * n, *v.shape[2:]) for k, v in d.items()}
        t.sampler.before_write()
        t.buffer.extend(
            flat["observations"],
            flat["actions"],
            flat["rewards"],
            flat["next_observations"],
            flat["terminated"],
            flat["truncated"],
        )
        for i in range(T):
            prev = state.env_steps
            t.agent.after_env_step(d["game_over"][i])  # the learner's schedule follows the collector's
            t.record_step(d["scores"][i], d["game_over"][i])
            for event in t.triggers.fired(prev, state.env_steps):
                if event == "log":
                    self.log()
                elif event == "evaluate" and not state.solved:
                    # evaluate what the sequential loop would: the policy after the updates due here
                    while self.limiter.can_update(state.iterations, self.updates):
                        self.learn()
                    t.evaluate()
                elif event == "checkpoint":
                    self.checkpoint_due = True
        t.bar.update(T * n)

    def pause_and_catch_up(self) -> list[dict[str, Any]]:
        """Stop the collector, insert what it sent, do the updates due (none once solved: the
        sequential loop stops there; the steps the collector took past it are kept, not learned
        from). Returns the envs' states."""
        state = self.t.state
        paused = self.collector.pause(self.consume)
        if paused["env_steps"] != state.env_steps:
            raise RuntimeError(f"collector at {paused['env_steps']} env steps, learner at {state.env_steps}")
        while not state.solved and self.limiter.can_update(state.iterations, self.updates):
            self.learn()
        self.t.obs = paused["obs"]
        return paused["env_states"]  # type: ignore[no-any-return]
