"""Hyper-parameter sweeps: a grid or a random search over config fields, several seeds each.

``plan_sweep(...)`` expands the search and checks every configuration before any run starts
(ConfigError, one line); ``run_sweep(plan, ...)`` runs what is not finished yet, locally in worker
processes or on Ray, and writes the report (:mod:`fastrl.experiments.report`). A sweep directory holds:

    sweep.json                       the manifest: algorithm, env, configurations, seeds, run dirs
    c00_buffer_size=1000_.../seed0/  one run directory per configuration x seed, as `fastrl train`
                                     writes it, plus result.json (status, error, evaluations)
    runs.csv summary.csv curves.png heatmap.png    the report

Re-running the same sweep resumes it: runs whose result.json says ``ok`` are skipped, the others
resume from their checkpoints (failed runs are retried). A different sweep into the same
directory is refused.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import os
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastrl._util import write_text_atomic
from fastrl.config import ConfigError, parse_value, to_dict, with_overrides

FORMAT, VERSION = "fastrl-sweep", 1
MANIFEST = "sweep.json"
ALIASES = {"buffer_capacity": "buffer_size"}
"""Other names for config fields (the seed course's BUFFER_CAPACITY is fastrl's buffer_size)."""
NOT_SWEPT = {
    "env_id": "sweep one env at a time (the ENV argument): presets are per env",
    "seed": "seeds are set with --seeds (every configuration runs the same seeds)",
    "runs_dir": "run directories live in the sweep directory",
}


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
        return f"{_fmt(self.low)}:{_fmt(self.high)}" + (":log" if self.log else "")


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
        raise ConfigError(
            f"{flag}: unknown config key {key!r}{hint}; `fastrl train --help` lists the keys"
        )
    if key in NOT_SWEPT:
        raise ConfigError(f"{flag}: {key} cannot be swept: {NOT_SWEPT[key]}")
    return key


def _split_item(item: str, flag: str, form: str) -> tuple[str, str]:
    key, sep, rhs = item.partition("=")
    if not sep or not key.strip() or not rhs.strip():
        raise ConfigError(f"{flag} expects {form}, got {item!r}")
    return key.strip(), rhs.strip()


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
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, rhs = _split_item(item, "--grid", "key=v1,v2,...")
        key = canonical_key(cls, key, "--grid")
        if key in grid:
            raise ConfigError(f"--grid: {key} is given twice")
        grid[key] = _values(cls, key, rhs, "--grid")
    return grid


def parse_ranges(cls: type, items: Sequence[str]) -> dict[str, Dimension]:
    """``--range`` items: ``key=lo:hi`` (uniform), ``key=lo:hi:log`` (log-uniform; ints are
    rounded) or ``key=a,b,c`` (a choice)."""
    out: dict[str, Dimension] = {}
    for item in items:
        key, rhs = _split_item(item, "--range", "key=lo:hi[:log] or key=a,b,c")
        key = canonical_key(cls, key, "--range")
        if key in out:
            raise ConfigError(f"--range: {key} is given twice")
        if ":" not in rhs:
            out[key] = _values(cls, key, rhs, "--range")
            continue
        parts = [p.strip() for p in rhs.split(":")]
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise ConfigError(f"--range {key}: expected lo:hi or lo:hi:log, got {rhs!r}")
        tp = _field_type(cls, key)
        numeric = [a for a in (typing.get_args(tp) or (tp,)) if a in (int, float)]
        if not numeric or tp is bool:
            raise ConfigError(f"--range {key}: not a numeric field; give a choice list a,b,c")
        try:
            lo, hi = (float(parse_value(cls, key, p)) for p in parts[:2])
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"--range: {e}") from None
        log = len(parts) == 3
        if not lo < hi:
            raise ConfigError(f"--range {key}: low {parts[0]} must be < high {parts[1]}")
        if log and lo <= 0:
            raise ConfigError(f"--range {key}: a log range needs low > 0, got {parts[0]}")
        out[key] = Range(lo, hi, log, integer=numeric[0] is int)
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
        p = {
            k: d.sample(rng) if isinstance(d, Range) else d[int(rng.integers(len(d)))]
            for k, d in space.items()
        }
        if repr(p) not in seen:
            seen.add(repr(p))
            points.append(p)
    if len(points) < n:
        raise ConfigError(
            f"--random {n}: the space has only {len(points)} distinct configurations; "
            "ask for fewer or use --grid"
        )
    return points


# ---------------------------------------------------------------------------- the plan
@dataclass
class SweepPlan:
    """An expanded, checked sweep: ``configs[i]`` (seed = the first seed) runs with every seed."""

    algo: str
    env_id: str
    out: Path
    mode: Literal["grid", "random", "seeds"]
    keys: list[str]
    points: list[dict[str, Any]]
    configs: list[Any]
    seeds: list[int]
    spec: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return [_label(i, p) for i, p in enumerate(self.points)]

    def tasks(self, tensorboard: bool = True) -> list[dict[str, Any]]:
        """One task per configuration x seed (see :mod:`fastrl.experiments.executors`)."""
        out = []
        for label, cfg in zip(self.labels, self.configs):
            for s in self.seeds:
                out.append({
                    "id": f"{label}/seed{s}",
                    "algo": self.algo,
                    "config": to_dict(dataclasses.replace(cfg, seed=s)),
                    "run_dir": str((self.out / label / f"seed{s}").resolve()),
                    "tensorboard": tensorboard,
                })
        return out

    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "algo": self.algo,
            "env_id": self.env_id,
            "mode": self.mode,
            "keys": self.keys,
            "spec": self.spec,
            "seeds": self.seeds,
            "configs": [
                {"label": lb, "params": _jsonable(p), "config": to_dict(c)}
                for lb, p, c in zip(self.labels, self.points, self.configs)
            ],
        }


def plan_sweep(
    algo: str,
    env_id: str,
    *,
    grid: Mapping[str, Sequence[Any]] | Sequence[str] = (),
    ranges: Mapping[str, Dimension] | Sequence[str] = (),
    random: int = 0,
    search_seed: int = 0,
    seeds: int = 1,
    steps: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
) -> SweepPlan:
    """Expand and check a sweep; nothing runs. ``grid``/``ranges`` take parsed dicts or the CLI
    strings. Without ``random`` the grid is crossed; with it, ``random`` points are drawn from the
    grid's lists (as choices) and the ranges. Seeds are ``seed, seed + 1, ...`` of the base config.
    """
    from fastrl.training.envs import make_env
    from fastrl.agents.presets import preset

    base = preset(algo, env_id)
    cls = type(base)
    sets = {ALIASES.get(k, k): v for k, v in (overrides or {}).items()}
    if "env_id" in sets:
        raise ConfigError("--set env_id: give the env as the ENV argument")
    if steps is not None:
        sets["total_steps"] = steps
    base = with_overrides(base, sets)
    if "checkpoint_every" not in sets:  # interrupted runs resume from at most a tenth back
        every = max(1_000, base.total_steps // 10)
        base = dataclasses.replace(base, checkpoint_every=min(base.checkpoint_every, every))
    g = parse_grid(cls, grid) if _is_items(grid) else _typed(cls, grid, "--grid")  # type: ignore[arg-type]
    r = parse_ranges(cls, ranges) if _is_items(ranges) else _typed_space(cls, ranges)  # type: ignore[arg-type]
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    overlap = set(g) & set(r)
    if overlap:
        raise ConfigError(f"{', '.join(sorted(overlap))} given in both --grid and --range")
    if random < 0:
        raise ConfigError(f"--random must be >= 1, got {random}")
    if r and not random:
        raise ConfigError("--range needs --random N (how many configurations to draw)")
    spec: dict[str, Any] = {"grid": {k: _jsonable(v) for k, v in g.items()}}
    if random:
        space: dict[str, Dimension] = {**g, **r}
        if not space:
            raise ConfigError("--random needs at least one --range or --grid to draw from")
        points = random_points(space, random, search_seed)
        mode: Literal["grid", "random", "seeds"] = "random"
        spec.update(ranges={k: d.spec() if isinstance(d, Range) else _jsonable(d)
                            for k, d in r.items()}, random=random, search_seed=search_seed)
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
            where = " ".join(f"{k}={_fmt(v)}" for k, v in p.items()) or "the base configuration"
            raise ConfigError(f"{where}: {e}") from None
        configs.append(cfg)
    make_env(env_id).close()  # an unknown env fails here, not in every run
    seed_list = [base.seed + i for i in range(seeds)]
    plan = SweepPlan(algo, env_id, Path("."), mode, keys, points, configs, seed_list, spec)
    plan.out = Path(out) if out is not None else Path("sweeps") / f"{env_id}-{algo}-{_digest(plan)}"
    return plan


def _is_items(x: Any) -> bool:
    return not isinstance(x, Mapping)


def _typed(cls: type, grid: Mapping[str, Sequence[Any]], flag: str) -> dict[str, list[Any]]:
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


def _digest(plan: SweepPlan) -> str:
    m = plan.manifest()
    return hashlib.blake2b(json.dumps(m, sort_keys=True).encode(), digest_size=4).hexdigest()


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "x".join(map(str, v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _label(i: int, params: Mapping[str, Any]) -> str:
    parts = [f"{k}={_fmt(v)}" for k, v in params.items()]
    label = "_".join([f"c{i:02d}", *parts])
    safe = "".join(ch if ch.isalnum() or ch in "._=+-" else "-" for ch in label)
    return safe if len(safe) <= 100 else f"c{i:02d}"


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


# ---------------------------------------------------------------------------- manifest
def load_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    path = Path(sweep_dir) / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{sweep_dir}: not a sweep directory (no {MANIFEST})") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("version") != VERSION:
        raise ConfigError(f"{path}: not a fastrl sweep manifest (version {VERSION})")
    return m


def _describe(m: Mapping[str, Any]) -> str:
    spec = m["spec"]
    parts = [f"{k}={','.join(map(_fmt, v))}" for k, v in spec.get("grid", {}).items()]
    if m["mode"] == "random":
        parts = [f"--random {spec['random']}"] + parts + [
            f"{k}={v if isinstance(v, str) else ','.join(map(_fmt, v))}"
            for k, v in spec.get("ranges", {}).items()
        ]
    return f"{m['algo']} {m['env_id']} {' '.join(parts) or '(no grid)'}, {len(m['seeds'])} seeds"


def _difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    for key in ("algo", "env_id", "mode", "keys", "spec", "seeds"):
        if old.get(key) != new.get(key):
            return f"it holds {_describe(old)}; this is {_describe(new)}"
    if len(old["configs"]) != len(new["configs"]):
        return f"it holds {len(old['configs'])} configurations; this sweep has {len(new['configs'])}"
    for a, b in zip(old["configs"], new["configs"]):
        for k in sorted(set(a["config"]) | set(b["config"])):
            if a["config"].get(k) != b["config"].get(k):
                return (f"its runs have {k}={a['config'].get(k)!r}, this sweep's "
                        f"{b['config'].get(k)!r}")
    return "its configurations differ"


def prepare_dir(plan: SweepPlan) -> None:
    """Write the manifest, or check that the one there describes this same sweep."""
    new = plan.manifest()
    path = plan.out / MANIFEST
    if path.exists():
        old = load_manifest(plan.out)
        comparable = {k: v for k, v in old.items() if k != "created"}
        if comparable != new:
            raise ConfigError(
                f"{plan.out} holds a different sweep ({_difference(old, new)}); "
                "use another --out or delete that directory"
            )
        return
    if plan.out.exists() and any(plan.out.iterdir()):
        raise ConfigError(f"{plan.out} exists and is not a sweep directory; use another --out")
    plan.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(new, indent=1))


# ---------------------------------------------------------------------------- running
def run_sweep(
    plan: SweepPlan,
    *,
    executor: Literal["local", "ray"] = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    tensorboard: bool = True,
    threshold: float | None = None,
    metric: str = "auc",
    log: Callable[[str], None] = print,
) -> Any:
    """Run every unfinished run of ``plan``, then write the report; returns the
    :class:`fastrl.experiments.report.Report`. Finished runs are skipped, interrupted ones resume."""
    from fastrl.experiments.executors import read_result, run_local, run_ray
    from fastrl.experiments.report import check_metric, write_report

    check_metric(metric)
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}; use local or ray")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    prepare_dir(plan)
    tasks = plan.tasks(tensorboard)
    todo, done, resume = [], 0, 0
    for t in tasks:
        r = read_result(Path(t["run_dir"]))
        if r is not None and r["status"] == "ok":
            done += 1
            continue
        todo.append(t)
        resume += (Path(t["run_dir"]) / "checkpoints" / "last.pt").is_file()
    n_workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                            else os.cpu_count() or 1)
    if executor == "local":
        n_workers = max(1, min(n_workers, len(todo)))
    where = (f"Ray at {ray_address}" if ray_address else f"local Ray, {n_workers} CPUs") \
        if executor == "ray" else f"{n_workers} local worker{'s' * (n_workers > 1)}"
    log(f"sweep {plan.out}: {len(tasks)} runs ({len(plan.configs)} configurations x "
        f"{len(plan.seeds)} seeds); {done} finished (skipped), {resume} to resume, "
        f"{len(todo) - resume} new; {where}")
    count = [done]

    def on_result(task: dict[str, Any], result: dict[str, Any]) -> None:
        count[0] += 1
        evals = result.get("evals") or []
        if result["status"] == "ok":
            what = (f"final {evals[-1]['mean']:.1f}, best {max(e['mean'] for e in evals):.1f}"
                    if evals else "no evaluation")
        else:
            what = f"FAILED: {result['error']}"
        resumed = f", resumed at {result['resumed_from']}" if result.get("resumed_from") else ""
        log(f"[{count[0]}/{len(tasks)}] {task['id']}: {what} "
            f"({result.get('wall_seconds', 0.0):.1f} s{resumed})")

    if todo:
        if executor == "ray":
            run_ray(todo, workers, ray_address, on_result)
        else:
            run_local(todo, n_workers, on_result)
    return write_report(plan.out, threshold=threshold, metric=metric)


__all__ = ["ALIASES", "Range", "SweepPlan", "grid_points", "load_manifest", "parse_grid",
           "parse_ranges", "plan_sweep", "random_points", "run_sweep"]


# ---------------------------------------------------------------------------- command line
def add_parser(sub: Any) -> None:
    """The ``fastrl sweep`` subcommand (``sub``: the CLI's subparsers)."""
    import argparse

    s = sub.add_parser(
        "sweep",
        help="grid or random search over config fields, several seeds each",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every configuration x seed as its own training run (several at a time), "
        "then write summary.csv, runs.csv, curves.png and, for 2-D grids, heatmap.png into the "
        "sweep directory. Re-running the same command resumes the sweep.",
        epilog="examples:\n"
        "  fastrl sweep dqn CartPole-v1 --grid buffer_size=1000,10000,100000 "
        "--grid target_update_interval=10,100,1000 --seeds 3 --steps 20000 --out sweeps/grid\n"
        "  fastrl sweep dqn CartPole-v1 --random 8 --range learning_rate=1e-4:1e-2:log "
        "--range batch_size=32,64,128 --seeds 2\n"
        "  fastrl sweep --report sweeps/grid --metric steps_to_threshold\n"
        "values: v1,v2,... (tuple fields such as hidden_sizes: 64,64;128,128 - quote the ';'); "
        "buffer_capacity is accepted for buffer_size",
    )
    s.add_argument("algo", nargs="?", default="dqn", help="algorithm (default: dqn)")
    s.add_argument("env_id", nargs="?", default="CartPole-v1", help="gymnasium env id")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of one config field (repeat for more fields: their product)")
    s.add_argument("--random", type=int, default=0, metavar="N",
                   help="random search: draw N configurations from --range and --grid")
    s.add_argument("--range", action="append", default=[], metavar="KEY=LO:HI[:log]|A,B,...",
                   help="a range (uniform, or log-uniform) or a choice list for --random")
    s.add_argument("--search-seed", type=int, default=0, help="seed of the random search")
    s.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="seeds per configuration: seed, seed+1, ... (default 1)")
    s.add_argument("--steps", type=int, help="env steps per run (config total_steps)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a config field in every run")
    s.add_argument("--workers", type=int, help="runs at a time (default: CPU cores)")
    s.add_argument("--executor", choices=["local", "ray"], default="local")
    s.add_argument("--ray-address", help="Ray cluster address (default: a new local instance)")
    s.add_argument("--out", help="sweep directory (default: sweeps/<env>-<algo>-<hash of sweep>)")
    s.add_argument("--threshold", type=float,
                   help="return for steps/seconds to threshold (default: solved_threshold)")
    s.add_argument("--metric", default="auc",
                   help="heatmap metric and ranking: auc (default), final, best, steps_to_threshold, "
                   "seconds_to_threshold")
    s.add_argument("--no-tensorboard", action="store_true", help="CSV logs only")
    s.add_argument("--dry-run", action="store_true", help="print the runs and exit")
    s.add_argument("--report", metavar="DIR", help="redraw the report of a sweep directory")


