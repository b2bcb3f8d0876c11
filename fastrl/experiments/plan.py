"""What a sweep is: its search space parsed from the CLI strings (or given as dicts), expanded into
points (a grid's product or a seeded random search) and checked into a :class:`SweepPlan`.

Pure configuration work: nothing here makes an env, touches the disk or runs anything (the entry
points that do are in :mod:`fastrl.experiments.sweep`).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastrl.agents.presets import preset
from fastrl.config import ConfigError, parse_value, to_dict, with_overrides

ALIASES = {"buffer_capacity": "buffer_size"}
"""Other names for config fields (the seed course's BUFFER_CAPACITY is fastrl's buffer_size)."""
NOT_SWEPT = {
    "env_id": "sweep one env at a time (the ENV argument): presets are per env",
    "seed": "seeds are set with --seeds (every configuration runs the same seeds)",
    "runs_dir": "run directories live in the sweep directory",
}
Mode = Literal["grid", "random", "seeds"]


@dataclass(frozen=True)
class Range:
    """A numeric range for random search: uniform in [low, high], or log-uniform if ``log``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def sample(self, rng: np.random.Generator) -> float | int:
        if self.log:
            x = float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
        else:
            x = float(rng.uniform(self.low, self.high))
        if self.integer:
            return int(min(max(round(x), self.low), self.high))
        return float(f"{x:.3g}")  # readable values in tables and directory names

    def spec(self) -> str:
        return f"{fmt_value(self.low)}:{fmt_value(self.high)}" + (":log" if self.log else "")


Dimension = list[Any] | Range


# ---------------------------------------------------------------------------- parsing
def _field_type(cls: type, key: str) -> Any:
    return typing.get_type_hints(cls)[key]


