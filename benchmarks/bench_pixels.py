"""Pixels end to end (issue 16): replay of stacked frames, Atari DQN throughput, update precision,
vector envs and MinAtar learning, each part measured against a baseline in the same run.

Parts (``--part``, ``all`` runs each in turn):
  replay     sample(32) of 4-stacked 84x84 uint8 frames: fastrl's frame-stack buffer (the stack
             built at sample time) vs cpprb with ``next_of`` + ``stack_compress`` (cpprb's advice for
             Atari), filled with the same episodes (bench_memory.py's data and wrappers); batches/s,
             medians of rounds. Target: fastrl >= 1.5x cpprb. fastrl's one-step batches copy k + 1
             frames per row (observations and next observations are views of one window array);
             a second fastrl row fills a preallocated ``empty_batch`` with ``sample_into``.
  atari      env steps/s over ``--steps`` env steps after ``--learning-starts`` on ALE/Breakout-v5 at
             RL-Zoo's Atari DQN settings (batch 32, train_freq 4, one gradient step, buffer 100k,
             target copy every 1,000 env steps, epsilon 1 -> 0.01 over 1M steps: nearly 1 here):
             fastrl's Trainer with the ALE/* preset vs SB3 DQN (CnnPolicy, make_atari_env +
             VecFrameStack 4), one torch thread each. The CNN-update floor: a bare Nature-CNN DQN
             update at batch 32 (bench_pixels.floor_update) times the updates per env step (1/4);
             fastrl's overhead above it (target <= 10%) and the ratio to SB3 (target >= 1.5x).
             The bare env step and act are shown too, to say where the rest goes. fastrl also
             runs with ``collectors=1`` (a collector process steps the env and acts on the other
             core while the learner's one thread updates), in fp32 and with ``amp=bf16``. Those
             runs' learner shares the machine with the collector, and on this VM a busy second
             core slows the first, so the floor is also timed beside a process that steps an ALE
             game on the other core (the collector's work at epsilon ~1), in rounds alternating
             with the floor alone; both comparisons are printed.
  precision  time per DQN update at batch 32 (Nature CNN on uint8[4, 84, 84], MinAtar CNN on
             bool[10, 10, 4]) in fp32, fp32 + channels_last, bf16 autocast, bf16 + channels_last;
             medians, ratios to fp32. fastrl has no config knob for either yet: this says what one
             would gain on this CPU.
  vecenv     env steps/s with random actions, num_envs ``--envs`` (2, 4, 8), ``--seconds`` each:
             ale-py's native AtariVectorEnv alone (C++ threads, its own preprocessing and 4-frame
             stack), fastrl's vector_mode=ale (the same behind fastrl's adapter: frame stacks,
             final observations, lost lives, scores; what the trainer steps), and gymnasium's
             SyncVectorEnv and AsyncVectorEnv of fastrl's preprocessed ALE/Breakout-v5
             (frame_stack=4, lost lives terminal, clipped rewards: vector_mode=sync and async).
  minatar    fastrl's MinAtar presets, per seed: Breakout-v1 until the last 100 training episodes'
             mean return >= 10 (at most 500k steps), Freeway-v1 to 50 (at most 1M); steps to the
             threshold and wall time. ``--sb3``: SB3 DQN on MinAtar Breakout with the paper's
             network (one 3x3 conv of 16 channels, 128 hidden units) and hyper-parameters (RMSProp
             2.5e-4, alpha 0.95, eps 0.01, centered; batch 32; buffer 100k; target every 1,000;
             epsilon 1 -> 0.1 over 100k; 5,000 random steps; one update per step) for at most
             ``--sb3-steps``, wall time to the same return. Target: fastrl's time <= 1/4 of SB3's
             (wall seconds from the start of training, from each run's curve). Where SB3 does not reach
             10 in its budget its time is only bounded below, so the ratio printed is an upper bound;
             the time each takes to SB3's best 100-episode mean is printed too. Curves (every finished
             episode: step, wall seconds, return, mean of the last 100) go to ``--out``/minatar_curves.csv;
             ``--compare CSV ...`` compares curves written by separate runs (say, SB3 on one core while
             fastrl ran on the other).

    python benchmarks/bench_pixels.py --part replay|atari|precision|vecenv|minatar|all [--quick]
        [--steps 20000] [--learning-starts 5000] [--seeds 0 1 2] [--games Breakout Freeway] [--sb3]
        [--sb3-steps 1000000] [--set KEY=VALUE] [--envs 2 4 8] [--seconds 10] [--out bench_out]
    python benchmarks/bench_pixels.py --compare bench_out/a/minatar_curves.csv bench_out/b/minatar_curves.csv
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from collections import deque
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_memory, bench_throughput

from bench_memory import Cpprb, FastrlStacked, episodes  # noqa: E402
from bench_throughput import median_time  # noqa: E402

from fastrl.agents.nets import QNetwork, adam, clear_grads_, clip_grads_, step_  # noqa: E402
from fastrl.agents.presets import preset  # noqa: E402
from fastrl.config import parse_assignments, with_overrides  # noqa: E402
from fastrl.training import arcade  # noqa: E402
from fastrl.training.envs import make_env, make_vec_env  # noqa: E402
from fastrl.training.trainer import Trainer  # noqa: E402

torch.set_num_threads(1)


def verdict(ok: bool) -> str:
    return "target met" if ok else "target NOT met"


# ---------------------------------------------------------------- replay
class FastrlStackedInto(FastrlStacked):
    name = "fastrl frame_stack=4, sample_into"

    def sample(self) -> Any:
        if not hasattr(self, "out"):
            self.out = self.buf.empty_batch(32)
        return self.buf.sample_into(self.out)


def part_replay(args: argparse.Namespace) -> None:
    cap, rounds, calls = (3_000, 5, 20) if args.quick else (20_000, 30, 50)
    d = episodes(cap)
    impls = [FastrlStacked(cap), Cpprb(cap), FastrlStackedInto(cap)]
    for impl in impls:
        impl.fill(d)
    times: dict[str, list[float]] = {impl.name: [] for impl in impls}
    for _ in range(rounds):  # round-robin: both see the same disturbances
        for impl in impls:
            t0 = time.perf_counter()
            for _ in range(calls):
                impl.sample()
            times[impl.name].append((time.perf_counter() - t0) / calls)
    print(f"## replay: sample(32) of [4, 84, 84] uint8 stacks, {cap} transitions, {rounds} rounds x {calls} calls\n")
    print("| buffer | batches/s (median) | us per batch |")
    print("|---|---:|---:|")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(f"| {name} | {1 / t:,.0f} | {t * 1e6:,.1f} |")
    ratio = med[impls[1].name] / med[impls[0].name]
    print(f"\nfastrl {ratio:.2f}x cpprb's batches/s (target >= 1.5x): {verdict(ratio >= 1.5)}")
    print(f"fastrl sample_into {med[impls[1].name] / med[impls[2].name]:.2f}x cpprb's batches/s\n")


# ---------------------------------------------------------------- the bare update (atari floor, precision)
def floor_update(obs: torch.Tensor, n_act: int, pixels: str, channels_last: bool = False, bf16: bool = False,
                 lr: float = 1e-4, gamma: float = 0.99, max_grad_norm: float = 10.0, target_every: int = 250):
    """One DQN update written out (forward, Huber loss, backward, clipping, fastrl's Adam, hard
    target copy) on fixed tensors ``obs`` (a batch); returns a function that runs it."""
    q, q_t = (QNetwork(obs.shape[1:], n_act, pixels=pixels) for _ in range(2))
    if channels_last:
        q, q_t = q.to(memory_format=torch.channels_last), q_t.to(memory_format=torch.channels_last)
    params, t_params = list(q.parameters()), list(q_t.parameters())
    opt = adam(params, lr, 1e-8, torch.device("cpu"))
    b = obs.shape[0]
    o, o2 = obs, obs.roll(1, 0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def scaled(x: torch.Tensor) -> torch.Tensor:  # uint8 frames, scaled at every update as QNetwork does
        return x.float().div_(255).contiguous(memory_format=fmt) if pixels == "nature" else x

    a, r, d = torch.randint(0, n_act, (b,)), torch.randn(b), torch.zeros(b)
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    count = [0]

    def update() -> None:
        with cast():
            q_sa = q(scaled(o)).gather(1, a[:, None]).squeeze(1).float()
            with torch.no_grad():
                y = r + gamma * (1 - d) * q_t(scaled(o2)).float().max(1).values
            loss = F.smooth_l1_loss(q_sa, y)
        clear_grads_(opt)
        loss.backward()
        clip_grads_(params, max_grad_norm)
        step_(opt)
        count[0] += 1
        if count[0] % target_every == 0:
            with torch.no_grad():
                torch._foreach_copy_(t_params, params)

    return update


def nature_batch(b: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (b, 4, 84, 84), dtype=torch.uint8)


def minatar_batch(b: int = 32) -> torch.Tensor:
    return torch.rand(b, 10, 10, 4) < 0.1


# ---------------------------------------------------------------- atari
def _neighbour_loop(go: Any, stop: Any, ready: Any) -> None:
    """A spawned process: while ``go`` is set, step a preprocessed ALE/Breakout-v5 with random
    actions, what a collector does at epsilon ~1 (the bench's whole span); idle otherwise."""
    torch.set_num_threads(1)
    env = make_env("ALE/Breakout-v5", frame_stack=4, life_loss_terminal=True, clip_rewards=True)
    env.reset(seed=1)
    ready.set()
    while not stop.is_set():
        if not go.wait(0.05):
            continue
        if any(env.step(env.action_space.sample())[2:4]):
            env.reset()
    env.close()


class Neighbour:
    """A process that keeps the other core as busy as a collector does (:func:`_neighbour_loop`)
    while ``busy`` is True: a collector run's learner shares the machine with it, and on this VM
    a busy second core slows the first (measured: 20-30% for a matmul loop)."""

    def __init__(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.go, self.stop, ready = ctx.Event(), ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=_neighbour_loop, args=(self.go, self.stop, ready), daemon=True)
        self.proc.start()
        if not ready.wait(120):
            self.close()
            raise RuntimeError("the neighbour process did not start within 120 s")

    def busy(self, on: bool) -> None:
        (self.go.set if on else self.go.clear)()
        time.sleep(0.2)  # let it start (or finish) its current step

    def close(self) -> None:
        self.stop.set()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def floors_alone_and_beside(update: Any, n: int, rounds: int) -> tuple[float, float]:
    """Median seconds per call of ``update``, alone and with a :class:`Neighbour` busy, timed in
    alternating rounds of ``n`` calls (so both see the same drift of this machine)."""
    alone: list[float] = []
    beside: list[float] = []
    nb = Neighbour()
    try:
        for _ in range(rounds):
            for on, out in ((False, alone), (True, beside)):
                nb.busy(on)
                update()
                t0 = time.perf_counter()
                for _ in range(n):
                    update()
                out.append((time.perf_counter() - t0) / n)
    finally:
        nb.close()
    return statistics.median(alone), statistics.median(beside)


def atari_config(steps: int, learning_starts: int, buffer_size: int, amp: str = "none", collectors: int = 0) -> Any:
    return with_overrides(preset("dqn", "ALE/Breakout-v5"), {
        "total_steps": learning_starts + steps, "learning_starts": learning_starts, "buffer_size": buffer_size,
        "eval_every": 0, "eval_episodes": 1, "checkpoint_every": 0, "log_every": 10**9, "save_buffer": False,
        "device": "cpu", "torch_threads": 1, "amp": amp, "collectors": collectors,
    })


def run_fastrl_atari(cfg: Any) -> tuple[float, float, float]:
    """(env steps/s after learning starts, updates per env step, seconds inside ``agent.update``
    per update) of one Trainer run: the last is the run's own update time, measured in the same
    seconds as its throughput."""
    marks: dict[str, tuple[float, int]] = {}
    in_update = [0.0]
    with tempfile.TemporaryDirectory() as run_dir:
        t = Trainer(cfg, run_dir=run_dir, progress=False, tensorboard=False)
        learn, evaluate, update = t.learn, t.evaluate, t.agent.update

        def timed_update(batch: Any) -> Any:
            t0 = time.perf_counter()
            out = update(batch)
            in_update[0] += time.perf_counter() - t0
            return out

        def first_learn() -> None:
            marks.setdefault("start", (time.perf_counter(), t.state.env_steps))
            learn()

        def final_eval() -> Any:  # called once, right after the loop: the end of the measured span
            marks.setdefault("end", (time.perf_counter(), t.state.env_steps))
            return evaluate()

        t.learn, t.evaluate = first_learn, final_eval  # type: ignore[method-assign]
        t.agent.update = timed_update  # type: ignore[method-assign]
        old, arcade.ALE_MAX_FRAMES = arcade.ALE_MAX_FRAMES, 4_000  # the final greedy game: capped (not timed)
        try:
            t.train()
        finally:
            arcade.ALE_MAX_FRAMES = old
        updates = t.agent.updates
        t.close()
    (t0, s0), (t1, s1) = marks["start"], marks["end"]
    return (s1 - s0) / (t1 - t0), updates / max(s1 - s0, 1), in_update[0] / max(updates, 1)


def run_sb3_atari(steps: int, learning_starts: int, buffer_size: int) -> float:
    """Env steps/s of SB3 DQN after learning starts, RL-Zoo's Atari settings (exploration as the
    1M-step schedule would be over this short run)."""
    import ale_py
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    total = learning_starts + steps
    env = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=1, seed=0), n_stack=4)
    model = DQN("CnnPolicy", env, learning_rate=1e-4, buffer_size=buffer_size, learning_starts=learning_starts,
                batch_size=32, train_freq=4, gradient_steps=1, target_update_interval=1000, gamma=0.99,
                exploration_fraction=1.0, exploration_final_eps=1 - 0.99 * total / 1_000_000,
                optimize_memory_usage=False, max_grad_norm=10, seed=0, device="cpu", verbose=0)
    marks: dict[str, tuple[float, int]] = {}

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == learning_starts:
                marks["start"] = (time.perf_counter(), self.num_timesteps)
            return True

    model.learn(total, callback=Clock())
    t1, s1 = time.perf_counter(), model.num_timesteps
    env.close()
    t0, s0 = marks["start"]
    return (s1 - s0) / (t1 - t0)