def cmd_sweep(args: Any) -> int:
    from fastrl.config import parse_assignments
    from fastrl.experiments.report import check_metric, format_table, write_report

    check_metric(args.metric)
    if args.report and (args.grid or args.range or args.random or args.set or args.steps):
        raise ConfigError("--report redraws an existing sweep: give it no --grid, --range, "
                          "--random, --set or --steps")
    if args.report:
        report = write_report(args.report, threshold=args.threshold, metric=args.metric)
    else:
        plan = plan_sweep(
            args.algo, args.env_id, grid=args.grid, ranges=args.range, random=args.random,
            search_seed=args.search_seed, seeds=args.seeds, steps=args.steps,
            overrides=parse_assignments(args.set), out=args.out,
        )
        if args.dry_run:
            for t in plan.tasks():
                print(t["id"])
            print(f"{len(plan.configs)} configurations x {len(plan.seeds)} seeds into {plan.out}")
            return 0
        try:
            report = run_sweep(
                plan, executor=args.executor, workers=args.workers, ray_address=args.ray_address,
                tensorboard=not args.no_tensorboard, threshold=args.threshold, metric=args.metric,
            )
        except KeyboardInterrupt:
            print(f"fastrl: interrupted; run the same command again to resume the sweep in "
                  f"{plan.out}", file=__import__("sys").stderr)
            return 130
    print(format_table(report))
    best = report.best()
    if best is not None:
        print(f"best by {report.metric}: {best['label']}")
    failed = sum(r["status"] == "failed" for r in report.runs)
    if failed:
        print(f"{failed} run(s) failed: see the status and error columns of runs.csv")
    print("report: " + " ".join(str(f) for f in report.files))
    return 0
