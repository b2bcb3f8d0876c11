"""Training configuration: the loop settings every agent shares, field docs, and ``key=value`` overrides.

Each agent has one frozen dataclass (e.g. :class:`fastrl.agents.dqn.DQNConfig`) that extends
:class:`TrainConfig` with its own fields. Every field carries a docstring (the string literal under
it); :func:`field_docs` reads them for ``fastrl train --help``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A bad configuration; the CLI prints its message on one line, without a traceback."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the training loop, shared by every agent."""

    env_id: str = "CartPole-v1"
    """gymnasium environment id (discrete actions for DQN)."""
    total_steps: int = 100_000
    """Most env steps to train for (summed over vector envs)."""
    seed: int = 0
    """Seeds torch, the envs, the replay buffer and exploration; same seed on CPU = same run."""
    device: str = "auto"
    """Torch device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps."""
    num_envs: int = 1
    """Parallel training envs (a gymnasium vector env)."""
    vector_mode: Literal["auto", "sync", "async", "ale"] = "auto"
    """auto: ale for ALE games with num_envs > 1, else sync; sync: envs step in this process; async: one
    subprocess per env; ale (ALE/<Game>-v5 ids only): ale-py's native vector env, the games stepped by
    C++ threads, about 3x the env steps/s of sync or async on one core (benchmarks/bench_pixels.py
    --part vecenv), with the same preprocessing, learning signals and books except FIRE once at a
    reset and none after a lost life (see fastrl/training/ale_vector.py). Its games are not saved: a
    resume starts new games (with a warning) where sync and async resume exactly; set sync for that."""
    max_episode_steps: int = 0
    """Episode step limit (truncation); 0 keeps the env's own limit."""
    frame_stack: int = 1
    """Stack the last k observations as the agent's input (k > 1 adds a leading axis of size k); the
    replay buffer stores each frame once and stacks at sample time."""
    atari_life_loss_terminal: bool = True
    """ALE games: a lost life is terminal for the learning target (no bootstrapping past it; the
    frame stack restarts), as in the Nature DQN; episodes, returns and evaluations still count full
    games. Other envs: ignored."""
    terminated_next_observations: Literal["auto", "keep", "zero"] = "auto"
    """What the replay keeps of a terminated step's next observation, which no target bootstraps
    from: "keep"; "zero" (not stored, reads as zeros; with pixels each step then costs one frame
    where terminations are frequent, as lost lives are); "auto": "zero" for ALE games with
    atari_life_loss_terminal, else "keep"."""
    clip_rewards: bool | None = None
    """Clip rewards to their sign for the learning target (logged returns and evaluations keep the
    env's rewards); None: on for ALE games, off for other envs."""
    buffer_size: int = 100_000
    """Replay buffer capacity in transitions (rounded down to a multiple of num_envs)."""
    batch_size: int = 64
    """Transitions per gradient step."""
    learning_starts: int = 1_000
    """Env steps of uniformly random actions (burn-in) before the first gradient step."""
    train_freq: int = 1
    """Vector-env steps between training phases."""
    gradient_steps: int = 1
    """Gradient steps per training phase."""
    eval_every: int = 5_000
    """Env steps between evaluations (0: only at the end)."""
    eval_episodes: int = 20
    """Episodes per evaluation (run in parallel on separate envs)."""
    eval_epsilon: float = 0.0
    """Evaluations act at random with this probability at each step (a draw from the action space,
    seeded by the evaluation's seed), else greedily; 0: greedy. The ALE preset's is 0.05, the Nature
    DQN protocol: a greedy Breakout agent that never presses FIRE after a lost life waits for the
    108k-frame limit."""
    solved_threshold: float | None = None
    """Stop when this return is reached (see solve_on); None trains for total_steps."""
    solve_on: Literal["eval", "rolling"] = "eval"
    """eval: mean greedy evaluation return; rolling: mean of the last 100 training episodes."""
    checkpoint_every: int = 50_000
    """Env steps between periodic (resumable) checkpoints; 0: only best and, at the end, last."""
    save_buffer: bool = True
    """Save the replay buffer with the resumable checkpoint (needed for an exact resume)."""
    log_every: int = 1_000
    """Env steps between logged losses and speed (episode returns are logged as they end)."""
    torch_threads: int = 1
    """CPU threads for torch (small networks run fastest on 1); 0 keeps torch's default."""
    flush_denormal: bool = True
    """While training, the CPU treats denormal floats (below 1.2e-38) as zero (torch.set_flush_denormal;
    restored after). Adam's moments of weights whose gradient stays zero decay through that range,
    where x86 float math is ~15x slower: MinAtar Freeway's first 25k steps ran 1.45x faster with it,
    the C51 LunarLander preset 1.21x, each ending with the same evaluation as without. False keeps
    IEEE gradual underflow."""
    runs_dir: str = "runs"
    """Folder that holds run directories (runs/<env>-<algo>-<time>/)."""
    prefetch: bool = False
    """Sample the next batch in a background C++ thread (into pinned memory for CUDA) while the
    current one trains. Each batch is drawn one update earlier, before the newest transitions and
    priorities are written: deterministic for a seed, but not the same run as without prefetch, and
    a resume does not repeat the draw that was in flight at the checkpoint."""
    concurrent: bool = False
    """Collect and learn at once (the same as collectors=1): a child process steps the envs with a copy of the policy (synced every
    sync_every updates) while this one updates; updates per env step stay those of the sequential loop
    (rate-limited, see collect_ahead). Not bit-reproducible (the policy acting lags the learner by a
    few updates); a resume continues from the checkpoint's buffer, envs, counters and networks."""
    sync_every: int = 1
    """concurrent: updates between publishing the policy's weights to the collector."""
    collect_ahead: int = 0
    """concurrent: most env steps the collectors may run ahead of the learner's updates
    (0: max(2 * train_freq * num_envs, 64, 3 * collectors * collector_envs))."""
    collectors: int = 0
    """Collector processes (or Ray actors) stepping envs while this process learns, Ape-X style: each
    has its own collector_envs envs, seeds and exploration and sends chunks of transitions into this
    process's replay buffer. 0: the sequential loop; concurrent=true is collectors=1."""
    collector_backend: Literal["process", "ray"] = "process"
    """collectors: local processes (weights in shared memory) or Ray actors (weights in the object store)."""
    ray_address: str | None = None
    """collector_backend=ray: the cluster to join (None: start a local Ray instance)."""
    ray_resources: str | None = None
    """collector_backend=ray: custom Ray resources each collector actor needs, "name=amount[,...]"
    (e.g. "collector=1" places the actors on nodes started with ray start --resources='{"collector": 8}',
    away from the learner's node). None: any node, spread over the cluster."""
    collector_envs: int = 0
    """collectors: envs per collector (0: num_envs). The run has collectors * collector_envs env streams."""
    replay_ratio_mode: Literal["fixed", "free"] = "fixed"
    """collectors: fixed keeps the sequential loop's updates per env step (gradient_steps per
    train_freq * num_envs env steps); free updates as fast as the learner can (the ratio is logged)."""
    apex_epsilon: bool = False
    """collectors: Ape-X exploration, a fixed level per collector i of N: DQN epsilon
    0.4 ** (1 + 7 i / (N - 1)); DDPG / TD3 noise scale noise_sigma * 0.4 ** (7 i / (N - 1))."""
    collector_restarts: int = 3
    """collectors: restarts (fresh envs) allowed per collector that dies before the run fails."""

    @property
    def n_collectors(self) -> int:
        """Collectors this run uses: collectors, or 1 for concurrent=true."""
        return self.collectors if self.collectors else int(self.concurrent)

    @property
    def streams(self) -> int:
        """Env streams in the replay buffer: collectors * collector_envs, or num_envs."""
        n = self.n_collectors
        return n * (self.collector_envs or self.num_envs) if n else self.num_envs

    @property
    def replay_terminated_next(self) -> str:
        """``terminated_next_observations`` with "auto" resolved ("keep" or "zero")."""
        if self.terminated_next_observations != "auto":
            return self.terminated_next_observations
        return "zero" if self.env_options()["life_loss_terminal"] else "keep"

    def env_options(self) -> dict[str, bool]:
        """The training env's learning-signal options of ``make_env`` / ``make_vec_env``:
        ``life_loss_terminal`` (ALE games only) and ``clip_rewards`` (None resolved)."""
        atari = self.env_id.startswith("ALE/")
        clip = atari if self.clip_rewards is None else self.clip_rewards
        return {"life_loss_terminal": atari and self.atari_life_loss_terminal, "clip_rewards": clip}