def part_atari(args: argparse.Namespace) -> None:
    steps, starts = (1_000, 500) if args.quick else (args.steps, args.learning_starts)
    buffer_size = 10_000 if args.quick else 100_000
    print(f"## atari: ALE/Breakout-v5, RL-Zoo DQN settings, env steps/s over {steps} steps after {starts} "
          f"random ones (buffer {buffer_size}), one torch thread\n")
    runs = {  # label: (env steps/s, updates per env step, seconds in agent.update per update)
        "fastrl Trainer": run_fastrl_atari(atari_config(steps, starts, buffer_size)),
        "fastrl Trainer, amp=bf16": run_fastrl_atari(atari_config(steps, starts, buffer_size, "bf16")),
        # one collector process: env steps and acting on the second core, the learner's one thread updating
        "fastrl Trainer, collectors=1": run_fastrl_atari(atari_config(steps, starts, buffer_size, collectors=1)),
        "fastrl Trainer, collectors=1, amp=bf16": run_fastrl_atari(
            atari_config(steps, starts, buffer_size, "bf16", collectors=1)
        ),
    }
    (fast, per_step, _), (fast16, _, _), (conc, _, _), (conc16, _, _) = runs.values()
    try:
        sb3: float | None = run_sb3_atari(steps, starts, buffer_size)
    except ImportError as e:
        print(f"(SB3 not run: {e})")
        sb3 = None
    n, rounds = (10, 3) if args.quick else (30, 9)
    t_update, t_update_nb = floors_alone_and_beside(floor_update(nature_batch(), 4, "nature"), n, rounds)
    t_update16, t_update16_nb = floors_alone_and_beside(floor_update(nature_batch(), 4, "nature", bf16=True), n,
                                                        rounds)
    env = make_env("ALE/Breakout-v5", frame_stack=4, life_loss_terminal=True, clip_rewards=True)
    env.reset(seed=0)

    def env_step() -> None:
        if any(env.step(env.action_space.sample())[2:4]):
            env.reset()

    t_env = median_time(env_step, 200, repeats=3 if args.quick else 7)
    env.close()
    q = QNetwork((4, 84, 84), 4, pixels=True)
    one = nature_batch(1)

    def act() -> None:
        with torch.inference_mode():
            q(one).argmax()

    t_act = median_time(act, 100, repeats=3 if args.quick else 7)
    floor = t_update * per_step
    print("| | seconds per env step | env steps/s |")
    print("|---|---:|---:|")
    print(f"| fastrl Trainer | {1 / fast * 1e3:.3f} ms | {fast:,.0f} |")
    print(f"| fastrl Trainer, amp=bf16 | {1 / fast16 * 1e3:.3f} ms | {fast16:,.0f} |")
    print(f"| fastrl Trainer, collectors=1 | {1 / conc * 1e3:.3f} ms | {conc:,.0f} |")
    print(f"| fastrl Trainer, collectors=1, amp=bf16 | {1 / conc16 * 1e3:.3f} ms | {conc16:,.0f} |")
    if sb3 is not None:
        print(f"| SB3 DQN | {1 / sb3 * 1e3:.3f} ms | {sb3:,.0f} |")
    print(f"| CNN-update floor: {t_update * 1e3:.2f} ms per update x {per_step:.3f} updates per step | "
          f"{floor * 1e3:.3f} ms | {1 / floor:,.0f} |")
    floor16 = t_update16 * per_step
    print(f"| CNN-update floor, bf16 autocast: {t_update16 * 1e3:.2f} ms per update | {floor16 * 1e3:.3f} ms | "
          f"{1 / floor16:,.0f} |")
    floor_nb, floor16_nb = t_update_nb * per_step, t_update16_nb * per_step
    print(f"| CNN-update floor with the other core stepping an ALE game: {t_update_nb * 1e3:.2f} ms per update | "
          f"{floor_nb * 1e3:.3f} ms | {1 / floor_nb:,.0f} |")
    print(f"| the same, bf16 autocast: {t_update16_nb * 1e3:.2f} ms per update | {floor16_nb * 1e3:.3f} ms | "
          f"{1 / floor16_nb:,.0f} |")
    print(f"| bare env step (preprocessed, 4 frames) | {t_env * 1e3:.3f} ms | |")
    print(f"| bare act (one obs, inference_mode; epsilon ~1 here, so rarely called) | {t_act * 1e3:.3f} ms | |")
    overhead = (1 / fast) / floor - 1
    print(f"\nfastrl above the CNN-update floor: {overhead:+.1%} (target <= 10%): {verdict(overhead <= 0.10)}")
    print(f"fastrl above floor + bare env step: {(1 / fast) / (floor + t_env) - 1:+.1%}")
    overhead16 = (1 / fast16) / floor16 - 1
    print(f"fastrl amp=bf16 above the bf16 floor: {overhead16:+.1%}; above floor + bare env step: "
          f"{(1 / fast16) / (floor16 + t_env) - 1:+.1%}")
    oc, oc16 = (1 / conc) / floor - 1, (1 / conc16) / floor16 - 1
    print(f"fastrl collectors=1 above the CNN-update floor: {oc:+.1%} (target <= 10%): {verdict(oc <= 0.10)}")
    print(f"fastrl collectors=1, amp=bf16 above the bf16 floor: {oc16:+.1%} (target <= 10%): {verdict(oc16 <= 0.10)}")
    # a collector run's learner updates while the other core steps envs: its floor is the update timed so
    nb, nb16 = (1 / conc) / floor_nb - 1, (1 / conc16) / floor16_nb - 1
    print(f"fastrl collectors=1 above the floor timed beside a busy core: {nb:+.1%} (target <= 10%): "
          f"{verdict(nb <= 0.10)}")
    print(f"fastrl collectors=1, amp=bf16 above the bf16 floor timed beside a busy core: {nb16:+.1%} "
          f"(target <= 10%): {verdict(nb16 <= 0.10)}")
    print(f"(a busy second core slows the update by {t_update_nb / t_update - 1:+.1%} in fp32, "
          f"{t_update16_nb / t_update16 - 1:+.1%} in bf16)")
    # the floor measured inside each run, in the same seconds as its throughput (this machine's speed
    # drifts by tens of percent between minutes, so a floor timed apart can sit above a run's own updates)
    print("\nin-run: seconds per env step against the run's own time inside agent.update (the learner's")
    print("update, at the same moments); the rest is the loop's overhead, env steps included when sequential:")
    for label, (sps, ups, t_in) in runs.items():
        own = t_in * ups
        print(f"{label}: {t_in * 1e3:.2f} ms per update inside agent.update, {own * 1e3:.3f} ms per env step; "
              f"the run {1 / sps * 1e3:.3f} ms per env step: {(1 / sps) / own - 1:+.1%} above it "
              f"(target <= 10%): {verdict((1 / sps) / own - 1 <= 0.10)}")
    if sb3 is not None:
        for label, v in (("fastrl", fast), ("fastrl amp=bf16", fast16), ("fastrl collectors=1", conc),
                         ("fastrl collectors=1, amp=bf16", conc16)):
            print(f"{label} {v / sb3:.2f}x SB3's env steps/s (target >= 1.5x): {verdict(v / sb3 >= 1.5)}")
    print()


