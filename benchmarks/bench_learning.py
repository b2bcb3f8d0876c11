"""Learning benchmark: fastrl's presets (dqn, sail-dqn, rainbow, c51, qr-dqn, ddpg, td3) against each
other, against Stable-Baselines3 with RL-Zoo settings (``sb3-dqn``, ``sb3-ddpg``) and against
Tianshou 2.x's Rainbow and C51 at fastrl's preset settings (``ts-rainbow``, ``ts-c51``: run by
benchmarks/tianshou_baseline.py in the Python given by ``--tianshou-python``).

For each algorithm, env and seed: env steps, episodes and training wall time until the 20-episode
greedy evaluation first reaches the threshold, the final policy's greedy evaluation (20 fresh
episodes), and env steps per second. Every library is evaluated by the same code
(fastrl.training.envs.evaluate, same seeds, every ``eval_every`` env steps) and evaluation time is excluded
from every clock. DQN-family runs stop at the preset's solved threshold (CartPole 500, LunarLander
230) or its step budget; DDPG / TD3 / SB3 DDPG train for their 20,000 steps on Pendulum.

Steps per second are counted in wall time and in CPU time of the process (evaluations excluded
from both): on a shared machine the wall clock of runs made minutes apart can differ several-fold,
the CPU time much less.

Checks: dqn vs sb3-dqn time to threshold; sail-dqn reaches the thresholds dqn reaches; rainbow
reaches LunarLander 200 within a median of 60,000 steps on every seed and CartPole 475 within
dqn's median steps; rainbow and c51 vs Tianshou's time to threshold (<= 1/4); ddpg and td3
reach -200 on Pendulum within 20,000 steps on every seed, at >= 2x the steps per second of
sb3-ddpg measured in the same run.

``--update-cost`` instead times one gradient step of each DQN-family head (plain, C51, QR,
Munchausen, noisy, Rainbow) on the LunarLander preset's network and batch, against plain DQN
measured alternately in the same run.

    python benchmarks/bench_learning.py                                   # everything, seeds 0 1 2
    python benchmarks/bench_learning.py --algos sail-dqn dqn --envs CartPole-v1
    python benchmarks/bench_learning.py --algos ddpg td3 sb3-ddpg --sb3-seeds 0
    python benchmarks/bench_learning.py --envs CartPole-v1 --seeds 0 --no-sb3
    python benchmarks/bench_learning.py --algos rainbow c51 ts-rainbow ts-c51 dqn --tianshou-python /venv/bin/python
    python benchmarks/bench_learning.py --update-cost
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
from typing import Any

import numpy as np

from fastrl.agents.presets import preset
from fastrl.config import with_overrides
from fastrl.training.envs import evaluate, make_env
from fastrl.training.trainer import Trainer

THRESHOLD = {"CartPole-v1": 475.0, "LunarLander-v3": 200.0, "Pendulum-v1": -200.0}
MAX_EPISODES = {"LunarLander-v3": 500}  # the seed course's claim: 200 within about 500 episodes
MAX_STEPS = {"Pendulum-v1": 20_000}  # the issue's bar: -200 within 20,000 env steps
FINAL_EVAL_SEED = 987_654
# dqn-2core: the dqn preset with concurrent=true (a collector process steps the envs)
ALGOS = ("dqn", "dqn-2core", "sb3-dqn", "sail-dqn", "rainbow", "c51", "qr-dqn", "ts-rainbow", "ts-c51", "ddpg",
         "td3", "sb3-ddpg")
# stopped at the bench threshold (200 / 475), as their Tianshou counterparts are: the time to it is the figure
STOP_AT_THRESHOLD = ("rainbow", "c51", "qr-dqn")
FAMILY_TARGET_STEPS = {"LunarLander-v3": 60_000}  # issue 17: rainbow's median steps to 200
ENVS = {"dqn": ("CartPole-v1", "LunarLander-v3"), "ddpg": ("Pendulum-v1",)}  # by family
FAMILY = {"dqn": "dqn", "dqn-2core": "dqn", "sb3-dqn": "dqn", "sail-dqn": "dqn", "rainbow": "dqn", "c51": "dqn",
          "qr-dqn": "dqn", "ts-rainbow": "dqn", "ts-c51": "dqn", "ddpg": "ddpg", "td3": "ddpg", "sb3-ddpg": "ddpg"}
COLORS = {"dqn": "tab:blue", "dqn-2core": "tab:purple", "sail-dqn": "tab:green", "sb3-dqn": "tab:orange", "ddpg": "tab:blue",
          "td3": "tab:green", "sb3-ddpg": "tab:orange", "rainbow": "tab:red", "c51": "tab:brown", "qr-dqn": "tab:pink",
          "ts-rainbow": "tab:olive", "ts-c51": "tab:gray"}

# rl-baselines3-zoo hyperparams/ddpg.yml, Pendulum-v1 entry (SB3's defaults for the rest: batch 256,
# tau 0.005, one critic)
ZOO_DDPG = {
    "Pendulum-v1": dict(
        n_timesteps=20_000,
        gamma=0.98,
        buffer_size=200_000,
        learning_starts=10_000,
        noise_std=0.1,
        gradient_steps=-1,
        train_freq=(1, "episode"),
        learning_rate=1e-3,
        policy_kwargs=dict(net_arch=[400, 300]),
    ),
}

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


def run_fastrl(algo: str, env_id: str, seed: int, out_dir: Path) -> dict:
    over: dict[str, Any] = {"seed": seed, "runs_dir": str(out_dir)}
    if algo == "dqn-2core":
        over["concurrent"] = True
    if algo in STOP_AT_THRESHOLD:
        over["solved_threshold"] = THRESHOLD[env_id]
    cfg = with_overrides(preset(algo.removesuffix("-2core"), env_id), over)
    trainer = Trainer(cfg, algo=algo.removesuffix("-2core"), progress=False, tensorboard=False)
    evaluate_, eval_cpu = trainer.evaluate, [0.0]

    def timed_evaluate() -> dict:  # CPU time of evaluations, excluded like their wall time
        c = time.process_time()
        try:
            return evaluate_()
        finally:
            eval_cpu[0] += time.process_time() - c

    trainer.evaluate = timed_evaluate  # type: ignore[method-assign]
    trainer.on_event["evaluate"] = timed_evaluate
    try:
        cpu = time.process_time()
        r = trainer.train()
        cpu = time.process_time() - cpu - eval_cpu[0]
        final = evaluate(trainer.agent.greedy, lambda: make_env(env_id), 20, FINAL_EVAL_SEED + seed)
    finally:
        trainer.close()
    return summarize(env_id, algo, seed, r.evals, r.env_steps, r.train_seconds, float(final.mean()), cpu)


def run_sb3(algo: str, env_id: str, seed: int, eval_every: int, stop_at: float | None) -> dict:
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)  # same as fastrl's default; SB3 is faster this way on small nets too
    env = make_env(env_id)
    if algo == "sb3-dqn":
        from stable_baselines3 import DQN

        params = dict(ZOO[env_id])
        n_timesteps = params.pop("n_timesteps")
        model: Any = DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **params)
    else:
        from stable_baselines3 import DDPG
        from stable_baselines3.common.noise import NormalActionNoise

        params = dict(ZOO_DDPG[env_id])
        n_timesteps = params.pop("n_timesteps")
        dim = env.action_space.shape[0]
        noise = NormalActionNoise(np.zeros(dim), params.pop("noise_std") * np.ones(dim))
        model = DDPG("MlpPolicy", env, action_noise=noise, seed=seed, device="cpu", verbose=0,
                     **params)
    evals: list[dict] = []
    clock = {"eval": 0.0, "episodes": 0, "eval_cpu": 0.0}

    class Evaluator(BaseCallback):
        def _on_step(self) -> bool:
            clock["episodes"] += int(np.sum(self.locals["dones"]))
            if self.num_timesteps % eval_every:
                return True
            t, c = time.perf_counter(), time.process_time()
            trained = t - start - clock["eval"]  # wall time so far minus earlier evaluations
            ret = evaluate(
                lambda o: model.predict(o, deterministic=True)[0],
                None,
                20,
                eval_seed(seed, self.num_timesteps),
                envs=eval_envs,
            )
            clock["eval"] += time.perf_counter() - t
            clock["eval_cpu"] += time.process_time() - c
            evals.append(
                {
                    "step": self.num_timesteps,
                    "episodes": clock["episodes"],
                    "train_seconds": trained,
                    "mean": float(ret.mean()),
                    "std": float(ret.std()),
                }
            )
            return stop_at is None or evals[-1]["mean"] < stop_at

    eval_envs = [make_env(env_id) for _ in range(20)]
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(n_timesteps, callback=Evaluator())
    train_seconds = time.perf_counter() - start - clock["eval"]
    cpu = time.process_time() - cpu - clock["eval_cpu"]
    final = evaluate(
        lambda o: model.predict(o, deterministic=True)[0],
        lambda: make_env(env_id),
        20,
        FINAL_EVAL_SEED + seed,
    )
    return summarize(
        env_id, algo, seed, evals, int(model.num_timesteps), train_seconds, float(final.mean()), cpu
    )


def run_tianshou(
    algo: str, env_id: str, seed: int, python: str, out_dir: Path, max_steps: int | None, extra_steps: int = 0
) -> dict:
    """Tianshou's Rainbow or C51 at the settings of fastrl's preset of the same name, in a
    subprocess of ``python`` (an environment with tianshou installed); evaluated by fastrl's code."""
    import dataclasses
    import subprocess

    cfg = preset(algo.removeprefix("ts-"), env_id)
    if max_steps:  # a budget cap for the slow baseline (the fastrl run keeps its preset's)
        cfg = with_overrides(cfg, {"total_steps": min(cfg.total_steps, max_steps)})
    out = out_dir / f"{algo}-{env_id}-{seed}.json"
    cmd = [
        python, str(Path(__file__).with_name("tianshou_baseline.py")), "--algo", algo.removeprefix("ts-"),
        "--env", env_id, "--seed", str(seed), "--settings", json.dumps(dataclasses.asdict(cfg)),
        "--eval-every", str(cfg.eval_every), "--stop-at", str(THRESHOLD[env_id]), "--out", str(out),
        "--extra-steps", str(extra_steps),
    ]
    subprocess.run(cmd, check=True)
    r = json.loads(out.read_text())
    final = math.nan  # the subprocess's policy is gone; the curve holds its evaluations
    if r.get("unmatched"):
        print(f"{algo}: settings Tianshou has no equivalent for: {r['unmatched']}", file=sys.stderr)
    return summarize(env_id, algo, seed, r["evals"], r["steps"], r["train_seconds"], final, r["cpu_seconds"])


