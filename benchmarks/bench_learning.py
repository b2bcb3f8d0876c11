"""Learning benchmark: fastrl's DQN presets against Stable-Baselines3 DQN (RL-Zoo settings).

For each env and seed: env steps, episodes and training wall time until the 20-episode greedy
evaluation first reaches the threshold, the final policy's greedy evaluation (20 fresh episodes),
and env steps per second. Both libraries are evaluated by the same code (fastrl.envs.evaluate,
same seeds, every ``eval_every`` env steps) and evaluation time is excluded from both clocks.
Training stops at the preset's solved threshold (CartPole 500, LunarLander 200) or its step budget.

    python benchmarks/bench_learning.py                       # both envs, seeds 0 1 2, SB3 if installed
    python benchmarks/bench_learning.py --envs CartPole-v1 --seeds 0 --no-sb3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fastrl.config import with_overrides
from fastrl.envs import evaluate, make_env
from fastrl.presets import preset
from fastrl.trainer import Trainer

THRESHOLD = {"CartPole-v1": 475.0, "LunarLander-v3": 200.0}
MAX_EPISODES = {"LunarLander-v3": 500}  # the seed course's claim: 200 within about 500 episodes
FINAL_EVAL_SEED = 987_654

# rl-baselines3-zoo hyperparams/dqn.yml (LunarLander-v2 entry used for v3)
ZOO = {
    "CartPole-v1": dict(
        n_timesteps=50_000,
        learning_rate=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1000,
        gamma=0.99,
        target_update_interval=10,
        train_freq=256,
        gradient_steps=128,
        exploration_fraction=0.16,
        exploration_final_eps=0.04,
        policy_kwargs=dict(net_arch=[256, 256]),
    ),
    "LunarLander-v3": dict(
        n_timesteps=100_000,
        learning_rate=6.3e-4,
        batch_size=128,
        buffer_size=50_000,
        learning_starts=0,
        gamma=0.99,
        target_update_interval=250,
        train_freq=4,
        gradient_steps=-1,
        exploration_fraction=0.12,
        exploration_final_eps=0.1,
        policy_kwargs=dict(net_arch=[256, 256]),
    ),
}


def eval_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step, 7]).generate_state(1)[0]) % 2**31


def run_fastrl(env_id: str, seed: int, out_dir: Path) -> dict:
    cfg = with_overrides(preset("dqn", env_id), {"seed": seed, "runs_dir": str(out_dir)})
    trainer = Trainer(cfg, progress=False, tensorboard=False)
    try:
        r = trainer.train()
        final = evaluate(trainer.agent.greedy, lambda: make_env(env_id), 20, FINAL_EVAL_SEED + seed)
    finally:
        trainer.close()
    return summarize(
        env_id, "fastrl", seed, r.evals, r.env_steps, r.train_seconds, float(final.mean())
    )


def run_sb3(env_id: str, seed: int, eval_every: int, stop_at: float) -> dict:
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)  # same as fastrl's default; SB3 is faster this way on small nets too
    params = dict(ZOO[env_id])
    n_timesteps = params.pop("n_timesteps")
    env = make_env(env_id)
    model = DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **params)
    evals: list[dict] = []
    clock = {"eval": 0.0, "episodes": 0}

    class Evaluator(BaseCallback):
        def _on_step(self) -> bool:
            clock["episodes"] += int(np.sum(self.locals["dones"]))
            if self.num_timesteps % eval_every:
                return True
            t = time.perf_counter()
            trained = t - start - clock["eval"]  # wall time so far minus earlier evaluations
            ret = evaluate(
                lambda o: model.predict(o, deterministic=True)[0],
                None,
                20,
                eval_seed(seed, self.num_timesteps),
                envs=eval_envs,
            )
            clock["eval"] += time.perf_counter() - t
            evals.append(
                {
                    "step": self.num_timesteps,
                    "episodes": clock["episodes"],
                    "train_seconds": trained,
                    "mean": float(ret.mean()),
                    "std": float(ret.std()),
                }
            )
            return evals[-1]["mean"] < stop_at

    eval_envs = [make_env(env_id) for _ in range(20)]
    start = time.perf_counter()
    model.learn(n_timesteps, callback=Evaluator())
    train_seconds = time.perf_counter() - start - clock["eval"]
    final = evaluate(
        lambda o: model.predict(o, deterministic=True)[0],
        lambda: make_env(env_id),
        20,
        FINAL_EVAL_SEED + seed,
    )
    return summarize(
        env_id, "sb3", seed, evals, int(model.num_timesteps), train_seconds, float(final.mean())
    )


def summarize(
    env_id: str, lib: str, seed: int, evals: list[dict], steps: int, seconds: float, final: float
) -> dict:
    first = next((e for e in evals if e["mean"] >= THRESHOLD[env_id]), None)
    return {
        "env": env_id,
        "lib": lib,
        "seed": seed,
        "steps_to": first and first["step"],
        "episodes_to": first and first["episodes"],
        "time_to": first and first["train_seconds"],
        "final": final,
        "sps": steps / max(seconds, 1e-9),
        "steps": steps,
        "evals": evals,
    }


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def median(rows: list[dict], key: str):
    """Median over seeds; a seed that never reached the threshold counts as +infinity, so the
    median exists while more than half of the seeds reached it (None otherwise)."""
    m = statistics.median(math.inf if r[key] is None else r[key] for r in rows)
    return None if m == math.inf else m


def report(rows: list[dict]) -> str:
    head = (
        f"{'env':<15} {'lib':<7} {'seed':>6} {'steps to thr':>12} {'episodes':>8} {'time to thr s':>13} "
        f"{'final eval':>10} {'steps/s':>8}"
    )
    lines = [head, "-" * len(head)]
    for env_id in dict.fromkeys(r["env"] for r in rows):
        for lib in dict.fromkeys(r["lib"] for r in rows if r["env"] == env_id):
            sub = [r for r in rows if r["env"] == env_id and r["lib"] == lib]
            for r in sub:
                lines.append(
                    f"{env_id:<15} {lib:<7} {r['seed']:>6} {fmt(r['steps_to'], 'd'):>12} "
                    f"{fmt(r['episodes_to'], 'd'):>8} {fmt(r['time_to'], '.1f'):>13} "
                    f"{r['final']:>10.1f} {r['sps']:>8.0f}"
                )
            lines.append(
                f"{env_id:<15} {lib:<7} {'median':>6} {fmt(median(sub, 'steps_to'), '.0f'):>12} "
                f"{fmt(median(sub, 'episodes_to'), '.0f'):>8} {fmt(median(sub, 'time_to'), '.1f'):>13} "
                f"{statistics.median(r['final'] for r in sub):>10.1f} "
                f"{statistics.median(r['sps'] for r in sub):>8.0f}"
            )
        lines.append("")
    lines.append(
        "checks (threshold: CartPole 475, LunarLander 200; time = training wall time, evaluation excluded):"
    )
    for env_id in dict.fromkeys(r["env"] for r in rows):
        ours = [r for r in rows if r["env"] == env_id and r["lib"] == "fastrl"]
        theirs = [r for r in rows if r["env"] == env_id and r["lib"] == "sb3"]
        thr = THRESHOLD[env_id]
        reached = sum(
            r["steps_to"] is not None and r["episodes_to"] <= MAX_EPISODES.get(env_id, 10**9)
            for r in ours
        )
        final_ok = sum(r["final"] >= thr for r in ours)
        limit = f" within {MAX_EPISODES[env_id]} episodes" if env_id in MAX_EPISODES else ""
        lines.append(
            f"  {env_id}: eval >= {thr:g}{limit} on {reached}/{len(ours)} seeds "
            f"[{'PASS' if reached == len(ours) else 'FAIL'}]; final policy >= {thr:g} on "
            f"{final_ok}/{len(ours)} [{'PASS' if final_ok == len(ours) else 'FAIL'}]"
        )
        if theirs:
            a, b = median(ours, "time_to"), median(theirs, "time_to")
            if a is not None and b is not None:
                lines.append(
                    f"  {env_id}: median time to threshold fastrl {a:.1f} s vs SB3 {b:.1f} s: ratio "
                    f"{a / b:.3f} (target <= 0.333) [{'PASS' if a <= b / 3 else 'FAIL'}]"
                )
            else:
                lines.append(
                    f"  {env_id}: median time ratio undefined (fastrl {fmt(a, '.1f')} s, SB3 "
                    f"{fmt(b, '.1f')} s: a library reached the threshold on fewer than half the seeds)"
                )
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(r["env"] for r in rows))
    fig, axes = plt.subplots(
        1, len(envs), figsize=(6 * len(envs), 4), squeeze=False, constrained_layout=True
    )
    colors = {"fastrl": "tab:blue", "sb3": "tab:orange"}
    for ax, env_id in zip(axes[0], envs):
        for r in (r for r in rows if r["env"] == env_id):
            e = r["evals"]
            ax.plot(
                [x["train_seconds"] for x in e],
                [x["mean"] for x in e],
                color=colors[r["lib"]],
                alpha=0.8,
                label=f"{r['lib']} seed {r['seed']}",
            )
        ax.axhline(THRESHOLD[env_id], color="gray", linestyle="--")
        ax.set_title(f"{env_id}: greedy evaluation (20 episodes)")
        ax.set_xlabel("training wall time (s)")
        ax.set_ylabel("mean return")
        ax.legend(fontsize=7)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--envs", nargs="+", default=list(THRESHOLD))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--no-sb3", action="store_true")
    p.add_argument("--out", default="bench_out")
    p.add_argument(
        "--report", metavar="JSON", help="only print the table of a saved bench_learning.json"
    )
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return 0
    try:
        import stable_baselines3  # noqa: F401

        have_sb3 = not args.no_sb3
    except ImportError:
        have_sb3 = False
        print("stable_baselines3 not installed: fastrl only", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.envs:
            cfg = preset("dqn", env_id)
            for seed in args.seeds:
                rows.append(run_fastrl(env_id, seed, Path(tmp)))
                print(
                    f"fastrl {env_id} seed {seed}: {fmt(rows[-1]['time_to'], '.1f')} s",
                    file=sys.stderr,
                )
                if have_sb3:
                    rows.append(run_sb3(env_id, seed, cfg.eval_every, cfg.solved_threshold))
                    print(
                        f"sb3    {env_id} seed {seed}: {fmt(rows[-1]['time_to'], '.1f')} s",
                        file=sys.stderr,
                    )
    rows.sort(key=lambda r: (r["env"], r["lib"] != "fastrl", r["seed"]))
    text = report(rows)
    print(text)
    (out / "bench_learning.txt").write_text(text + "\n")
    (out / "bench_learning.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out / "bench_learning.png")
    print(f"wrote {out / 'bench_learning.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