# ---------------------------------------------------------------------------- field docs
@cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` for a config dataclass and its bases (attribute docstrings)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe(cls: type, config: Any | None = None) -> str:
    """One line per field: name, type, default (or the value in ``config``), docstring."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    lines = []
    for f in dataclasses.fields(cls):
        value = getattr(config, f.name) if config is not None else f.default
        lines.append(f"  {f.name} ({_type_name(hints[f.name])}, {_show(value)}): {docs.get(f.name, '')}")
    return "\n".join(lines)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "ints, comma-separated"
    return getattr(tp, "__name__", str(tp))


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    return str(v)


# ---------------------------------------------------------------------------- overrides
def parse_value(cls: type, key: str, value: Any) -> Any:
    """Convert ``value`` (a string from the command line, or a JSON value) to field ``key``'s type."""
    hints = typing.get_type_hints(cls)
    if key not in hints or key not in {f.name for f in dataclasses.fields(cls)}:
        known = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ConfigError(f"unknown config key {key!r}; valid keys: {known}")
    try:
        return _convert(hints[key], value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad value for {key}: {value!r} ({e}); expected {_type_name(hints[key])}") from None


def _convert(tp: Any, v: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if v not in args:
            raise ValueError(f"must be one of {', '.join(map(str, args))}")
        return v
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if v is None or (isinstance(v, str) and v.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, v)
            except (TypeError, ValueError):
                pass
        raise ValueError("no matching type")
    if origin is tuple:
        items = [x for x in v.replace(" ", "").split(",") if x] if isinstance(v, str) else list(v)
        return tuple(_convert(args[0], x) for x in items)
    if tp is bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(v, str) and v.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("not a boolean (use true/false)")
    if tp is int:
        if isinstance(v, bool):
            raise TypeError("not an int")
        if isinstance(v, str):
            f = float(v.replace("_", ""))
            if not f.is_integer():
                raise ValueError("not an integer")
            return int(f)
        if isinstance(v, float) and not v.is_integer():
            raise ValueError("not an integer")
        return int(v)
    if tp is float:
        if isinstance(v, bool):
            raise TypeError("not a number")
        return float(v)
    if tp is str:
        if not isinstance(v, str):
            raise TypeError("not a string")
        return v
    raise TypeError(f"unsupported field type {tp}")


def with_overrides(config: C, overrides: Mapping[str, Any]) -> C:
    """A copy of ``config`` with fields replaced; values may be strings (parsed) or typed values."""
    cls = type(config)
    changes = {k: parse_value(cls, k, v) for k, v in overrides.items()}
    try:
        return dataclasses.replace(config, **changes)  # type: ignore[type-var]
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (ConfigError if an item has no ``=``)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a config from :func:`to_dict` output, checking every key and value."""
    return with_overrides(cls(), data)


def check_bounds(
    cfg: Any, names: tuple[str, ...], low: float, *, strict: bool = False, high: float | None = None
) -> None:
    """ConfigError naming the first of ``names`` whose value is not >= ``low`` (> with ``strict``)
    and, with ``high``, <= ``high`` (NaN is never in range)."""
    for name in names:
        v = getattr(cfg, name)
        if not ((v > low if strict else v >= low) and (high is None or v <= high)):
            if high is None:
                want = f"{'>' if strict else '>='} {low:g}"
            else:
                want = f"in {'(' if strict else '['}{low:g}, {high:g}]"
            raise ConfigError(f"{name} must be {want}, got {v}")


def check_sizes(cfg: Any, names: tuple[str, ...]) -> None:
    """ConfigError naming the first of ``names`` (layer sizes) that is empty or not all positive."""
    for name in names:
        sizes = getattr(cfg, name)
        if not sizes or min(sizes) < 1:
            raise ConfigError(f"{name} must be positive ints, got {sizes}")


def check_schedule(make: Any, what: str) -> None:
    """``make()`` (a config's schedule factory), its ValueError as a ConfigError about ``what``."""
    try:
        make()
    except ValueError as e:
        raise ConfigError(f"{what} schedule: {e}") from None


def ray_resources(text: str) -> dict[str, float]:
    """``"name=amount[,name=amount...]"`` (the ray_resources setting) as a dict; ConfigError if malformed."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, eq, amount = part.strip().partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = math.nan
        if not eq or not name.strip() or not (math.isfinite(value) and value > 0):
            raise ConfigError(f'ray_resources must be "name=amount[,name=amount...]" with amounts > 0, got {text!r}')
        out[name.strip()] = value
    return out


def check_common(cfg: TrainConfig) -> None:
    """Range checks of the loop settings (ConfigError naming the field)."""
    check_bounds(
        cfg,
        (
            "total_steps",
            "num_envs",
            "buffer_size",
            "batch_size",
            "train_freq",
            "gradient_steps",
            "eval_episodes",
            "frame_stack",
            "log_every",
            "sync_every",
        ),
        1,
    )
    check_bounds(
        cfg,
        (
            "learning_starts",
            "eval_every",
            "checkpoint_every",
            "max_episode_steps",
            "torch_threads",
            "collect_ahead",
            "collectors",
            "collector_envs",
            "collector_restarts",
            "seed",
        ),
        0,
    )
    check_bounds(cfg, ("eval_epsilon",), 0, high=1)
    if cfg.vector_mode == "ale" and not cfg.env_id.startswith("ALE/"):
        raise ConfigError(f"vector_mode=ale is for ALE games (ALE/<Game>-v5), not {cfg.env_id!r}: use sync or async")
    if cfg.buffer_size < cfg.num_envs:
        raise ConfigError(f"buffer_size ({cfg.buffer_size}) must be >= num_envs ({cfg.num_envs})")
    if cfg.ray_resources is not None:
        ray_resources(cfg.ray_resources)
    if cfg.buffer_size < cfg.streams:
        raise ConfigError(
            f"buffer_size ({cfg.buffer_size}) must be >= collectors * collector_envs ({cfg.streams} env streams)"
        )