# ---------------------------------------------------------------- precision
def part_precision(args: argparse.Namespace) -> None:
    n, repeats = (5, 3) if args.quick else (50, 7)
    variants = [("fp32", False, False), ("fp32 + channels_last", True, False),
                ("bf16 autocast", False, True), ("bf16 + channels_last", True, True)]
    print(f"## precision: one DQN update at batch 32 on CPU, one thread, median of {repeats} x {n}\n")
    print("| network | " + " | ".join(v[0] for v in variants) + " |")
    print("|---|" + "---:|" * len(variants))
    for label, batch, n_act, pixels in (("Nature CNN, uint8[4, 84, 84]", nature_batch(), 4, "nature"),
                                        ("MinAtar CNN, bool[10, 10, 4]", minatar_batch(), 3, "minatar")):
        times = []
        for _, cl, bf in variants:
            fn = floor_update(batch, n_act, pixels, channels_last=cl, bf16=bf)
            fn()  # warm-up (oneDNN primitive creation)
            times.append(median_time(fn, n, repeats))
        cells = [f"{t * 1e3:.2f} ms ({times[0] / t:.2f}x)" for t in times]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n(x: speed-up over fp32; DQNConfig.amp=bf16 is the bf16 autocast column; no channels_last option)\n")


# ---------------------------------------------------------------- vecenv
def part_vecenv(args: argparse.Namespace) -> None:
    from ale_py.vector_env import AtariVectorEnv

    seconds = 1.0 if args.quick else args.seconds
    counts = (2, 4) if args.quick else tuple(args.envs)
    chunk = 100  # vector steps per timed chunk; the rate is the median over the chunks of a measure
    print(f"## vecenv: ALE/Breakout-v5, frame_stack 4, lost lives terminal, random actions, about {seconds:g} s "
          f"per measure (median of {chunk}-step chunks)\n")
    print("| num_envs | ale-py AtariVectorEnv | fastrl vector_mode=ale | gymnasium SyncVectorEnv (fastrl's chain) "
          "| gymnasium AsyncVectorEnv (fastrl's chain) | ale / async | ale / sync |")
    print("|---:|---:|---:|---:|---:|---:|---:|")

    def rate(envs: Any) -> float:
        envs.reset(seed=0)
        rng, out, start = np.random.default_rng(0), [], time.perf_counter()
        for _ in range(5):  # warm up
            envs.step(rng.integers(envs.single_action_space.n, size=envs.num_envs))
        while time.perf_counter() - start < seconds or len(out) < 3:
            actions = rng.integers(envs.single_action_space.n, size=(chunk, envs.num_envs))
            t0 = time.perf_counter()
            for a in actions:
                envs.step(a)
            out.append(chunk * envs.num_envs / (time.perf_counter() - t0))
        envs.close()
        return statistics.median(out)

    opts = {"life_loss_terminal": True, "clip_rewards": True}
    for n in counts:
        native = rate(AtariVectorEnv("breakout", n, life_loss_info=True, reward_clipping=True, use_fire_reset=True,
                                     repeat_action_probability=0.0))
        ale = rate(make_vec_env("ALE/Breakout-v5", n, "ale", 0, 4, **opts))
        sync = rate(make_vec_env("ALE/Breakout-v5", n, "sync", 0, 4, **opts))
        asyn = rate(make_vec_env("ALE/Breakout-v5", n, "async", 0, 4, **opts))
        print(f"| {n} | {native:,.0f} | {ale:,.0f} | {sync:,.0f} | {asyn:,.0f} | {ale / asyn:.2f}x | {ale / sync:.2f}x |")
    print()


