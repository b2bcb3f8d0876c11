"""The ``fastrl`` command: ``train``, ``eval``, ``plot`` and ``sweep``; it only parses and calls.

fastrl train                              DQN on CartPole-v1 with its preset
fastrl train dqn LunarLander-v3 --seed 1  another env, another seed
fastrl train --set learning_rate=3e-4 --set dueling=true
fastrl train sail-dqn CartPole-v1         SAIL-DQN (DQN with the self-imitation bonus)
fastrl train rainbow LunarLander-v3       Rainbow; c51, qr-dqn for one distributional head
fastrl train ddpg Pendulum-v1             DDPG; td3 for TD3
fastrl train --resume runs/CartPole-v1-dqn-20250101-120000
fastrl eval runs/CartPole-v1-dqn-20250101-120000 --episodes 20 --video
fastrl plot runs/A runs/B --out curves.png
fastrl sweep dqn CartPole-v1 --grid buffer_size=1000,10000 --seeds 3 --steps 20000
fastrl tune dqn CartPole-v1 --trials 32 --param learning_rate=1e-4:1e-2:log --seeds 2 --steps 20000
fastrl train --config tunes/CartPole-v1-dqn-0123abcd/best.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastrl.agents import ALGOS, default_config, preset
from fastrl.config import ConfigError, describe, parse_assignments, to_dict, with_overrides
from fastrl.experiments.plan import fmt_value
from fastrl.experiments.report import check_metric, format_table, write_report
from fastrl.experiments.sweep import plan_sweep, run_sweep
from fastrl.experiments.tune import plan_tune, run_tune
from fastrl.experiments.tune_report import format_tune_table
from fastrl.training import checkpoint
from fastrl.training.checkpoint import CheckpointError, saved_run
from fastrl.training.envs import evaluate, make_env
from fastrl.training.evaluation import load_agent, record_video
from fastrl.training.plots import plot_runs
from fastrl.training.trainer import Trainer


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit status 2, like argparse but shorter
        raise ConfigError(message)


def _fields_help() -> str:
    parts: list[str] = []
    described: dict[type, str] = {}
    for name, (cls, _, defaults) in ALGOS.items():
        if cls in described:  # same fields as an earlier name, other defaults
            changed = ", ".join(f"{k}={v}" for k, v in defaults.items())
            parts.append(f"{name} config fields: those of {described[cls]}, with {changed}")
            continue
        described[cls] = name
        parts.append(f"{name} config fields (--set key=value; defaults shown, presets override some):\n{describe(cls)}")
    return "\n\n".join(parts)


PRESET_HELP = (
    "which preset of ALGO on ENV: default, or a named one (m-dqn: the Munchausen-DQN paper's settings for ALE games)"
)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fastrl", description="Train, evaluate and plot DQN-family and DDPG / TD3 agents.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        help="train an agent",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an agent; a run directory runs/<env>-<algo>-<time>/ gets the config, "
        "TensorBoard events, metrics.csv, checkpoints and a PNG plot.",
        epilog=_fields_help(),
    )
    t.add_argument("algo", nargs="?", default=None, help=f"algorithm: {', '.join(ALGOS)} (default: dqn, or --config's)")
    t.add_argument(
        "env_id",
        nargs="?",
        default=None,
        help="gymnasium env id (default: CartPole-v1 for the DQN family, Pendulum-v1 for ddpg / td3)",
    )
    t.add_argument("--steps", type=int, help="total env steps (config total_steps)")
    t.add_argument("--seed", type=int, help="random seed")
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set any config field")
    t.add_argument("--preset", default="default", metavar="NAME", help=PRESET_HELP)
    t.add_argument(
        "--config",
        metavar="FILE",
        help="a JSON config ({\"algo\": ..., field: value, ...}, e.g. a tune's best.json or a run's config.json) "
        "applied over the preset; ENV, --steps, --seed, --device and --set override it",
    )
    t.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a run (directory or checkpoint) from its last checkpoint",
    )
    t.add_argument("--run-dir", help="write the run here instead of runs/<env>-<algo>-<time>/")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    e = sub.add_parser("eval", help="evaluate a trained agent (greedy, or as its run's eval_epsilon says)")
    e.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    e.add_argument("--episodes", type=int, default=20)
    e.add_argument("--seed", type=int, default=12345)
    e.add_argument(
        "--epsilon",
        type=float,
        help="probability of a random action at each step (default: the run's eval_epsilon; 0 is greedy)",
    )
    e.add_argument("--device", default="cpu")
    e.add_argument(
        "--video",
        action="store_true",
        help="record the first episode (MP4 with imageio-ffmpeg, else GIF)",
    )
    e.add_argument("--video-path", help="where to write the video (default: next to the checkpoint)")
    e.add_argument(
        "--checkpoint",
        default="best",
        choices=["best", "last"],
        help="which checkpoint of a run directory (default: best)",
    )

    pl = sub.add_parser("plot", help="learning curves of one or more runs in one PNG")
    pl.add_argument("runs", nargs="+", metavar="RUN")
    pl.add_argument("--out", help="PNG path (default: <first run>/curves.png, or curves.png for several)")
    _add_sweep_parser(sub)
    _add_tune_parser(sub)
    return p


def _add_sweep_parser(sub: Any) -> None:
    """The ``fastrl sweep`` subcommand (``sub``: the subparsers of :func:`build_parser`)."""
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
    s.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values of one config field (repeat for more fields: their product)",
    )
    s.add_argument(
        "--random",
        type=int,
        default=0,
        metavar="N",
        help="random search: draw N configurations from --range and --grid",
    )
    s.add_argument(
        "--range",
        action="append",
        default=[],
        metavar="KEY=LO:HI[:log]|A,B,...",
        help="a range (uniform, or log-uniform) or a choice list for --random",
    )
    s.add_argument("--search-seed", type=int, default=0, help="seed of the random search")
    s.add_argument(
        "--seeds", type=int, default=1, metavar="K", help="seeds per configuration: seed, seed+1, ... (default 1)"
    )
    s.add_argument("--steps", type=int, help="env steps per run (config total_steps)")
    s.add_argument("--preset", default="default", metavar="NAME", help=PRESET_HELP)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a config field in every run")
    s.add_argument("--workers", type=int, help="runs at a time (default: CPU cores)")
    s.add_argument("--executor", choices=["local", "ray"], default="local")
    s.add_argument("--ray-address", help="Ray cluster address (default: a new local instance)")
    s.add_argument("--out", help="sweep directory (default: sweeps/<env>-<algo>-<hash of sweep>)")
    s.add_argument("--threshold", type=float, help="return for steps/seconds to threshold (default: solved_threshold)")
    s.add_argument(
        "--metric",
        default="auc",
        help="heatmap metric and ranking: auc (default), final, best, steps_to_threshold, seconds_to_threshold",
    )
    s.add_argument("--no-tensorboard", action="store_true", help="CSV logs only")
    s.add_argument("--dry-run", action="store_true", help="print the runs and exit")
    s.add_argument("--report", metavar="DIR", help="redraw the report of a sweep directory")


def _add_tune_parser(sub: Any) -> None:
    """The ``fastrl tune`` subcommand (``sub``: the subparsers of :func:`build_parser`)."""
    s = sub.add_parser(
        "tune",
        help="hyper-parameter search with Optuna (TPE, pruning, resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Search config fields with Optuna's TPE sampler. Each trial trains its seeds in lockstep\n"
        "in one worker and reports the mean over seeds after each round of greedy evaluations, so the\n"
        "pruner can stop it early. The study lives in DIR/study.db; re-running the same command resumes\n"
        "it (interrupted trials re-run; --trials may grow); a different search into DIR is refused.\n"
        "Writes trials.csv, best.json (for fastrl train --config), optimization_history.png,\n"
        'param_importances.png and best_curves.png. Needs Optuna: pip install "fastrl[tune]".',
        epilog="examples:\n"
        "  fastrl tune dqn CartPole-v1 --trials 32 --param learning_rate=1e-4:1e-2:log "
        "--param batch_size=32,64,128 --seeds 2 --steps 20000 --workers 2 --out tunes/cp\n"
        "  fastrl train --config tunes/cp/best.json --seed 10\n"
        "params: key=lo:hi (uniform; ints stay ints), key=lo:hi:log (log-uniform, lo > 0), key=a,b,c (a choice; "
        "tuple fields such as hidden_sizes: 64,64;128,128)",
    )
    s.add_argument("algo", nargs="?", default="dqn", help="algorithm (default: dqn)")
    s.add_argument("env_id", nargs="?", default="CartPole-v1", help="gymnasium env id")
    s.add_argument(
        "--trials", type=int, required=True, metavar="N", help="trials to finish (complete, pruned or failed)"
    )
    s.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=LO:HI[:log]|A,B,...",
        help="a config field to tune: a range or a choice list (repeat for more)",
    )
    s.add_argument("--steps", type=int, help="env steps per run (config total_steps)")
    s.add_argument("--preset", default="default", metavar="NAME", help=PRESET_HELP)
    s.add_argument("--seeds", type=int, default=1, metavar="K", help="seeds per trial: seed, seed+1, ... (default 1)")
    s.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a config field in every run")
    s.add_argument(
        "--objective",
        default="auc",
        choices=["auc", "final", "steps_to_threshold"],
        help="per seed, then averaged over seeds (default auc)",
    )
    s.add_argument("--threshold", type=float, help="return for steps_to_threshold (default: solved_threshold)")
    s.add_argument("--pruner", default="median", choices=["median", "halving", "none"], help="default median")
    s.add_argument("--workers", type=int, help="trials at a time (default: CPU cores)")
    s.add_argument("--executor", choices=["local", "ray"], default="local")
    s.add_argument("--ray-address", help="Ray cluster address (default: a new local instance)")
    s.add_argument("--out", help="tune directory (default: tunes/<env>-<algo>-<hash of search>)")
    s.add_argument("--no-tensorboard", action="store_true", help="CSV logs only")


def load_config_file(path: str) -> dict[str, Any]:
    """A JSON object of config fields (and optionally ``algo``); ConfigError for anything else.
    Only parsed, never executed."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: unreadable ({e})") from None
    except ValueError as e:
        raise ConfigError(f"--config {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of config fields, got {type(data).__name__}")
    return data


