"""The training loop: env -> agent.act -> buffer.extend -> sampler.sample -> agent.update -> log /
evaluate / checkpoint.

``train(config)`` runs one experiment in ``runs/<env>-<algo>-<time>/`` and returns a
:class:`TrainResult`; ``train(resume="runs/...")`` continues one from its last checkpoint.
The loop (:meth:`Trainer.train`) does not know the algorithm: the agent's config declares the
replay it needs (``config.replay()``), which fixes the buffer and the :class:`Sampler` once.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fastrl._util import write_text_atomic
from fastrl.agents.registry import algo_of, default_config, get_algo
from fastrl.config import ConfigError, to_dict
from fastrl.training import checkpoint
from fastrl.training.concurrent import train_concurrent
from fastrl.training.device import flushes_denormals, resolve_device
from fastrl.training.envs import env_states, evaluate, make_env, make_vec_env, replays_exactly, restore_env_states
from fastrl.training.logger import Logger, MetricMeans
from fastrl.training.plots import plot_runs
from fastrl.training.rollout import env_step
from fastrl.training.run_state import RunState
from fastrl.training.sampler import Sampler
from fastrl.training.triggers import Triggers


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


class Trainer:
    """One run of any algorithm in :data:`fastrl.agents.ALGOS`. ``config`` is its config (e.g. a
    DQNConfig for dqn and sail-dqn, a DDPGConfig for ddpg and td3; None: the algorithm's defaults);
    with ``resume`` (a run directory or checkpoint file) the run continues from that checkpoint,
    with ``config`` (if given) replacing the saved one (e.g. to train for more steps).

    What differs between agents is asked of the agent (see :class:`fastrl.agents.Agent`): burn-in
    actions, exploration, the update, the scalars it logs, and, through its config, the replay."""

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
        ckpt = None
        if resume is not None:
            ckpt_path = checkpoint.find(resume)
            ckpt = checkpoint.load(ckpt_path)
            algo, saved_config = checkpoint.saved_run(ckpt, ckpt_path)
            run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
            config = saved_config if config is None else config
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
        self.seeds = [int(x) for x in np.random.SeedSequence(cfg.seed).generate_state(3, dtype=np.uint64)]
        torch.manual_seed(self.seeds[0] & (2**63 - 1))
        # with collectors these envs only give the spaces and the buffer's streams (collectors step theirs)
        mode = "sync" if cfg.n_collectors else cfg.vector_mode
        self.envs = make_vec_env(
            cfg.env_id, cfg.streams, mode, cfg.max_episode_steps, cfg.frame_stack, **cfg.env_options()
        )
        try:
            self.agent = agent_cls.from_spaces(
                self.envs.single_observation_space, self.envs.single_action_space, cfg, self.device, seed=self.seeds[2]
            )
        except ConfigError:
            self.envs.close()
            raise
        self.replay = cfg.replay()
        self.buffer = self.replay.make_buffer(self.envs, self.seeds[1])
        self.state = RunState(cfg.streams)
        self.saved_env_states: list[dict[str, Any]] | None = None  # of a resumed run, for its collectors
        self.saved_collectors: list[dict[str, Any]] | None = None  # their generators and exploration
        self.concurrent_stats: dict[str, float] = {}  # a concurrent run's (see train_concurrent)
        self._eval_envs: list[Any] | None = None
        self.learning_from = cfg.learning_starts
        """Env steps from which updates run: ``learning_starts``, or later after a resume whose
        checkpoint holds no buffer (the refill; see :meth:`_restore`)."""
        if ckpt is not None:
            self.run_dir = Path(run_dir)  # type: ignore[arg-type]
            self.obs = self._restore(ckpt)
            _truncate_metrics(self.run_dir, self.state.env_steps)
        else:
            self.run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(cfg, algo)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.obs, _ = self.envs.reset(seed=cfg.seed)
        (self.run_dir / "config.json").write_text(json.dumps({"algo": algo, **to_dict(cfg)}, indent=2))
        self.logger = Logger(self.run_dir, tensorboard=tensorboard, append=ckpt is not None)
        self.sampler = Sampler(self.buffer, self.replay, cfg.batch_size, self.device, cfg.total_steps, cfg.prefetch)
        self.metrics = MetricMeans()
        self.triggers = Triggers(
            log=cfg.log_every, evaluate=cfg.eval_every, checkpoint=cfg.checkpoint_every, when_solved=("log",)
        )
        self.on_event: dict[str, Callable[[], Any]] = {
            "log": self.log,
            "evaluate": self.evaluate,
            "checkpoint": self.periodic_checkpoint,
        }
        self.eval_hooks: list[Callable[[dict[str, float]], Any]] = []
        """Called with each evaluation's row, outside training time (e.g. a tuner's pruning report;
        an exception raised here ends the run)."""
        self.bar: Any = _NoBar()
        self._last_log = (time.perf_counter(), self.state.env_steps)
        self._flushed_denormals: bool | None = None  # the thread's setting before start(), restored by end()

    # ------------------------------------------------------------------ the loop
    def train(self) -> TrainResult:
        if self.cfg.n_collectors:
            return train_concurrent(self)
        cfg, agent, envs, state, n = self.cfg, self.agent, self.envs, self.state, self.cfg.num_envs
        self.start()
        try:
            while state.env_steps < cfg.total_steps and not state.solved:
                transition, self.obs, books = env_step(agent, envs, self.obs, state.env_steps, cfg.learning_starts)
                self.sampler.before_write()
                self.buffer.extend(*transition)
                prev = state.env_steps
                self.record_step(*books)
                if state.env_steps >= self.learning_from and state.iterations % cfg.train_freq == 0:
                    for _ in range(cfg.gradient_steps):
                        self.learn()
                for event in self.triggers.fired(prev, state.env_steps, state.solved):
                    self.on_event[event]()
                self.bar.update(n)
            state.stop_clock()
            if not state.evals or state.evals[-1]["step"] != state.env_steps:
                self.evaluate()
            self.save_checkpoint(periodic=False)
        finally:
            self.end()
        return self.finish()

    # ------------------------------------------------------------------ one step's parts
    def record_step(self, rewards: np.ndarray, done: np.ndarray) -> None:
        """Count a vector step, log the episodes it ended; with ``solve_on="rolling"``, solved once
        the last 100 returns reach the threshold. ``rewards`` and ``done``: the game's
        (:class:`fastrl.training.rollout.Books`), not the learning target's."""
        finished = self.state.advance(len(done), rewards, done)
        for ret, length in finished:
            self.logger.log(self.state.env_steps, **{"charts/episodic_return": ret, "charts/episodic_length": length})
        if finished and self.cfg.solve_on == "rolling" and self.state.rolling_mean_reaches(self.cfg.solved_threshold):
            self.state.solved = True

    def learn(self) -> None:
        """One gradient step on a sampled batch (metrics summed on the device, no sync)."""
        self.metrics.add(self.agent.update(self.sampler.sample(self.state.env_steps)))
        self.sampler.after_update(self.agent)

    def log(self, **extra: float) -> None:
        """Log the mean update metrics since the last log (``float()`` syncs here), the agent's
        scalars (e.g. charts/epsilon), ``perf/sps`` and ``extra``; refresh the progress bar."""
        now, steps = time.perf_counter(), self.state.env_steps
        sps = (steps - self._last_log[1]) / max(now - self._last_log[0], 1e-9)
        self._last_log = (now, steps)
        shown = self.agent.progress()
        self.logger.log(steps, **self.metrics.pop_means(), **shown, **{"perf/sps": sps}, **extra)
        returns, lengths = list(self.state.recent_returns)[-10:], self.state.recent_lengths
        self.bar.set_postfix(
            ret10=f"{np.mean(returns):.1f}" if returns else "-",
            len=f"{np.mean(lengths):.0f}" if lengths else "-",
            **{k.rsplit("/", 1)[-1]: f"{v:.3g}" for k, v in shown.items()},
            sps=f"{sps:.0f}",
            refresh=False,
        )

    def evaluate(self) -> dict[str, float]:
        """Evaluation (greedy, or epsilon-greedy with ``eval_epsilon``) on ``eval_episodes`` envs,
        seeded by (seed, step) only; keeps best.pt; with ``solve_on="eval"``, solved once the mean
        reaches the threshold. Not training time."""
        cfg, state = self.cfg, self.state
        with state.untimed():
            if self._eval_envs is None:
                self._eval_envs = [
                    make_env(cfg.env_id, cfg.max_episode_steps, cfg.frame_stack) for _ in range(cfg.eval_episodes)
                ]
            seed = int(np.random.SeedSequence([cfg.seed, state.env_steps, 7]).generate_state(1)[0]) % 2**31
            returns = evaluate(
                self.agent.greedy, None, cfg.eval_episodes, seed, envs=self._eval_envs, epsilon=cfg.eval_epsilon
            )
            row = {
                "step": state.env_steps,
                "episodes": state.episodes,
                "train_seconds": state.train_seconds,
                "mean": float(returns.mean()),
                "std": float(returns.std()),
            }
            state.evals.append(row)
            self.logger.log(state.env_steps, **{"eval/mean_return": row["mean"], "eval/std_return": row["std"]})
            self.logger.flush()
            if row["mean"] > state.best_eval:
                state.best_eval = row["mean"]
                checkpoint.save(self.run_dir / "checkpoints" / "best.pt", self._agent_state())
            if cfg.solve_on == "eval" and cfg.solved_threshold is not None and row["mean"] >= cfg.solved_threshold:
                state.solved = True
            for hook in self.eval_hooks:
                hook(row)
        return row

    def periodic_checkpoint(self) -> None:
        with self.state.untimed():
            self.save_checkpoint(periodic=True)

    # ------------------------------------------------------------------ start and end
    def start(self) -> None:
        """Start the progress bar and the clocks of training time and of ``perf/sps``; flush
        denormals to zero if the config says so (until :meth:`end`)."""
        if self.cfg.flush_denormal and self._flushed_denormals is None:
            self._flushed_denormals = flushes_denormals()
            torch.set_flush_denormal(True)
        self.bar = _progress_bar(self.cfg.total_steps, self.state.env_steps, self.progress, self.run_dir.name)
        self._last_log = (time.perf_counter(), self.state.env_steps)
        self.state.start_clock()

    def end(self) -> None:
        """Stop the prefetch thread, the progress bar and the logger (also after an error); give
        back the thread's denormal setting."""
        if self._flushed_denormals is not None:
            torch.set_flush_denormal(self._flushed_denormals)
            self._flushed_denormals = None
        self.sampler.close()
        self.bar.close()
        self.logger.close()

    def finish(self) -> TrainResult:
        """Draw ``training.png`` and return the result."""
        plot_runs([self.run_dir], self.run_dir / "training.png")
        return self.result()

    def close(self) -> None:
        self.end()
        self.envs.close()
        for e in self._eval_envs or []:
            e.close()

    def result(self) -> TrainResult:
        s = self.state
        return TrainResult(self.run_dir, s.env_steps, s.episodes, s.solved, s.train_seconds, list(s.evals))

    # ------------------------------------------------------------------ checkpoints
    def _agent_state(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "config": to_dict(self.cfg),
            "env_steps": self.state.env_steps,
            "agent": self.agent.state_dict(),
        }

    def save_checkpoint(
        self,
        periodic: bool,
        states: list[dict[str, Any]] | None = None,
        collectors: list[dict[str, Any]] | None = None,
    ) -> Path:
        """Write ``last.pt`` (everything needed to resume, with the buffer beside it) and, if
        ``periodic``, ``step_<N>.pt``. Returns the path of last.pt. ``states``: the envs' states
        (a concurrent run's, from its collectors) instead of those of ``self.envs``; ``collectors``:
        their exploration generators and schedules."""
        self.sampler.before_write()  # the buffer and its generator are read: no draw in flight
        ckpt_dir = self.run_dir / "checkpoints"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        steps = self.state.env_steps
        buffer_file = f"buffer_{steps:09d}.frb" if self.cfg.save_buffer else None
        if buffer_file is not None:
            self.buffer.save(ckpt_dir / buffer_file)
        run = {
            **self.state.state_dict(),
            "obs": torch.from_numpy(np.asarray(self.obs).copy()),
            "env_states": states if states is not None else env_states(self.envs),
            "collectors": collectors if collectors is not None else [],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        state = {**self._agent_state(), "buffer_file": buffer_file, "trainer": run}
        if periodic:
            checkpoint.save(ckpt_dir / f"step_{steps:09d}.pt", state)
        checkpoint.save(ckpt_dir / "last.pt", state)
        for old in ckpt_dir.glob("buffer_*.frb"):  # keep only the buffer last.pt points to
            if old.name != buffer_file:
                old.unlink()
        return ckpt_dir / "last.pt"

    def _hold_updates_for_refill(self) -> None:
        """After restoring a checkpoint without its buffer (``save_buffer=false``): move
        ``learning_from`` so updates wait until ``max(learning_starts, batch_size)`` new transitions
        are in (the sequential loop and ``free`` collectors read it; ``fixed`` collectors restart their
        rate limiter's schedule there), and warn."""
        cfg = self.cfg
        refill = max(cfg.learning_starts, cfg.batch_size)
        self.learning_from = self.state.env_steps + refill
        warnings.warn(
            f"the checkpoint holds no replay buffer (save_buffer was off): learning goes on from an empty "
            f"buffer (updates wait for {refill} new transitions), so this resume is not exact",
            stacklevel=3,
        )

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
            self.state.load_state_dict(t)
            if not ckpt.get("buffer_file"):
                self._hold_updates_for_refill()
            torch.set_rng_state(t["torch_rng"])
            if t["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(t["cuda_rng"])
            if len(t["env_states"]) != self.cfg.streams:
                raise ConfigError(
                    f"cannot resume a run of {len(t['env_states'])} env streams with {self.cfg.streams} "
                    "(num_envs, or collectors * collector_envs, must stay as they were)"
                )
            self.saved_env_states = list(t["env_states"])
            self.saved_collectors = list(t.get("collectors") or []) or None
            exact = replays_exactly(self.envs, t["env_states"])  # else new games (warned)
            obs = restore_env_states(self.envs, t["env_states"])
            saved_obs = t["obs"].numpy()
        except (KeyError, TypeError, AttributeError) as e:
            raise checkpoint.CheckpointError(f"checkpoint is missing or has bad entries ({e!r})") from None
        threshold = self.cfg.solved_threshold
        if self.state.solved and threshold is not None and self.state.best_eval < threshold:
            self.state.solved = False  # resumed with a higher bar: keep training
        if exact and not np.array_equal(obs, saved_obs):
            warnings.warn(
                "resumed envs did not reproduce the saved observations (non-deterministic env?); "
                "continuing from the saved observations",
                stacklevel=2,
            )
            obs = saved_obs
        return obs


def _new_run_dir(cfg: Any, algo: str) -> Path:
    env = cfg.env_id.replace("/", "-")  # ALE/Pong-v5 -> ALE-Pong-v5: one folder per run
    base = Path(cfg.runs_dir) / f"{env}-{algo}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while path.exists():
        path, k = Path(f"{base}-{k}"), k + 1
    return path


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metric rows logged after the checkpoint we resume from (they will be logged again),
    and a row cut short by a kill; rewritten atomically."""
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
    write_text_atomic(path, "".join([header] + [ln for ln in body if keep(ln)]))


class _NoBar:
    """The progress bar of a run without one."""

    def update(self, n: int) -> None: ...
    def set_postfix(self, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


def _progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, mininterval=0.5)


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


__all__ = ["TrainResult", "Trainer", "train"]