def update_costs(repeats: int = 7, updates: int = 200) -> str:
    """Median seconds per gradient step of each DQN-family head at the LunarLander preset's
    network (128x128) and batch (64), against plain DQN timed alternately in the same run."""
    import torch

    from fastrl.agents import DQN
    from fastrl.replay.batch import Batch

    torch.set_num_threads(1)
    base = preset("dqn", "LunarLander-v3")
    rainbow = preset("rainbow", "LunarLander-v3")
    heads = {
        "dqn (double, scalar)": base,
        "c51 (51 atoms)": with_overrides(base, {"distributional": "c51", "v_min": -100.0, "v_max": 100.0}),
        "qr-dqn (32 quantiles)": with_overrides(base, {"distributional": "qr", "quantiles": 32}),
        "qr-dqn (200 quantiles)": with_overrides(base, {"distributional": "qr", "quantiles": 200}),
        "munchausen": with_overrides(base, {"munchausen": True}),
        "noisy (scalar)": with_overrides(base, {"noisy": True}),
        f"rainbow preset (batch {rainbow.batch_size})": rainbow,
    }
    rng = np.random.default_rng(0)
    b = base.batch_size
    terminated = rng.random(b) < 0.1
    batch = Batch(
        torch.as_tensor(rng.normal(size=(b, 8)).astype(np.float32)), torch.as_tensor(rng.integers(4, size=b)),
        torch.as_tensor(rng.normal(size=b).astype(np.float32)), torch.as_tensor(rng.normal(size=(b, 8)).astype(np.float32)),
        torch.as_tensor(terminated), torch.zeros(b, dtype=torch.bool), torch.arange(b), {}, torch.ones(b),
        torch.full((b,), 0.99**3),
    )
    agents = {name: DQN((8,), 4, cfg, seed=0) for name, cfg in heads.items()}
    times: dict[str, list[float]] = {n: [] for n in heads}
    for _ in range(repeats):
        for name, ag in agents.items():  # alternating: each sees the same machine load
            for _ in range(10):
                ag.update(batch)
            t = time.perf_counter()
            for _ in range(updates):
                ag.update(batch)
            times[name].append((time.perf_counter() - t) / updates)
    dqn = statistics.median(times["dqn (double, scalar)"])
    lines = [f"{'head':<30} {'us/update':>10} {'x dqn':>7}", "-" * 49]
    for name in heads:
        m = statistics.median(times[name])
        lines.append(f"{name:<30} {m * 1e6:>10.0f} {m / dqn:>7.2f}")
    lines.append(f"(LunarLander preset net {base.hidden_sizes}, batch {b}; median of {repeats} x {updates} updates, "
                 f"one thread; torch {torch.__version__})")
    return "\n".join(lines)