def canonical_key(cls: type, key: str, flag: str = "--grid") -> str:
    """The config field ``key`` names (aliases resolved); ConfigError for unknown or unsweepable keys."""
    key = ALIASES.get(key.strip(), key.strip())
    names = [f.name for f in dataclasses.fields(cls)]
    if key not in names:
        close = difflib.get_close_matches(key, names + list(ALIASES), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{flag}: unknown config key {key!r}{hint}; `fastrl train --help` lists the keys")
    if key in NOT_SWEPT:
        raise ConfigError(f"{flag}: {key} cannot be swept: {NOT_SWEPT[key]}")
    return key


def _assignments(cls: type, items: Sequence[str], flag: str, form: str) -> Iterator[tuple[str, str]]:
    """``key=rhs`` items as (config field, rhs), each field at most once."""
    seen: set[str] = set()
    for item in items:
        key, sep, rhs = item.partition("=")
        if not sep or not key.strip() or not rhs.strip():
            raise ConfigError(f"{flag} expects {form}, got {item!r}")
        key = canonical_key(cls, key, flag)
        if key in seen:
            raise ConfigError(f"{flag}: {key} is given twice")
        seen.add(key)
        yield key, rhs.strip()


def _values(cls: type, key: str, rhs: str, flag: str) -> list[Any]:
    """``v1,v2,...`` parsed to the field's type (tuple fields: alternatives separated by ``;``)."""
    sep = ";" if typing.get_origin(_field_type(cls, key)) is tuple else ","
    parts = [p.strip() for p in rhs.split(sep)]
    if any(not p for p in parts):
        raise ConfigError(f"{flag} {key}: empty value in {rhs!r} (values are separated by {sep!r})")
    values = []
    for p in parts:
        try:
            values.append(parse_value(cls, key, p))
        except ConfigError as e:
            raise ConfigError(f"{flag}: {e}") from None
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(f"{flag} {key}: a value is repeated in {rhs!r}")
    return values


def parse_grid(cls: type, items: Sequence[str]) -> dict[str, list[Any]]:
    """``["buffer_size=1000,10000", "tau=1,0.5"]`` -> ``{"buffer_size": [1000, 10000], ...}``."""
    return {key: _values(cls, key, rhs, "--grid") for key, rhs in _assignments(cls, items, "--grid", "key=v1,v2,...")}


def parse_ranges(cls: type, items: Sequence[str], flag: str = "--range") -> dict[str, Dimension]:
    """``--range`` items: ``key=lo:hi`` (uniform), ``key=lo:hi:log`` (log-uniform; ints are
    rounded) or ``key=a,b,c`` (a choice)."""
    out: dict[str, Dimension] = {}
    for key, rhs in _assignments(cls, items, flag, "key=lo:hi[:log] or key=a,b,c"):
        if ":" not in rhs:
            out[key] = _values(cls, key, rhs, flag)
            continue
        parts = [p.strip() for p in rhs.split(":")]
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise ConfigError(f"{flag} {key}: expected lo:hi or lo:hi:log, got {rhs!r}")
        tp = _field_type(cls, key)
        numeric = [a for a in (typing.get_args(tp) or (tp,)) if a in (int, float)]
        if not numeric or tp is bool:
            raise ConfigError(f"{flag} {key}: not a numeric field; give a choice list a,b,c")
        try:
            lo, hi = (float(parse_value(cls, key, p)) for p in parts[:2])
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{flag}: {e}") from None
        log = len(parts) == 3
        if not lo < hi:
            raise ConfigError(f"{flag} {key}: low {parts[0]} must be < high {parts[1]}")
        if log and lo <= 0:
            raise ConfigError(f"{flag} {key}: a log range needs low > 0, got {parts[0]}")
        out[key] = Range(lo, hi, log, integer=numeric[0] is int)
    return out


def _typed(cls: type, grid: Mapping[str, Sequence[Any]], flag: str) -> dict[str, list[Any]]:
    """A grid given as a dict: keys resolved, values parsed to the fields' types."""
    out: dict[str, list[Any]] = {}
    for k, vs in grid.items():
        key = canonical_key(cls, k, flag)
        vals = [parse_value(cls, key, v) for v in (vs if isinstance(vs, (list, tuple)) else [vs])]
        if not vals:
            raise ConfigError(f"{flag} {key}: no values")
        out[key] = vals
    return out


def _typed_space(cls: type, space: Mapping[str, Dimension]) -> dict[str, Dimension]:
    out: dict[str, Dimension] = {}
    for k, d in space.items():
        key = canonical_key(cls, k, "--range")
        out[key] = d if isinstance(d, Range) else _typed(cls, {key: d}, "--range")[key]
    return out


# ---------------------------------------------------------------------------- expansion
def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last key varying fastest (``itertools.product`` order)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def random_points(space: Mapping[str, Dimension], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct points drawn from ``space`` (choice lists uniformly, ranges as declared) by
    a generator seeded with ``seed``: the same call gives the same points."""
    rng = np.random.default_rng(seed)
    points: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(100 * n):
        if len(points) == n:
            break
        p = {k: d.sample(rng) if isinstance(d, Range) else d[int(rng.integers(len(d)))] for k, d in space.items()}
        if repr(p) not in seen:
            seen.add(repr(p))
            points.append(p)
    if len(points) < n:
        raise ConfigError(
            f"--random {n}: the space has only {len(points)} distinct configurations; ask for fewer or use --grid"
        )
    return points


# ---------------------------------------------------------------------------- the plan
@dataclass
class SweepPlan:
    """An expanded, checked sweep: ``configs[i]`` (seed = the first seed) runs with every seed."""

    algo: str
    env_id: str
    out: Path
    mode: Mode
    keys: list[str]
    points: list[dict[str, Any]]
    configs: list[Any]
    seeds: list[int]
    spec: dict[str, Any]
    preset: str = "default"
    """The named preset the configurations start from (``fastrl sweep --preset``)."""

    @property
    def labels(self) -> list[str]:
        return [_label(i, p) for i, p in enumerate(self.points)]

    def tasks(self, tensorboard: bool = True) -> list[dict[str, Any]]:
        """One task per configuration x seed (see :mod:`fastrl.experiments.executors`)."""
        out = []
        for label, cfg in zip(self.labels, self.configs):
            for s in self.seeds:
                out.append(
                    {
                        "id": f"{label}/seed{s}",
                        "algo": self.algo,
                        "config": to_dict(dataclasses.replace(cfg, seed=s)),
                        "run_dir": str((self.out / label / f"seed{s}").resolve()),
                        "tensorboard": tensorboard,
                    }
                )
        return out


def expand(
    algo: str,
    env_id: str,
    base: Any,
    grid: Mapping[str, Sequence[Any]] | Sequence[str],
    ranges: Mapping[str, Dimension] | Sequence[str],
    random: int,
    search_seed: int,
    seeds: int,
) -> SweepPlan:
    """The plan of a sweep around the config ``base`` (env and overrides already in it), every
    configuration checked; ``out`` is left for the caller to set."""
    cls = type(base)
    g = _typed(cls, grid, "--grid") if isinstance(grid, Mapping) else parse_grid(cls, grid)
    r = _typed_space(cls, ranges) if isinstance(ranges, Mapping) else parse_ranges(cls, ranges)
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    overlap = set(g) & set(r)
    if overlap:
        raise ConfigError(f"{', '.join(sorted(overlap))} given in both --grid and --range")
    if random < 0:
        raise ConfigError(f"--random must be >= 1, got {random}")
    if r and not random:
        raise ConfigError("--range needs --random N (how many configurations to draw)")
    spec: dict[str, Any] = {"grid": {k: jsonable(v) for k, v in g.items()}}
    mode: Mode
    if random:
        space: dict[str, Dimension] = {**g, **r}
        if not space:
            raise ConfigError("--random needs at least one --range or --grid to draw from")
        points = random_points(space, random, search_seed)
        mode = "random"
        spec.update(
            ranges={k: d.spec() if isinstance(d, Range) else jsonable(d) for k, d in r.items()},
            random=random,
            search_seed=search_seed,
        )
        keys = list(space)
    else:
        points = grid_points(g) if g else [{}]
        mode = "grid" if g else "seeds"
        keys = list(g)
    configs = []
    for p in points:
        try:
            cfg = dataclasses.replace(base, **p)
            cfg.check()
        except (ConfigError, TypeError, ValueError) as e:
            where = " ".join(f"{k}={fmt_value(v)}" for k, v in p.items()) or "the base configuration"
            raise ConfigError(f"{where}: {e}") from None
        configs.append(cfg)
    seed_list = [base.seed + i for i in range(seeds)]
    return SweepPlan(algo, env_id, Path("."), mode, keys, points, configs, seed_list, spec)


# ---------------------------------------------------------------------------- names
def fmt_value(v: Any) -> str:
    """A value as it appears in labels and messages (``(64, 64)`` -> ``64x64``, ``1e-3`` -> ``0.001``)."""
    if isinstance(v, tuple):
        return "x".join(map(str, v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _label(i: int, params: Mapping[str, Any]) -> str:
    parts = [f"{k}={fmt_value(v)}" for k, v in params.items()]
    label = "_".join([f"c{i:02d}", *parts])
    safe = "".join(ch if ch.isalnum() or ch in "._=+-" else "-" for ch in label)
    return safe if len(safe) <= 100 else f"c{i:02d}"


def preset_entry(name: str) -> dict[str, str]:
    """A manifest's record of the named preset a plan starts from: none for ``default``, so the
    manifests of sweeps and searches made before ``--preset`` existed still match (and resume)."""
    return {"preset": name} if name != "default" else {}


def base_config(
    algo: str, env_id: str, overrides: Mapping[str, Any] | None, steps: int | None, preset_name: str = "default"
) -> Any:
    """The preset ``preset_name`` of ``algo`` on ``env_id`` with the ``--set`` overrides (aliases
    resolved) and ``--steps``; checkpoints every tenth of the run at most (at least every 1,000 steps) unless
    ``checkpoint_every`` is set, so an interrupted run resumes from at most a tenth back."""
    sets = {ALIASES.get(k, k): v for k, v in (overrides or {}).items()}
    if "env_id" in sets:
        raise ConfigError("--set env_id: give the env as the ENV argument")
    if steps is not None:
        sets["total_steps"] = steps
    base = with_overrides(preset(algo, env_id, preset_name), sets)
    if "checkpoint_every" not in sets:
        every = max(1_000, base.total_steps // 10)
        base = dataclasses.replace(base, checkpoint_every=min(base.checkpoint_every, every))
    return base


def jsonable(v: Any) -> Any:
    """Tuples (in dicts and lists too) as lists, as JSON holds them."""
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


__all__ = [
    "ALIASES",
    "Dimension",
    "Range",
    "SweepPlan",
    "base_config",
    "canonical_key",
    "expand",
    "fmt_value",
    "grid_points",
    "jsonable",
    "parse_grid",
    "parse_ranges",
    "random_points",
]