# ---------------------------------------------------------------- minatar
def minatar_fastrl(game: str, seed: int, threshold: float, max_steps: int,
                   extra: dict[str, str] | None = None) -> tuple[dict, list[tuple]]:
    cfg = with_overrides(preset("dqn", f"MinAtar/{game}-v1"), {**(extra or {}),
        "total_steps": max_steps, "seed": seed, "solved_threshold": threshold, "solve_on": "rolling",
        "eval_every": 0, "eval_episodes": 1, "checkpoint_every": 0, "save_buffer": False, "device": "cpu",
        "torch_threads": 1,
    })
    with tempfile.TemporaryDirectory() as run_dir:
        t = Trainer(cfg, run_dir=run_dir, progress=False, tensorboard=False)
        t0, start = time.perf_counter(), time.time()  # metrics.csv's wall_time is time.time()
        r = t.train()
        wall = time.perf_counter() - t0
        t.close()
        curve = []
        with open(Path(run_dir) / "metrics.csv", newline="") as f:
            rows = [row for row in csv.reader(f) if len(row) == 4 and row[2] == "charts/episodic_return"]
        recent: list[float] = []
        for step, w, _, v in rows:
            recent = (recent + [float(v)])[-100:]
            curve.append(("fastrl", game, seed, int(step), float(w) - start, float(v), float(np.mean(recent))))
    return {"steps": r.env_steps if r.solved else None, "wall": wall, "train_seconds": r.train_seconds}, curve


