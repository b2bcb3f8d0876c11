"""The training loop: env -> agent.act -> buffer.extend -> buffer.sample -> agent.update -> log / checkpoint.

``train(config)`` runs one experiment in ``runs/<env>-<algo>-<time>/`` and returns a
:class:`TrainResult`; ``train(resume="runs/...")`` continues one from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from fastrl._util import write_text_atomic
from fastrl.training import checkpoint
from fastrl.replay.buffer import ReplayBuffer
from fastrl.replay.prioritized import PrioritizedReplayBuffer
from fastrl.config import ConfigError, from_dict, to_dict
from fastrl.training.envs import env_states, evaluate, make_env, make_vec_env, restore_env_states
from fastrl.training.logger import Logger
from fastrl.replay.spaces import final_observations


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; otherwise the named device (ConfigError if unusable)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for but torch sees no CUDA GPU; use --device cpu"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} asked for but MPS is not available; use --device cpu")
    return dev


@dataclass
class TrainResult:
    """What a run did. ``evals`` rows: ``{"step", "episodes", "train_seconds", "mean", "std"}``
    (``train_seconds``: wall time spent training so far, evaluations and checkpoints excluded)."""

    run_dir: Path
    env_steps: int
    episodes: int
    solved: bool
    train_seconds: float
    evals: list[dict[str, float]] = field(default_factory=list)

    @property
    def final_eval(self) -> float | None:
        return self.evals[-1]["mean"] if self.evals else None

    @property
    def sps(self) -> float:
        return self.env_steps / max(self.train_seconds, 1e-9)

    def first_reaching(self, threshold: float) -> dict[str, float] | None:
        """The first evaluation whose mean return is >= ``threshold``."""
        return next((e for e in self.evals if e["mean"] >= threshold), None)


def _new_run_dir(cfg: Any, algo: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.runs_dir) / f"{cfg.env_id}-{algo}-{stamp}"
    path, k = base, 1
    while path.exists():
        path, k = Path(f"{base}-{k}"), k + 1
    return path


def _make_buffer(cfg: Any, envs: gym.vector.VectorEnv, seed: int) -> ReplayBuffer:
    """The replay buffer for ``envs``: prioritized if the config asks (DQN's ``prioritized``), with
    episode returns discounted by ``gamma`` if the agent uses them (SAIL)."""
    kwargs: dict[str, Any] = {"seed": seed}
    if getattr(cfg, "sail", False):
        kwargs["episode_returns_gamma"] = cfg.gamma
    if getattr(cfg, "prioritized", False):
        return PrioritizedReplayBuffer.from_env(envs, cfg.buffer_size, alpha=cfg.per_alpha,
                                                eps=cfg.per_eps, **kwargs)
    return ReplayBuffer.from_env(envs, cfg.buffer_size, **kwargs)


def saved_run(ckpt: dict[str, Any], path: Any) -> tuple[str, Any]:
    """``(algo, config)`` recorded in a loaded checkpoint, both checked: ConfigError for an
    algorithm this fastrl does not know or a config it rejects, CheckpointError for no config."""
    from fastrl.agents import ALGOS

    algo = ckpt.get("algo")
    if not isinstance(algo, str) or algo not in ALGOS:
        raise ConfigError(f"{path}: checkpoint algorithm {algo!r} is unknown to this fastrl "
                          f"(known: {', '.join(ALGOS)})")
    if not isinstance(ckpt.get("config"), dict):
        raise checkpoint.CheckpointError(f"{path}: checkpoint has no config")
    return algo, from_dict(ALGOS[algo].config, ckpt["config"])


class Trainer:
    """One run of any algorithm in :data:`fastrl.agents.ALGOS`. ``config`` is its config (e.g. a
    DQNConfig for dqn and sail-dqn, a DDPGConfig for ddpg and td3; None: the algorithm's defaults);
    with ``resume`` (a run directory or checkpoint file) the run continues from that checkpoint,
    with ``config`` (if given) replacing the saved one (e.g. to train for more steps).

    The loop is the same for every agent; what differs is asked of the agent (see
    :class:`fastrl.agents.Agent`): burn-in actions, exploration, the scalars it logs."""

    def __init__(
        self,
        config: Any = None,
        *,
        algo: str | None = None,
        run_dir: str | Path | None = None,
        resume: str | Path | None = None,
        progress: bool = True,
        tensorboard: bool = True,
    ) -> None:
        from fastrl.agents import algo_of, default_config, get_algo

        ckpt = None
        if resume is not None:
            ckpt_path = checkpoint.find(resume)
            ckpt = checkpoint.load(ckpt_path)
            algo, saved_config = saved_run(ckpt, ckpt_path)
            run_dir = (
                ckpt_path.parent.parent
                if ckpt_path.parent.name == "checkpoints"
                else ckpt_path.parent
            )
            if config is None:
                config = saved_config
        if algo is None:  # the name from the config's class and options (dqn without either)
            algo = algo_of(config) if config is not None else "dqn"
        config_cls, agent_cls, _ = get_algo(algo)
        cfg = config if config is not None else default_config(algo)
        if not isinstance(cfg, config_cls):
            raise ConfigError(f"{algo} needs a {config_cls.__name__}, got {type(cfg).__name__}")
        cfg.check()
        self.cfg, self.algo, self.progress = cfg, algo, progress
        self.device = resolve_device(cfg.device)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)

        # Seeding: one SeedSequence gives independent streams to torch, buffer and exploration;
        # the envs are seeded at reset with seed, seed + 1, ...
        seeds = np.random.SeedSequence(cfg.seed).generate_state(3, dtype=np.uint64)
        self._seeds = [int(x) for x in seeds]  # the collector of a concurrent run builds its agent from them
        self._saved_env_states: list[dict[str, Any]] | None = None
        self.updates_done = 0
        """Updates of the last train() (concurrent runs count them for the rate limiter)."""
        self.concurrent_stats: dict[str, float] = {}
        torch.manual_seed(int(seeds[0]) & (2**63 - 1))

        self.envs = make_vec_env(
            cfg.env_id, cfg.num_envs, cfg.vector_mode, cfg.max_episode_steps, cfg.frame_stack
        )
        try:
            self.agent = agent_cls.from_spaces(
                self.envs.single_observation_space,
                self.envs.single_action_space,
                cfg,
                self.device,
                seed=int(seeds[2]),
            )
        except ConfigError:
            self.envs.close()
            raise
        self.buffer = _make_buffer(cfg, self.envs, int(seeds[1]))
        self._prioritized = bool(getattr(cfg, "prioritized", False))  # DQN's option only

        # Counters and episode statistics (all saved in checkpoints).
        self.env_steps = self.iterations = self.episodes = 0
        self.train_seconds = 0.0
        self.solved = False
        self.best_eval = -math.inf
        self.evals: list[dict[str, float]] = []
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.ep_return = np.zeros(cfg.num_envs)
        self.ep_len = np.zeros(cfg.num_envs, dtype=np.int64)
        self._eval_envs: list[gym.Env] | None = None
        self._prefetcher: Any = None  # buffer.prefetcher(...) of a prefetch run, made at the first sample

        if ckpt is not None:
            self.run_dir = Path(run_dir)  # type: ignore[arg-type]
            self.obs = self._restore(ckpt)
            _truncate_metrics(self.run_dir, self.env_steps)
        else:
            self.run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(cfg, algo)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.obs, _ = self.envs.reset(seed=cfg.seed)
        (self.run_dir / "config.json").write_text(
            json.dumps({"algo": algo, **to_dict(cfg)}, indent=2)
        )
        self.logger = Logger(self.run_dir, tensorboard=tensorboard, append=ckpt is not None)

    # ------------------------------------------------------------------ the loop
    def train(self) -> TrainResult:
        if self.cfg.concurrent:
            return self._train_concurrent()
        cfg, agent, n = self.cfg, self.agent, self.cfg.num_envs
        buffer: Any = self.buffer
        bar = _progress_bar(cfg.total_steps, self.env_steps, self.progress, self.run_dir.name)
        sums: dict[str, torch.Tensor] = {}  # update metrics summed on the device since the last log
        counts: dict[str, int] = {}  # how many updates returned each metric (TD3's actor loss: fewer)
        last_log_time, last_log_step = time.perf_counter(), self.env_steps
        lengths: deque[int] = deque(maxlen=10)
        tic = time.perf_counter()
        try:
            while self.env_steps < cfg.total_steps and not self.solved:
                # 1. act: uniformly random during burn-in, the agent's exploration after
                if self.env_steps < cfg.learning_starts:
                    actions = agent.random_actions(n)
                else:
                    actions = agent.act(self.obs, explore=True)

                # 2. step the envs and store the transitions (true final observations where episodes end)
                next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
                self._before_write()
                buffer.extend(
                    self.obs,
                    actions,
                    rewards,
                    final_observations(next_obs, terminated, truncated, infos),
                    terminated,
                    truncated,
                )
                self.obs = next_obs
                prev_steps = self.env_steps
                self.env_steps += n
                self.iterations += 1
                done = np.logical_or(terminated, truncated)
                agent.after_env_step(done)

                # 3. episode bookkeeping
                self._book_episodes(rewards, done, lengths)

                # 4. learn
                if self.env_steps >= cfg.learning_starts and self.iterations % cfg.train_freq == 0:
                    for _ in range(cfg.gradient_steps):
                        self._learn_once(sums, counts)

                # 5. log, evaluate, checkpoint (outside the timed part)
                if _crossed(prev_steps, self.env_steps, cfg.log_every) or self.solved:
                    now = time.perf_counter()
                    self.train_seconds += now - tic
                    tic = now
                    sps = (self.env_steps - last_log_step) / max(now - last_log_time, 1e-9)
                    last_log_time, last_log_step = now, self.env_steps
                    self._log_metrics(sums, counts, sps, lengths, bar)
                if cfg.eval_every and _crossed(prev_steps, self.env_steps, cfg.eval_every):
                    self.train_seconds += time.perf_counter() - tic
                    self._evaluate()
                    tic = time.perf_counter()
                if cfg.checkpoint_every and _crossed(
                    prev_steps, self.env_steps, cfg.checkpoint_every
                ):
                    self.train_seconds += time.perf_counter() - tic
                    self.save_checkpoint(periodic=True)
                    tic = time.perf_counter()
                if bar is not None:
                    bar.update(n)
            self.train_seconds += time.perf_counter() - tic
            if not self.evals or self.evals[-1]["step"] != self.env_steps:
                self._evaluate()
            self.save_checkpoint(periodic=False)
        finally:
            self._close_prefetcher()
            if bar is not None:
                bar.close()
            self.logger.close()
        return self._plot_and_result()

    # ------------------------------------------------------------------ the concurrent loop
    def _train_concurrent(self) -> TrainResult:
        """``train()`` with ``concurrent=True``: a :class:`fastrl.training.collector.Collector` process steps
        the envs while this process inserts its chunks, keeps the books and updates, as often per
        env step as the sequential loop (:class:`fastrl.training.collector.RateLimiter`).

        An evaluation at step N first does the updates due at N (the learner may lag behind the
        collector), so it rates the policy the sequential loop would have at N.
        Checkpoints pause the collector (it flushes and reports its envs' states), insert what it
        sent, do the updates due so far, save, and let it go on: a checkpoint at step N holds what
        a sequential run's would (buffer, envs, counters, the updates due at N), so a resume, with
        or without ``concurrent``, continues from a consistent state. Runs are not bit-reproducible:
        which weights act at a step depends on timing."""
        from fastrl.training.collector import Collector, RateLimiter

        cfg, agent, n = self.cfg, self.agent, self.cfg.num_envs
        buffer: Any = self.buffer
        limiter = RateLimiter.from_config(cfg)
        self.updates_done = limiter.updates_due(self.iterations)
        bar = _progress_bar(cfg.total_steps, self.env_steps, self.progress, self.run_dir.name)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        clock = {"tic": time.perf_counter(), "log_time": time.perf_counter(), "log_step": self.env_steps}
        lengths: deque[int] = deque(maxlen=10)
        flags = {"checkpoint": False}

        def untimed_start() -> None:
            self.train_seconds += time.perf_counter() - clock["tic"]

        def untimed_end() -> None:
            clock["tic"] = time.perf_counter()

        def learn_one() -> None:
            self._learn_once(sums, counts)
            self.updates_done += 1
            collector.set_updates(self.updates_done)
            if self.updates_done % cfg.sync_every == 0:
                collector.publish()

        def log_now() -> None:
            now = time.perf_counter()
            sps = (self.env_steps - clock["log_step"]) / max(now - clock["log_time"], 1e-9)
            clock["log_time"], clock["log_step"] = now, self.env_steps
            lag = limiter.updates_due(self.iterations) - self.updates_done
            self._log_metrics(sums, counts, sps, lengths, bar, **{"perf/update_lag": float(lag)})

        def consume(d: dict[str, np.ndarray]) -> None:
            """Insert one chunk ([T, N, ...] arrays) and keep the books of each of its steps."""
            T = len(d["rewards"])
            flat = {k: v.reshape(T * n, *v.shape[2:]) for k, v in d.items()}
            self._before_write()
            buffer.extend(flat["observations"], flat["actions"], flat["rewards"],
                          flat["next_observations"], flat["terminated"], flat["truncated"])
            for t in range(T):
                rewards = d["rewards"][t]
                done = np.logical_or(d["terminated"][t], d["truncated"][t])
                prev_steps = self.env_steps
                self.env_steps += n
                self.iterations += 1
                agent.after_env_step(done)  # the learner's schedule follows the collector's (logs, checkpoints)
                self._book_episodes(rewards, done, lengths)
                if _crossed(prev_steps, self.env_steps, cfg.log_every):
                    log_now()
                if cfg.eval_every and _crossed(prev_steps, self.env_steps, cfg.eval_every) and not self.solved:
                    # evaluate what the sequential loop would: the policy after the updates due here
                    while limiter.can_update(self.iterations, self.updates_done):
                        learn_one()
                    untimed_start()
                    self._evaluate()
                    untimed_end()
                if cfg.checkpoint_every and _crossed(prev_steps, self.env_steps, cfg.checkpoint_every):
                    flags["checkpoint"] = True
            if bar is not None:
                bar.update(T * n)

        def handle(msg: tuple[str, Any]) -> None:
            if msg[0] == "data":
                consume(msg[1])

        def pause_and_catch_up() -> dict[str, Any]:
            """Stop the collector, insert what it sent, do the updates due (none once solved: the
            sequential loop stops there; the steps the collector took past it are kept, not learned from)."""
            state = collector.pause(consume)
            if state["env_steps"] != self.env_steps:
                raise RuntimeError(f"collector at {state['env_steps']} env steps, learner at {self.env_steps}")
            while not self.solved and limiter.can_update(self.iterations, self.updates_done):
                learn_one()
            self.obs = state["obs"]
            return state

        start: dict[str, Any] = {"env_steps": self.env_steps, "iterations": self.iterations}
        if self._saved_env_states is not None:
            agent_state = agent.state_dict()
            start.update(env_states=self._saved_env_states, exploration=agent_state["exploration"],
                         rng=agent_state["rng"])
        self.concurrent_stats = {"startup_seconds": 0.0, "wait_seconds": 0.0}
        """Seconds the learner waited for the collector: before its first chunk, and after."""
        collector = Collector(cfg, self.algo, agent, self._seeds, start, limiter, updates=self.updates_done)
        try:
            while True:
                while (msg := collector.get(0)) is not None:
                    handle(msg)
                if flags["checkpoint"]:
                    flags["checkpoint"] = False
                    state = pause_and_catch_up()
                    untimed_start()
                    self.save_checkpoint(periodic=True, states=state["env_states"])
                    untimed_end()
                    self._saved_env_states = None
                    collector.resume()
                    continue
                if self.solved:
                    break
                if limiter.can_update(self.iterations, self.updates_done):
                    learn_one()
                    continue
                if self.env_steps >= cfg.total_steps:
                    break
                w0 = time.perf_counter()
                msg = collector.get()
                waited = time.perf_counter() - w0
                if self.env_steps == start["env_steps"]:  # the child's imports and env setup: like the
                    self.concurrent_stats["startup_seconds"] += waited  # sequential envs' (made in
                    clock["tic"] += waited  # __init__), not part of train_seconds
                else:
                    self.concurrent_stats["wait_seconds"] += waited
                if msg is not None:
                    handle(msg)
            state = pause_and_catch_up()
            if _crossed(int(clock["log_step"]), self.env_steps, cfg.log_every) or self.solved or sums:
                log_now()
            untimed_start()
            solved_by_eval = self.solved and cfg.solve_on == "eval"  # that evaluation rated the final policy
            if not solved_by_eval and (not self.evals or self.evals[-1]["step"] != self.env_steps):
                self._evaluate()
            self.save_checkpoint(periodic=False, states=state["env_states"])
        finally:
            self._close_prefetcher()
            collector.close()
            if bar is not None:
                bar.close()
            self.logger.close()
        return self._plot_and_result()

    def _learn_once(self, sums: dict[str, torch.Tensor], counts: dict[str, int]) -> None:
        """One gradient step on a sampled batch; its metrics summed into ``sums`` (on the device,
        no sync) and counted; with prioritized replay the batch's priorities set to ``|td| + eps``."""
        metrics = self.agent.update(self._sample())
        for k, v in metrics.items():
            sums[k] = sums[k] + v if k in sums else v
            counts[k] = counts.get(k, 0) + 1
        if self._prioritized:  # the buffer adds per_eps
            self._before_write()
            self.buffer.update_priorities(self._batch_indices, self.agent.td_abs)  # type: ignore[attr-defined]

    def _log_metrics(self, sums: dict[str, torch.Tensor], counts: dict[str, int], sps: float,
                     lengths: deque[int], bar: Any, **extra: float) -> None:
        """Log the mean update metrics since the last log (``float()`` syncs here), the agent's
        scalars (e.g. charts/epsilon), ``perf/sps`` and ``extra``; empty ``sums`` and ``counts``;
        refresh the progress bar."""
        shown = self.agent.progress()
        self.logger.log(
            self.env_steps,
            **{k: v / counts[k] for k, v in sums.items()},
            **shown,
            **{"perf/sps": sps},
            **extra,
        )
        sums.clear()
        counts.clear()
        if bar is not None:
            bar.set_postfix(
                ret10=f"{np.mean(list(self.recent_returns)[-10:]):.1f}" if self.recent_returns else "-",
                len=f"{np.mean(lengths):.0f}" if lengths else "-",
                **{k.rsplit("/", 1)[-1]: f"{v:.3g}" for k, v in shown.items()},
                sps=f"{sps:.0f}",
                refresh=False,
            )

    def _book_episodes(self, rewards: np.ndarray, done: np.ndarray, lengths: deque[int]) -> None:
        """Add one vector step's rewards; log, count and reset the episodes that ``done`` ended;
        with ``solve_on="rolling"``, set ``solved`` once the last 100 returns reach the threshold."""
        cfg = self.cfg
        self.ep_return += rewards
        self.ep_len += 1
        if not done.any():
            return
        for i in np.flatnonzero(done):
            self.recent_returns.append(float(self.ep_return[i]))
            lengths.append(int(self.ep_len[i]))
            self.logger.log(
                self.env_steps,
                **{"charts/episodic_return": self.ep_return[i], "charts/episodic_length": self.ep_len[i]},
            )
        self.episodes += int(done.sum())
        self.ep_return[done] = 0.0
        self.ep_len[done] = 0
        if (
            cfg.solve_on == "rolling"
            and cfg.solved_threshold is not None
            and len(self.recent_returns) == 100
            and np.mean(self.recent_returns) >= cfg.solved_threshold
        ):
            self.solved = True

    def _plot_and_result(self) -> TrainResult:
        try:
            from fastrl.training.plots import plot_runs

            plot_runs([self.run_dir], self.run_dir / "training.png")
        except ImportError:
            pass
        return self.result()

    def close(self) -> None:
        self._close_prefetcher()
        self.envs.close()
        for e in self._eval_envs or []:
            e.close()
        self.logger.close()

    def result(self) -> TrainResult:
        return TrainResult(
            self.run_dir,
            self.env_steps,
            self.episodes,
            self.solved,
            self.train_seconds,
            list(self.evals),
        )

    # ------------------------------------------------------------------ pieces
    def _sample(self) -> Any:
        cfg = self.cfg
        kwargs: dict[str, Any] = {}
        if cfg.n_step > 1:
            kwargs.update(n_step=cfg.n_step, gamma=cfg.gamma)
        if self._prioritized:
            frac = min(1.0, self.env_steps / cfg.total_steps)
            kwargs["beta"] = cfg.per_beta_start + frac * (1.0 - cfg.per_beta_start)
        if cfg.prefetch:
            beta = kwargs.pop("beta", None)
            if self._prefetcher is None:
                extra = {} if beta is None else {"beta": beta}
                self._prefetcher = self.buffer.prefetcher(cfg.batch_size, device=self.device, **kwargs, **extra)
            batch = self._prefetcher.next(beta=beta)
        else:
            batch = self.buffer.sample(cfg.batch_size, device=self.device, **kwargs)
        self._batch_indices = batch.indices
        return batch

    def _before_write(self) -> None:
        """With prefetch: let the background draw finish before the buffer changes (so that what
        it draws does not depend on thread timing)."""
        if self._prefetcher is not None:
            self._prefetcher.wait()

    def _close_prefetcher(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def _evaluate(self) -> dict[str, float]:
        cfg = self.cfg
        if self._eval_envs is None:
            self._eval_envs = [
                make_env(cfg.env_id, cfg.max_episode_steps, cfg.frame_stack)
                for _ in range(cfg.eval_episodes)
            ]
        # Seeds depend only on (seed, step): evaluation never touches the training generators.
        seed = (
            int(np.random.SeedSequence([cfg.seed, self.env_steps, 7]).generate_state(1)[0]) % 2**31
        )
        returns = evaluate(self.agent.greedy, None, cfg.eval_episodes, seed, envs=self._eval_envs)
        row = {
            "step": self.env_steps,
            "episodes": self.episodes,
            "train_seconds": self.train_seconds,
            "mean": float(returns.mean()),
            "std": float(returns.std()),
        }
        self.evals.append(row)
        self.logger.log(
            self.env_steps, **{"eval/mean_return": row["mean"], "eval/std_return": row["std"]}
        )
        self.logger.flush()
        if row["mean"] > self.best_eval:
            self.best_eval = row["mean"]
            checkpoint.save(self.run_dir / "checkpoints" / "best.pt", self._agent_state())
        if (
            cfg.solve_on == "eval"
            and cfg.solved_threshold is not None
            and row["mean"] >= cfg.solved_threshold
        ):
            self.solved = True
        return row

    # ------------------------------------------------------------------ checkpoints
    def _agent_state(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "config": to_dict(self.cfg),
            "env_steps": self.env_steps,
            "agent": self.agent.state_dict(),
        }

    def save_checkpoint(self, periodic: bool, states: list[dict[str, Any]] | None = None) -> Path:
        """Write ``last.pt`` (everything needed to resume, with the buffer beside it) and, if
        ``periodic``, ``step_<N>.pt``. Returns the path of last.pt. ``states``: the envs' states
        (a concurrent run's, from its collector) instead of those of ``self.envs``."""
        self._before_write()  # the buffer and its generator are read: no draw in flight
        ckpt_dir = self.run_dir / "checkpoints"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        buffer_file = None
        if self.cfg.save_buffer:
            buffer_file = f"buffer_{self.env_steps:09d}.frb"
            self.buffer.save(ckpt_dir / buffer_file)
        state = {
            **self._agent_state(),
            "buffer_file": buffer_file,
            "trainer": {
                "env_steps": self.env_steps,
                "iterations": self.iterations,
                "episodes": self.episodes,
                "train_seconds": self.train_seconds,
                "solved": self.solved,
                "best_eval": self.best_eval,
                "evals": self.evals,
                "recent_returns": list(self.recent_returns),
                "ep_return": torch.from_numpy(self.ep_return.copy()),
                "ep_len": torch.from_numpy(self.ep_len.copy()),
                "obs": torch.from_numpy(np.asarray(self.obs).copy()),
                "env_states": states if states is not None else env_states(self.envs),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }
        if periodic:
            checkpoint.save(ckpt_dir / f"step_{self.env_steps:09d}.pt", state)
        checkpoint.save(ckpt_dir / "last.pt", state)
        for old in ckpt_dir.glob("buffer_*.frb"):  # keep only the buffer last.pt points to
            if old.name != buffer_file:
                old.unlink()
        return ckpt_dir / "last.pt"

    def _restore(self, ckpt: dict[str, Any]) -> np.ndarray:
        try:
            self.agent.load_state_dict(ckpt["agent"])
            t = ckpt["trainer"]
            if ckpt.get("buffer_file"):
                path = self.run_dir / "checkpoints" / ckpt["buffer_file"]
                try:
                    self.buffer = type(self.buffer).load(path)
                except (OSError, ValueError) as e:
                    raise checkpoint.CheckpointError(f"replay buffer {path}: {e}") from None
            self.env_steps, self.iterations = int(t["env_steps"]), int(t["iterations"])
            self.episodes, self.train_seconds = int(t["episodes"]), float(t["train_seconds"])
            self.solved, self.best_eval = bool(t["solved"]), float(t["best_eval"])
            self.evals = [dict(e) for e in t["evals"]]
            self.recent_returns.extend(float(r) for r in t["recent_returns"])
            self.ep_return, self.ep_len = t["ep_return"].numpy().copy(), t["ep_len"].numpy().copy()
            torch.set_rng_state(t["torch_rng"])
            if t["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(t["cuda_rng"])
            self._saved_env_states = list(t["env_states"])
            obs = restore_env_states(self.envs, t["env_states"])
            saved_obs = t["obs"].numpy()
        except (KeyError, TypeError, AttributeError) as e:
            raise checkpoint.CheckpointError(
                f"checkpoint is missing or has bad entries ({e!r})"
            ) from None
        if (
            self.solved
            and self.cfg.solved_threshold is not None
            and self.best_eval < self.cfg.solved_threshold
        ):
            self.solved = False  # resumed with a higher bar: keep training
        if not np.array_equal(obs, saved_obs):
            import warnings

            warnings.warn(
                "resumed envs did not reproduce the saved observations (non-deterministic env?); "
                "continuing from the saved observations",
                stacklevel=2,
            )
            obs = saved_obs
        return obs


def _crossed(prev: int, now: int, every: int) -> bool:
    return every > 0 and now // every > prev // every


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metric rows logged after the checkpoint we resume from (they will be logged again),
    and a row cut short by a kill; rewritten atomically (temp file, then rename)."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)

    def keep(line: str) -> bool:
        parts = line.rstrip("\n").split(",")
        if not line.endswith("\n") or len(parts) != 4:
            return False
        try:
            float(parts[3])  # a value cut short by a kill does not parse
            return int(parts[0]) <= step
        except ValueError:
            return False

    header = "step,wall_time,key,value\n"  # missing when a kill came before the first flush
    body = lines[1:] if lines and lines[0] == header else lines
    kept = [header] + [ln for ln in body if keep(ln)]
    write_text_atomic(path, "".join(kept))


def _progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, mininterval=0.5
    )


def train(config: Any = None, **kwargs: Any) -> TrainResult:
    """Train an agent: ``train(DQNConfig(...))``, ``train(preset("td3", "Pendulum-v1"))`` or
    ``train(resume="runs/CartPole-v1-dqn-...")``.

    Keyword arguments go to :class:`Trainer` (``algo``: the name in the run directory, by default
    the one of the config, see :func:`fastrl.agents.algo_of`; ``run_dir``, ``resume``, ``progress``).
    """
    trainer = Trainer(config, **kwargs)
    try:
        return trainer.train()
    finally:
        trainer.close()


__all__ = ["TrainResult", "Trainer", "resolve_device", "saved_run", "train"]