def _config_from_file(
    path: str, algo_arg: str | None, env_arg: str | None, preset_name: str = "default"
) -> tuple[str, Any]:
    data = load_config_file(path)
    algo = data.pop("algo", None)
    if algo is not None and not isinstance(algo, str):
        raise ConfigError(f"--config {path}: algo must be a string, got {algo!r}")
    if algo is not None and algo_arg is not None and algo != algo_arg:
        raise ConfigError(f"--config {path} is a {algo} config; the command line asks for {algo_arg}")
    algo = algo_arg or algo or "dqn"
    if algo not in ALGOS:
        raise ConfigError(f"--config {path}: unknown algorithm {algo!r}; use one of {', '.join(ALGOS)}")
    cls = ALGOS[algo][0]
    fields = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"--config {path}: unknown {algo} config key(s) {', '.join(map(repr, unknown))}")
    env_id = env_arg or data.get("env_id") or default_config(algo).env_id
    if not isinstance(env_id, str):
        raise ConfigError(f"--config {path}: env_id must be a string, got {env_id!r}")
    try:
        cfg = with_overrides(preset(algo, env_id, preset_name), {**data, "env_id": env_id})
    except ConfigError as e:
        raise ConfigError(f"--config {path}: {e}") from None
    return algo, cfg


def cmd_train(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = parse_assignments(args.set)
    for flag, key in (("steps", "total_steps"), ("seed", "seed"), ("device", "device")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    if args.resume and args.config:
        raise ConfigError("--config starts a new run; --resume continues one from its own saved config")
    if args.resume and args.preset != "default":
        raise ConfigError("--preset starts a new run; --resume continues one from its own saved config")
    if args.resume:
        path = checkpoint.find(args.resume)
        algo, saved = saved_run(checkpoint.load(path), path)
        cfg = with_overrides(saved, overrides)
    elif args.config:
        algo, base = _config_from_file(args.config, args.algo, args.env_id, args.preset)
        cfg = with_overrides(base, overrides)
    else:
        algo = args.algo or "dqn"
        env_id = args.env_id or default_config(algo).env_id
        cfg = with_overrides(preset(algo, env_id, args.preset), overrides)
    cfg.check()
    if args.print_config:
        print(json.dumps({"algo": algo, **to_dict(cfg)}, indent=2))
        return 0
    trainer = Trainer(cfg, algo=algo, run_dir=args.run_dir, resume=args.resume, progress=not args.no_progress)
    try:
        result = trainer.train()
    finally:
        trainer.close()
    last = result.evals[-1] if result.evals else None
    msg = f"run: {result.run_dir}\n{result.env_steps} env steps, {result.episodes} episodes, {result.sps:.0f} steps/s"
    if last is not None:
        msg += f"\nfinal {evaluation_kind(cfg.eval_epsilon)} evaluation: {last['mean']:.1f} +- {last['std']:.1f}"
    if result.solved:
        msg += f" (solved: reached {cfg.solved_threshold})"
    print(msg)
    return 0


def evaluation_kind(epsilon: float) -> str:
    """How an evaluation acts, as printed: ``greedy`` or ``epsilon-greedy (0.05)``."""
    return "greedy" if epsilon == 0 else f"epsilon-greedy ({epsilon:g})"


def cmd_eval(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    path = checkpoint.find(args.run, prefer=(f"{args.checkpoint}.pt", "last.pt", "best.pt"))
    agent, cfg = load_agent(path, args.device)
    epsilon = cfg.eval_epsilon if args.epsilon is None else args.epsilon
    if not 0.0 <= epsilon <= 1.0:
        raise ConfigError(f"--epsilon must be in [0, 1], got {epsilon}")
    returns = evaluate(
        agent.greedy,
        lambda: make_env(cfg.env_id, cfg.max_episode_steps, cfg.frame_stack),
        args.episodes,
        args.seed,
        epsilon=epsilon,
    )
    print(
        f"{path}: {cfg.env_id}, {args.episodes} {evaluation_kind(epsilon)} episodes: mean {np.mean(returns):.2f} "
        f"+- {np.std(returns):.2f} (min {np.min(returns):.1f}, max {np.max(returns):.1f})"
    )
    if args.video:
        out = record_video(agent, cfg, args.video_path or path.with_suffix(""), args.seed)
        print(f"video: {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    for r in args.runs:
        if not (Path(r) / "metrics.csv").is_file():
            raise ConfigError(f"{r}: not a run directory (no metrics.csv)")
    out = args.out or (Path(args.runs[0]) / "curves.png" if len(args.runs) == 1 else Path("curves.png"))
    print(plot_runs(args.runs, out))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    check_metric(args.metric)
    if args.report and (args.grid or args.range or args.random or args.set or args.steps or args.preset != "default"):
        raise ConfigError(
            "--report redraws an existing sweep: give it no --grid, --range, --random, --set, --steps or --preset"
        )
    if args.report:
        report = write_report(args.report, threshold=args.threshold, metric=args.metric)
    else:
        plan = plan_sweep(
            args.algo,
            args.env_id,
            grid=args.grid,
            ranges=args.range,
            random=args.random,
            search_seed=args.search_seed,
            seeds=args.seeds,
            steps=args.steps,
            overrides=parse_assignments(args.set),
            out=args.out,
            preset=args.preset,
        )
        if args.dry_run:
            for t in plan.tasks():
                print(t["id"])
            print(f"{len(plan.configs)} configurations x {len(plan.seeds)} seeds into {plan.out}")
            return 0
        try:
            report = run_sweep(
                plan,
                executor=args.executor,
                workers=args.workers,
                ray_address=args.ray_address,
                tensorboard=not args.no_tensorboard,
                threshold=args.threshold,
                metric=args.metric,
            )
        except KeyboardInterrupt:
            print(f"fastrl: interrupted; run the same command again to resume the sweep in {plan.out}", file=sys.stderr)
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


def cmd_tune(args: argparse.Namespace) -> int:
    plan = plan_tune(
        args.algo,
        args.env_id,
        params=args.param,
        trials=args.trials,
        steps=args.steps,
        seeds=args.seeds,
        seed=args.seed,
        overrides=parse_assignments(args.set),
        objective=args.objective,
        pruner=args.pruner,
        threshold=args.threshold,
        out=args.out,
        preset=args.preset,
    )
    try:
        report = run_tune(
            plan,
            executor=args.executor,
            workers=args.workers,
            ray_address=args.ray_address,
            tensorboard=not args.no_tensorboard,
        )
    except KeyboardInterrupt:
        print(f"fastrl: interrupted; run the same command again to resume the search in {plan.out}", file=sys.stderr)
        return 130
    print(format_tune_table(report))
    print(f"objective: {report.text}")
    if report.best is not None:
        params = " ".join(f"{k}={fmt_value(report.best[k])}" for k in report.keys)
        print(f"best: trial {report.best['number']}, {report.objective} {report.best['value']:.4g}: {params}")
        print(f"train it: fastrl train --config {plan.out / 'best.json'}")
    for note in report.notes:
        print(note)
    print("report: " + " ".join(str(f) for f in report.files))
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "plot": cmd_plot, "sweep": cmd_sweep, "tune": cmd_tune}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (ConfigError, CheckpointError) as e:
        print(f"fastrl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "fastrl: interrupted (resume with --resume RUN from the last checkpoint)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