class MinAtarPaperNet:  # built lazily: SB3 is optional
    @staticmethod
    def make() -> Any:
        from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

        class Extractor(BaseFeaturesExtractor):
            """The MinAtar paper's torso: one 3x3 conv of 16 channels, then 128 hidden units."""

            def __init__(self, space: gym.spaces.Box) -> None:
                super().__init__(space, features_dim=128)
                h, w, c = space.shape
                self.conv = torch.nn.Conv2d(c, 16, 3)
                self.fc = torch.nn.Linear(16 * (h - 2) * (w - 2), 128)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                x = torch.relu(self.conv(x.permute(0, 3, 1, 2).float()))
                return torch.relu(self.fc(x.flatten(1)))

        return Extractor


def minatar_sb3(seed: int, threshold: float, max_steps: int) -> tuple[dict, list[tuple]]:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    env = make_env("MinAtar/Breakout-v1")
    model = DQN("MlpPolicy", env, learning_rate=2.5e-4, buffer_size=100_000, learning_starts=5_000, batch_size=32,
                train_freq=1, gradient_steps=1, target_update_interval=1_000, gamma=0.99,
                exploration_initial_eps=1.0, exploration_final_eps=0.1,
                exploration_fraction=min(1.0, 100_000 / max_steps), max_grad_norm=1e9, seed=seed, device="cpu",
                policy_kwargs=dict(features_extractor_class=MinAtarPaperNet.make(), net_arch=[],
                                   optimizer_class=torch.optim.RMSprop,
                                   optimizer_kwargs=dict(alpha=0.95, eps=0.01, centered=True)), verbose=0)
    curve: list[tuple] = []
    t0 = time.perf_counter()
    solved: list[int] = []
    recent: deque[float] = deque(maxlen=100)  # (SB3's ep_info_buffer is filled after the callback runs)

    class Watch(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    recent.append(float(info["episode"]["r"]))
                    curve.append(("sb3", "Breakout", seed, self.num_timesteps, time.perf_counter() - t0,
                                  float(info["episode"]["r"]), float(np.mean(recent))))
                    if len(recent) == recent.maxlen and np.mean(recent) >= threshold:
                        solved.append(self.num_timesteps)
                        return False
            return True

    model.learn(max_steps, callback=Watch())
    wall = time.perf_counter() - t0
    env.close()
    return {"steps": solved[0] if solved else None, "wall": wall, "train_seconds": wall}, curve


def part_minatar(args: argparse.Namespace) -> None:
    games = [g for g in (("Breakout", 10.0, 500_000), ("Freeway", 50.0, 1_000_000)) if g[0] in args.games]
    seeds = [0] if args.quick else args.seeds
    cap = 6_000 if args.quick else None  # quick: a smoke of each path (1,000 updates), not learning
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple] = []
    path = out / "minatar_curves.csv"
    f = open(path, "w", newline="")  # each run's episodes are written as soon as it ends
    w = csv.writer(f)
    w.writerow(["lib", "game", "seed", "step", "wall_seconds", "episodic_return", "mean_last_100"])

    def keep(curve: list[tuple]) -> None:
        rows.extend(curve)
        w.writerows(curve)
        f.flush()

    print(f"## minatar: steps and wall time until the last 100 training returns average the threshold"
          f"{' (quick: capped at 6,000 steps, thresholds not expected)' if cap else ''}\n")
    print("| run | seed | threshold | steps to it | wall s | training s |")
    print("|---|---:|---:|---:|---:|---:|")
    for game, thr, max_steps in games:
        for seed in seeds:
            res, curve = minatar_fastrl(game, seed, thr, cap or max_steps, parse_assignments(args.set))
            keep(curve)
            missed = f"not reached (last 100: {curve[-1][-1]:.2f})" if curve else "not reached"
            print(f"| fastrl {game} | {seed} | {thr:g} | {res['steps'] or missed} | {res['wall']:.1f} | "
                  f"{res['train_seconds']:.1f} |")
    if args.sb3:
        for seed in seeds:
            res, curve = minatar_sb3(seed, 10.0, cap or args.sb3_steps)
            keep(curve)
            missed = f"not reached (last 100: {curve[-1][-1]:.2f})" if curve else "not reached"
            print(f"| SB3 Breakout (paper net) | {seed} | 10 | {res['steps'] or missed} | {res['wall']:.1f} | "
                  f"{res['train_seconds']:.1f} |")
    f.close()
    print(f"\nwrote {path} ({len(rows)} episodes)\n")
    if args.sb3 and any(r[0] == "fastrl" and r[1] == "Breakout" for r in rows):
        compare_breakout(rows)