def summarize(
    env_id: str,
    algo: str,
    seed: int,
    evals: list[dict],
    steps: int,
    seconds: float,
    final: float,
    cpu_seconds: float,
) -> dict:
    first = next((e for e in evals if e["mean"] >= THRESHOLD[env_id]), None)
    return {
        "env": env_id,
        "lib": algo,
        "seed": seed,
        "steps_to": first and first["step"],
        "episodes_to": first and first["episodes"],
        "time_to": first and first["train_seconds"],
        "final": final,
        "sps": steps / max(seconds, 1e-9),
        "cpu_sps": steps / max(cpu_seconds, 1e-9),
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


def compatible(algo: str, env_id: str) -> bool:
    """DQN-family algorithms on envs with discrete actions, DDPG-family ones on continuous actions."""
    import gymnasium as gym

    env = make_env(env_id)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    env.close()
    return discrete == (FAMILY[algo] == "dqn")


def reached(r: dict) -> bool:
    """The seed's evaluation reached the threshold within the episode / step limit of its env."""
    return (
        r["steps_to"] is not None
        and r["episodes_to"] <= MAX_EPISODES.get(r["env"], 10**9)
        and r["steps_to"] <= MAX_STEPS.get(r["env"], 10**12)
    )


def report(rows: list[dict]) -> str:
    head = (
        f"{'env':<15} {'algo':<9} {'seed':>6} {'steps to thr':>12} {'episodes':>8} "
        f"{'time to thr s':>13} {'final eval':>10} {'steps/s':>8} {'CPU steps/s':>11}"
    )
    lines = [head, "-" * len(head)]
    envs = list(dict.fromkeys(r["env"] for r in rows))
    for env_id in envs:
        for lib in dict.fromkeys(r["lib"] for r in rows if r["env"] == env_id):
            sub = [r for r in rows if r["env"] == env_id and r["lib"] == lib]
            for r in sub:
                lines.append(
                    f"{env_id:<15} {lib:<9} {r['seed']:>6} {fmt(r['steps_to'], 'd'):>12} "
                    f"{fmt(r['episodes_to'], 'd'):>8} {fmt(r['time_to'], '.1f'):>13} "
                    f"{r['final']:>10.1f} {r['sps']:>8.0f} {r.get('cpu_sps', math.nan):>11.0f}"
                )
            lines.append(
                f"{env_id:<15} {lib:<9} {'median':>6} {fmt(median(sub, 'steps_to'), '.0f'):>12} "
                f"{fmt(median(sub, 'episodes_to'), '.0f'):>8} {fmt(median(sub, 'time_to'), '.1f'):>13} "
                f"{statistics.median(r['final'] for r in sub):>10.1f} "
                f"{statistics.median(r['sps'] for r in sub):>8.0f} "
                f"{statistics.median(r.get('cpu_sps', math.nan) for r in sub):>11.0f}"
            )
        lines.append("")
    lines.append(
        "checks (threshold: CartPole 475, LunarLander 200, Pendulum -200; time = training wall time, "
        "evaluation excluded):"
    )
    for env_id in envs:
        thr = THRESHOLD[env_id]
        limit = f" within {MAX_EPISODES[env_id]} episodes" if env_id in MAX_EPISODES else ""
        limit += f" within {MAX_STEPS[env_id]} steps" if env_id in MAX_STEPS else ""
        of = {lib: [r for r in rows if r["env"] == env_id and r["lib"] == lib] for lib in ALGOS}
        for lib in ("dqn", "dqn-2core", "sail-dqn", "rainbow", "c51", "qr-dqn", "ddpg", "td3"):
            ours = of[lib]
            if not ours:
                continue
            n_ok = sum(map(reached, ours))
            final_ok = sum(r["final"] >= thr for r in ours)
            lines.append(
                f"  {env_id} {lib}: eval >= {thr:g}{limit} on {n_ok}/{len(ours)} seeds "
                f"[{'PASS' if n_ok == len(ours) else 'FAIL'}]; final policy >= {thr:g} on "
                f"{final_ok}/{len(ours)} [{'PASS' if final_ok == len(ours) else 'FAIL'}]"
            )
        if of["dqn"] and of["sail-dqn"]:
            d = [r["seed"] for r in of["dqn"] if reached(r)]
            s_ = [r["seed"] for r in of["sail-dqn"] if reached(r)]
            ok = set(d) <= set(s_)
            lines.append(
                f"  {env_id}: sail-dqn reaches the threshold on every seed dqn does "
                f"(dqn seeds {d}, sail-dqn seeds {s_}) [{'PASS' if ok else 'FAIL'}]"
            )
        if of["rainbow"] and env_id in FAMILY_TARGET_STEPS:
            m, target = median(of["rainbow"], "steps_to"), FAMILY_TARGET_STEPS[env_id]
            ok = m is not None and m <= target and all(map(reached, of["rainbow"]))
            lines.append(f"  {env_id}: rainbow median steps to {thr:g}: {fmt(m, '.0f')} (target <= {target}, "
                         f"3/3 seeds) [{'PASS' if ok else 'FAIL'}]")
        if of["rainbow"] and of["dqn"] and env_id not in FAMILY_TARGET_STEPS:
            a, b = median(of["rainbow"], "steps_to"), median(of["dqn"], "steps_to")
            ok = a is not None and b is not None and a <= b
            lines.append(f"  {env_id}: rainbow median steps to {thr:g} {fmt(a, '.0f')} vs dqn {fmt(b, '.0f')} "
                         f"(target <=) [{'PASS' if ok else 'FAIL'}]")
        for ours, theirs in (("rainbow", "ts-rainbow"), ("c51", "ts-c51")):
            if of[ours] and of[theirs]:
                a, b = median(of[ours], "time_to"), median(of[theirs], "time_to")
                ok = a is not None and b is not None and a <= b / 4
                lines.append(f"  {env_id}: median time to threshold {ours} {fmt(a, '.1f')} s vs Tianshou "
                             f"{fmt(b, '.1f')} s (target <= 1/4) [{'PASS' if ok else 'FAIL'}]")
        for lib in ("dqn", "dqn-2core"):
            if not (of[lib] and of["sb3-dqn"]):
                continue
            a, b = median(of[lib], "time_to"), median(of["sb3-dqn"], "time_to")
            if a is not None and b is not None:
                lines.append(
                    f"  {env_id}: median time to threshold {lib} {a:.1f} s vs SB3 {b:.1f} s: ratio "
                    f"{a / b:.3f} (issue 6 target <= 0.333 [{'PASS' if a <= b / 3 else 'FAIL'}]; issue 8 "
                    f"target <= 0.25 [{'PASS' if a <= b / 4 else 'FAIL'}])"
                )
            else:
                lines.append(
                    f"  {env_id}: median time ratio undefined ({lib} {fmt(a, '.1f')} s, SB3 "
                    f"{fmt(b, '.1f')} s: a library reached the threshold on fewer than half the seeds)"
                )
        for lib in ("ddpg", "td3"):
            if of[lib] and of["sb3-ddpg"]:
                for key, what in (("cpu_sps", "steps per CPU second"), ("sps", "steps per wall second")):
                    a = statistics.median(r[key] for r in of[lib])
                    b = statistics.median(r[key] for r in of["sb3-ddpg"])
                    lines.append(
                        f"  {env_id}: median {what} {lib} {a:.0f} vs SB3 DDPG (RL-Zoo) {b:.0f}: "
                        f"{a / b:.2f}x (target >= 2x) [{'PASS' if a >= 2 * b else 'FAIL'}]"
                    )
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    """Greedy evaluation against env steps, one panel per env, one line per algorithm and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(r["env"] for r in rows))
    fig, axes = plt.subplots(
        1, len(envs), figsize=(6 * len(envs), 4), squeeze=False, constrained_layout=True
    )
    for ax, env_id in zip(axes[0], envs):
        labelled = set()
        for r in (r for r in rows if r["env"] == env_id):
            e = r["evals"]
            ax.plot(
                [x["step"] for x in e],
                [x["mean"] for x in e],
                color=COLORS[r["lib"]],
                alpha=0.8,
                marker="o",
                markersize=2,
                label=None if r["lib"] in labelled else r["lib"],
            )
            labelled.add(r["lib"])
        ax.axhline(THRESHOLD[env_id], color="gray", linestyle="--")
        ax.set_title(f"{env_id}: greedy evaluation (20 episodes), one line per seed")
        ax.set_xlabel("env steps")
        ax.set_ylabel("mean return")
        ax.legend(fontsize=8)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    p.add_argument(
        "--envs", nargs="+", help="default: CartPole-v1 LunarLander-v3 (DQN family), Pendulum-v1 (DDPG)"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--sb3-seeds", nargs="+", type=int, help="seeds of the SB3 runs (default: --seeds)")
    p.add_argument("--no-sb3", action="store_true")
    p.add_argument("--out", default="bench_out")
    p.add_argument(
        "--report", metavar="JSON", help="only print the table of a saved bench_learning*.json"
    )
    p.add_argument("--tianshou-python", default="python", help="a Python with tianshou 2.x (ts-* algos)")
    p.add_argument("--ts-seeds", nargs="+", type=int, help="seeds of the Tianshou runs (default: --seeds)")
    p.add_argument("--ts-max-steps", type=int, help="cap the Tianshou runs' env steps (default: the preset's)")
    p.add_argument(
        "--ts-extra-steps", type=int, default=0,
        help="let the Tianshou runs train this many env steps past the preset's budget, schedules held at "
        "their end (a baseline that misses the threshold within the budget then still gets a time to it)",
    )
    p.add_argument("--update-cost", action="store_true", help="only time one update of each DQN-family head")
    args = p.parse_args()
    if args.update_cost:
        print(update_costs())
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return 0
    algos = list(args.algos)
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        print("stable_baselines3 not installed: fastrl only", file=sys.stderr)
        args.no_sb3 = True
    if args.no_sb3:
        algos = [a for a in algos if not a.startswith("sb3-")]
    sb3_seeds = args.sb3_seeds if args.sb3_seeds is not None else args.seeds
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        envs = args.envs or [e for a in algos for e in ENVS[FAMILY[a]]]
        for env_id in dict.fromkeys(envs):
            for seed in args.seeds:  # seeds outer, algorithms inner: all see similar machine load
                for algo in (a for a in algos if compatible(a, env_id)):
                    if algo.startswith("ts-"):
                        if seed not in (args.ts_seeds if args.ts_seeds is not None else args.seeds):
                            continue
                        rows.append(run_tianshou(algo, env_id, seed, args.tianshou_python, Path(tmp), args.ts_max_steps,
                                                 args.ts_extra_steps))
                    elif algo.startswith("sb3-"):
                        if seed not in sb3_seeds:
                            continue
                        cfg = preset("dqn" if algo == "sb3-dqn" else "ddpg", env_id)
                        stop = cfg.solved_threshold if algo == "sb3-dqn" else None
                        rows.append(run_sb3(algo, env_id, seed, cfg.eval_every, stop))
                    else:
                        rows.append(run_fastrl(algo, env_id, seed, Path(tmp)))
                    r = rows[-1]
                    print(
                        f"{algo:<9} {env_id} seed {seed}: reached at {fmt(r['steps_to'], 'd')} steps, "
                        f"{fmt(r['time_to'], '.1f')} s; final {r['final']:.1f}; {r['sps']:.0f} steps/s, "
                        f"{r['cpu_sps']:.0f} per CPU second",
                        file=sys.stderr,
                    )
    rows.sort(key=lambda r: (r["env"], ALGOS.index(r["lib"]), r["seed"]))
    text = report(rows)
    print(text)
    stem = "bench_learning"  # the parts run alone get their own files
    if algos != list(ALGOS) or args.envs:
        stem = "_".join([stem, *algos, *(args.envs or [])])
    (out / f"{stem}.txt").write_text(text + "\n")
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out / f"{stem}.png")
    print(f"wrote {out / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