def first_time(curve: list[tuple], level: float) -> float | None:
    """Wall seconds at the first episode after which the last 100 returns average >= ``level``."""
    return next((r[4] for i, r in enumerate(curve) if i >= 99 and r[6] >= level), None)


def compare_breakout(rows: list[tuple], threshold: float = 10.0) -> None:
    """fastrl's wall time to the Breakout threshold against SB3's, from the runs' curves. Where SB3 has
    not reached it, its time is only known to exceed its run's length: the ratio is then an upper bound.
    Also each one's time to the best 100-episode mean SB3 reached (a level both reach)."""
    runs: dict[tuple[str, int], list[tuple]] = {}
    for r in rows:
        if r[1] == "Breakout":
            runs.setdefault((r[0], int(r[2])), []).append(r)
    fastrl = {s: c for (lib, s), c in runs.items() if lib == "fastrl"}
    sb3 = {s: c for (lib, s), c in runs.items() if lib == "sb3"}
    if not fastrl or not sb3:
        print("Breakout: no fastrl or no SB3 curve: no ratio")
        return
    ft = [first_time(c, threshold) for c in fastrl.values()]
    st = [first_time(c, threshold) for c in sb3.values()]
    if None in ft:
        print(f"Breakout to {threshold:g}: fastrl missed it on {ft.count(None)} seed(s): no ratio")
    else:
        f_med = statistics.median(t for t in ft if t is not None)
        if None not in st:
            ratio = f_med / statistics.median(t for t in st if t is not None)
            print(f"Breakout to {threshold:g}: fastrl's median {f_med:.0f} s, {ratio:.2f} of SB3's (target <= 0.25): "
                  f"{verdict(ratio <= 0.25)}")
        else:  # SB3 did not get there: its time is more than its whole run
            longest = max(c[-1][4] for c in sb3.values())
            bound = f_med / longest
            print(f"Breakout to {threshold:g}: fastrl's median {f_med:.0f} s; SB3 did not reach it in "
                  f"{max(c[-1][3] for c in sb3.values()):,} steps ({longest:.0f} s, best 100-episode mean "
                  f"{max(r[6] for c in sb3.values() for r in c[99:]):.2f}): ratio < {bound:.2f} "
                  f"(target <= 0.25): {verdict(bound <= 0.25)}")
    level = min(max(r[6] for r in c[99:]) for c in sb3.values())
    f_lv = [first_time(c, level) for c in fastrl.values()]
    s_lv = [first_time(c, level) for c in sb3.values()]
    if None not in f_lv and None not in s_lv:
        fm = statistics.median(t for t in f_lv if t is not None)
        sm = statistics.median(t for t in s_lv if t is not None)
        print(f"Breakout to SB3's best 100-episode mean ({level:.2f}): fastrl {fm:.0f} s (median), SB3 {sm:.0f} s: "
              f"{fm / sm:.2f}")


def read_curves(paths: list[str]) -> list[tuple]:
    """Rows of minatar_curves.csv files (several runs' outputs compared together)."""
    out: list[tuple] = []
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                out.append((r["lib"], r["game"], int(r["seed"]), int(r["step"]), float(r["wall_seconds"]),
                            float(r["episodic_return"]), float(r["mean_last_100"])))
    return out


PARTS = {"replay": part_replay, "atari": part_atari, "precision": part_precision, "vecenv": part_vecenv,
         "minatar": part_minatar}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=[*PARTS, "all"], default="all")
    p.add_argument("--quick", action="store_true", help="a short smoke of each part (numbers mean little)")
    p.add_argument("--steps", type=int, default=20_000, help="atari: env steps measured after learning starts")
    p.add_argument("--learning-starts", type=int, default=5_000, help="atari: random steps before learning")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="minatar: seeds")
    p.add_argument("--games", nargs="*", default=["Breakout", "Freeway"], choices=["Breakout", "Freeway"],
                   help="minatar: games run by fastrl (none: only --sb3)")
    p.add_argument("--sb3", action="store_true", help="minatar: also SB3 DQN on Breakout with the paper's network")
    p.add_argument("--sb3-steps", type=int, default=1_000_000, help="minatar: SB3's step budget on Breakout")
    p.add_argument("--compare", nargs="+", metavar="CSV",
                   help="instead of running: compare the Breakout curves in these minatar_curves.csv files")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="minatar: a config field over fastrl's preset (repeatable), to try other settings")
    p.add_argument("--envs", type=int, nargs="+", default=[2, 4, 8], help="vecenv: num_envs measured")
    p.add_argument("--seconds", type=float, default=10.0, help="vecenv: seconds per measure")
    p.add_argument("--out", default="bench_out", help="folder for minatar_curves.csv")
    args = p.parse_args(argv)
    if args.compare:
        compare_breakout(read_curves(args.compare))
        return
    for name in PARTS if args.part == "all" else [args.part]:
        t0 = time.perf_counter()
        PARTS[name](args)
        print(f"({name}: {time.perf_counter() - t0:.0f} s)\n")


if __name__ == "__main__":
    main()
