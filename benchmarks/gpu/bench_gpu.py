"""The GPU benchmarks of issue 19, each against its baseline in the same run (benchmarks/gpu/run.sh
runs them after the tests; docs/gpu.md says what each figure means).

  graph     CUDA-graph update (DQNConfig.cuda_graph) vs eager, the LunarLander DQN preset's
            network and batch (MLP 128x128, B=64, Polyak target in the graph): updates/s, target >= 3x
  prefetch  background pinned prefetch vs sample + copy in the loop, for the LunarLander preset and for
            32 stacked uint8[4, 84, 84] frames (Nature CNN): per-iteration times and the share of the
            sample + copy time that the update no longer waits for
  cnn       Nature-CNN DQN updates/s, uint8 frames on the device scaled there: eager, CUDA graph, and
            each under bf16 autocast
  e2e       the CartPole and LunarLander DQN presets' wall time to their thresholds on the CPU vs the
            GPU (CUDA graph on), each run capped in time; CPU runs in parallel processes, GPU runs one
            at a time
  atari     ale-py / MinAtar readiness, then Breakout throughput (env steps/s, updates/s) at RL-Zoo's DQN
            settings on the GPU: eager, CUDA graph, and the m-dqn preset (Munchausen-DQN) with
            a CUDA graph; ale-py's native env and no score evaluation (no opencv on the GPU machine)

Without CUDA every CUDA-only part prints ``SKIP (no CUDA): ...``; ``--dry-run`` runs every code path
at tiny sizes (what ``GPU_DRY_RUN=1 bash benchmarks/gpu/run.sh`` does on a CPU machine). Writes
``gpu.json`` and PNGs into ``--out``; exits 1 if a section raised (the others still run).

    python -P benchmarks/gpu/bench_gpu.py --out DIR [--dry-run] [--only graph prefetch cnn e2e atari]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for bench_prefetch
from bench_prefetch import make as filled_buffer  # noqa: E402  (a buffer filled with random rows)

from fastrl.agents.dqn import DQN, DQNConfig  # noqa: E402
from fastrl.agents.presets import preset  # noqa: E402
from fastrl.config import with_overrides  # noqa: E402
from fastrl.training.trainer import Trainer  # noqa: E402

SECTIONS = ("graph", "prefetch", "cnn", "e2e", "atari")
LUNAR_OBS, LUNAR_ACTIONS = (8,), 4  # LunarLander-v3's spaces (the update benchmarks need no Box2D)
FRAMES, FRAME_ACTIONS = (4, 84, 84), 6  # 4 stacked 84x84 Atari frames; Pong's 6 actions
E2E_CAPS = {"CartPole-v1": 30.0, "LunarLander-v3": 90.0}  # seconds of wall time per run
E2E_SLACK = 20.0  # per run: process start, imports, CUDA init, the envs, the last evaluation
GRAPH_TARGET = 3.0


class Report:
    """Lines to stdout, figures to gpu.json, SKIP lines and errors kept for the summary."""

    def __init__(self, out: Path, dry_run: bool) -> None:
        self.out, self.dry_run = out, dry_run
        self.data: dict[str, Any] = {"meta": meta(dry_run), "skips": [], "errors": [], "checks": {}}

    def say(self, line: str) -> None:
        print(line, flush=True)

    def skip(self, why: str) -> None:
        self.data["skips"].append(why)
        self.say(f"SKIP {why}")

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.data["checks"][name] = {"ok": ok, "detail": detail}
        self.say(f"CHECK {name}: {'PASS' if ok else 'FAIL'} ({detail})")

    def write(self) -> Path:
        path = self.out / "gpu.json"
        path.write_text(json.dumps(self.data, indent=2, default=float))
        return path


def meta(dry_run: bool) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "dry_run": dry_run,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "device": "cuda" if cuda else "cpu",
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_call(fns: dict[str, Callable[[], Any]], device: torch.device, n: int, rounds: int) -> dict[str, float]:
    """Median seconds per call of each function: ``rounds`` rounds of ``n`` calls, the functions
    taking turns (round-robin, so drifts in clock or load hit all alike), the device synchronised
    at the end of each timed block (the queued work is counted), after 5 warm-up calls each."""
    for f in fns.values():
        for _ in range(5):
            f()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            sync(device)
            times[k].append((time.perf_counter() - t0) / n)
    return {k: statistics.median(v) for k, v in times.items()}


def lunar_config(device: torch.device, **over: Any) -> DQNConfig:
    return with_overrides(preset("dqn", "LunarLander-v3"), {"device": device.type, **over})


# ---------------------------------------------------------------------------- (a) graph
def bench_graph(r: Report, device: torch.device, small: bool) -> None:
    """The LunarLander preset's update (128x128 MLP, B=64, Double DQN, MSE, Polyak every update)
    on a fixed device batch, eager vs CUDA graph (the batch is copied into the graph's static
    inputs on every update, as in training)."""
    cfg = lunar_config(device)
    buf = filled_buffer("uniform", LUNAR_OBS, "float32", 2_000 if small else 100_000)
    batch = buf.sample(cfg.batch_size, device=device)
    agents = {"eager": DQN(LUNAR_OBS, LUNAR_ACTIONS, cfg, device, seed=0)}
    if device.type == "cuda":
        agents["graph"] = DQN(LUNAR_OBS, LUNAR_ACTIONS, with_overrides(cfg, {"cuda_graph": True}), device, seed=0)
    else:
        r.skip("(no CUDA): CUDA-graph update of the LunarLander preset (cuda_graph=True needs a CUDA device)")
    fns = {k: (lambda a=a: a.update(batch)) for k, a in agents.items()}
    t = per_call(fns, device, 3 if small else 500, 2 if small else 5)
    res = {k: {"us_per_update": v * 1e6, "updates_per_s": 1 / v} for k, v in t.items()}
    for k, v in res.items():
        r.say(
            f"graph  LunarLander preset update, {k:<5} on {device.type}: {v['updates_per_s']:9.0f} updates/s "
            f"({v['us_per_update']:.1f} us)"
        )
    if "graph" in t:
        speedup = t["eager"] / t["graph"]
        res["speedup"] = speedup
        r.check("cuda_graph_speedup", speedup >= GRAPH_TARGET, f"{speedup:.2f}x, target >= {GRAPH_TARGET:.0f}x")
    r.data["graph"] = res


# ---------------------------------------------------------------------------- (b) prefetch
def bench_prefetch(r: Report, device: torch.device, small: bool) -> None:
    """Per iteration: ``copy`` = buffer.sample(B, device) alone (gather into pinned memory and the
    non-blocking copy); ``update`` = the update alone on a fixed device batch; ``plain`` = sample
    then update; ``prefetch`` = pf.next(), update, pf.wait(). ``hidden`` = (plain - prefetch) /
    copy: the share of the sample + copy time that the update no longer waits for."""
    if device.type != "cuda":
        r.skip("(no CUDA): pinned host memory and non-blocking copies (the CPU run samples into plain memory)")
    settings = [
        (
            "LunarLander preset: float32[8], MLP 128x128",
            LUNAR_OBS,
            "float32",
            LUNAR_ACTIONS,
            lunar_config(device),
            False,
            2_000 if small else 100_000,
        ),
        (
            "Atari frames: uint8[4,84,84], Nature CNN",
            FRAMES,
            "uint8",
            FRAME_ACTIONS,
            DQNConfig(batch_size=32, learning_rate=1e-4, device=device.type),
            True,
            200 if small else 20_000,
        ),
    ]
    rows = []
    for label, shape, dtype, n_act, cfg, pixels, cap in settings:
        b = 4 if small else cfg.batch_size
        buf = filled_buffer("uniform", shape, dtype, cap)
        agent = DQN(shape, n_act, cfg, device, pixels=pixels, seed=0)
        fixed = buf.sample(b, device=device)
        with buf.prefetcher(b, device=device) as pf:

            def pre(pf: Any = pf, agent: DQN = agent) -> None:
                agent.update(pf.next())
                pf.wait()

            fns = {
                "copy": lambda buf=buf, b=b: buf.sample(b, device=device),
                "update": lambda agent=agent, fixed=fixed: agent.update(fixed),
                "plain": lambda buf=buf, b=b, agent=agent: agent.update(buf.sample(b, device=device)),
                "prefetch": pre,
            }
            t = per_call(fns, device, 3 if small else 300, 2 if small else 5)
        us = {k: v * 1e6 for k, v in t.items()}
        hidden = (us["plain"] - us["prefetch"]) / us["copy"]
        label = f"{label}, B={b}"
        rows.append(
            {
                "setting": label,
                "batch": b,
                "device": device.type,
                **{f"{k}_us": v for k, v in us.items()},
                "hidden": hidden,
            }
        )
        r.say(
            f"prefetch  {label} on {device.type}: copy {us['copy']:.1f} us, update {us['update']:.1f} us, "
            f"plain {us['plain']:.1f} us, prefetch {us['prefetch']:.1f} us; hidden {hidden:.0%} of the copy"
        )
    r.data["prefetch"] = rows


# ---------------------------------------------------------------------------- (c) cnn
def bench_cnn(r: Report, device: torch.device, small: bool) -> None:
    """Nature-CNN DQN (B=32, 6 actions) on uint8[4, 84, 84] frames that stay uint8 until the
    network scales them on the device: eager, CUDA graph, and both under bf16 autocast."""
    cfg = DQNConfig(batch_size=32, learning_rate=1e-4, device=device.type, target_update_interval=1000)
    b = 4 if small else cfg.batch_size
    buf = filled_buffer("uniform", FRAMES, "uint8", 200 if small else 5_000)
    batch = buf.sample(b, device=device)
    assert batch.observations.dtype == torch.uint8  # scaled in NatureCNN.forward, on the device
    variants: dict[str, tuple[bool, bool]] = {"eager": (False, False)}
    if device.type == "cuda":
        variants.update({"graph": (True, False), "eager_bf16": (False, True), "graph_bf16": (True, True)})
    else:
        r.skip("(no CUDA): Nature-CNN update with a CUDA graph and with bf16 autocast")
    fns = {}
    for name, (graph, bf16) in variants.items():
        agent = DQN(FRAMES, FRAME_ACTIONS, with_overrides(cfg, {"cuda_graph": graph}), device, pixels=True, seed=0)

        def step(agent: DQN = agent, bf16: bool = bf16) -> None:
            # cache_enabled=False: autocast's weight-cast cache must not outlive a graph capture
            ctx = torch.autocast("cuda", torch.bfloat16, cache_enabled=False) if bf16 else contextlib.nullcontext()
            with ctx:
                agent.update(batch)

        fns[name] = step
    t = per_call(fns, device, 2 if small else 300, 2 if small else 5)
    res: dict[str, Any] = {k: {"us_per_update": v * 1e6, "updates_per_s": 1 / v} for k, v in t.items()}
    for k, v in res.items():
        r.say(
            f"cnn  Nature-CNN DQN update B={b}, {k:<10} on {device.type}: {v['updates_per_s']:8.0f} updates/s "
            f"({v['us_per_update']:.1f} us)"
        )
    if "graph" in t:
        res["graph_speedup"] = t["eager"] / t["graph"]
        res["bf16_speedup_graph"] = t["graph"] / t["graph_bf16"]
        r.say(
            f"cnn  graph / eager {res['graph_speedup']:.2f}x; bf16 autocast with the graph "
            f"{res['bf16_speedup_graph']:.2f}x ({'helps' if res['bf16_speedup_graph'] > 1.05 else 'does not help'})"
        )
    r.data["cnn"] = res


# ---------------------------------------------------------------------------- (d) end to end
class _TimeUp(Exception):
    pass


def e2e_run(env_id: str, device: str, over: dict[str, Any], cap: float) -> dict[str, Any]:
    """One preset run (in a child process) until its solved threshold, its step budget or ``cap``
    seconds of wall time (checked at every log, 1,000 env steps)."""
    cfg = with_overrides(
        preset("dqn", env_id),
        {"device": device, "checkpoint_every": 0, "save_buffer": False, "log_every": 1_000, **over},
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, run_dir=Path(tmp) / "run", progress=False, tensorboard=False)
        t0 = time.perf_counter()
        log = trainer.on_event["log"]

        def log_or_stop() -> None:
            log()
            if time.perf_counter() - t0 > cap:
                trainer.state.stop_clock()  # train_seconds up to now (train() stops it only at its end)
                raise _TimeUp

        trainer.on_event["log"] = log_or_stop
        capped = False
        try:
            trainer.train()
        except _TimeUp:
            capped = True
        finally:
            trainer.close()
        res = trainer.result()
    first = res.first_reaching(cfg.solved_threshold) if cfg.solved_threshold is not None else None
    return {
        "env": env_id,
        "device": device,
        "cuda_graph": bool(getattr(cfg, "cuda_graph", False)),
        "capped": capped,
        "cap_s": cap,
        "threshold": cfg.solved_threshold,
        "reached": first is not None,
        "time_to_s": first and first["train_seconds"],
        "steps_to": first and first["step"],
        "env_steps": res.env_steps,
        "train_seconds": res.train_seconds,
        "sps": res.sps,
        "best_eval": max((e["mean"] for e in res.evals), default=None),
    }


def e2e_many(runs: list[tuple[str, str, dict[str, Any], float]]) -> list[dict[str, Any]]:
    return [e2e_run(*run) for run in runs]


def lunar_available() -> str | None:
    """None if LunarLander-v3 can be made, else why not."""
    try:
        import gymnasium as gym

        gym.make("LunarLander-v3").close()
    except Exception as e:  # gymnasium's DependencyNotInstalled, ImportError, ...
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return None


def bench_e2e(r: Report, device: torch.device, small: bool) -> None:
    envs = ["CartPole-v1"]
    why = lunar_available()
    if why is None:
        envs.append("LunarLander-v3")
    else:
        r.skip(f"(no Box2D): LunarLander-v3 end to end ({why}); CartPole-v1 stands in")
    over: dict[str, Any] = {"seed": 0}
    if small:
        over.update(
            total_steps=600,
            learning_starts=200,
            eval_every=300,
            eval_episodes=2,
            buffer_size=2_000,
            max_episode_steps=200,
            log_every=200,
        )
    # the dry run: CartPole runs to its end, LunarLander stops at its first log (the capped path)
    caps = {e: ({"CartPole-v1": 60.0, "LunarLander-v3": 0.0}[e] if small else E2E_CAPS[e]) for e in envs}
    cpu_runs = [(e, "cpu", over, caps[e]) for e in envs]
    gpu_runs = [(e, "cuda", {**over, "cuda_graph": True}, caps[e]) for e in envs] if device.type == "cuda" else []
    if not gpu_runs:
        r.skip("(no CUDA): end-to-end runs on the GPU (the CPU runs still go)")
    ctx = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(len(cpu_runs) + 1, mp_context=ctx)
    jobs = [pool.submit(e2e_many, [run]) for run in cpu_runs]  # CPU runs side by side, one core each
    if gpu_runs:
        jobs.append(pool.submit(e2e_many, gpu_runs))  # GPU runs one at a time: no sharing of the GPU
    # a backstop only (each run stops itself at its cap): the GPU chain's caps plus slack per run
    deadline = time.monotonic() + sum(caps.values()) + E2E_SLACK * len(envs)
    rows = []
    try:
        for j in jobs:
            try:
                rows += j.result(timeout=max(1.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                r.data["errors"].append({"section": "e2e", "traceback": "a run outlived its cap and the slack"})
                r.say("ERROR in e2e: a run outlived its cap and the slack; its row is missing")
    finally:
        for p in multiprocessing.active_children():  # the pool's workers, if a run is stuck
            p.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
    for row in rows:
        to = f"{row['time_to_s']:.1f} s ({row['steps_to']} steps)" if row["reached"] else "not reached"
        best = "-" if row["best_eval"] is None else f"{row['best_eval']:.1f}"
        capped = f", capped at {row['cap_s']:.0f} s" if row["capped"] else ""
        r.say(
            f"e2e  {row['env']:<15} {row['device']:<4}{' graph' if row['cuda_graph'] else '':6} "
            f"to {row['threshold']}: {to}; {row['env_steps']} steps in {row['train_seconds']:.1f} s "
            f"({row['sps']:.0f}/s), best eval {best}{capped}"
        )
    r.data["e2e"] = rows


# ---------------------------------------------------------------------------- (e) atari
ATARI_STEPS = {"full": (1_000, 3_000), "small": (100, 200)}  # (random steps, steps timed after learning starts)


def atari_rate(device: str, name: str, over: dict[str, Any], starts: int, steps: int) -> dict[str, Any]:
    """Env steps/s of one Breakout run of ``preset("dqn", "ALE/Breakout-v5", name)`` (batch 32, one
    update per 4 steps; a 100k buffer) from its first update to its end, and its updates per second.
    ale-py's native env (``vector_mode=ale``, one game) and no game-score evaluation: gymnasium's
    AtariPreprocessing (the chain and the evaluation use it) needs opencv, whose 58 MB wheel does
    not fit the device carry with the others."""
    cfg = with_overrides(
        preset("dqn", "ALE/Breakout-v5", name),
        {
            "device": device,
            "total_steps": starts + steps,
            "learning_starts": starts,
            "buffer_size": 100_000,
            "vector_mode": "ale",
            "eval_every": 0,
            "checkpoint_every": 0,
            "save_buffer": False,
            "log_every": 10**9,
            **over,
        },
    )
    marks: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(cfg, run_dir=Path(tmp) / "run", progress=False, tensorboard=False)
        learn = t.learn

        def first_learn() -> None:
            marks.setdefault("start", (time.perf_counter(), t.state.env_steps))
            learn()

        def end_of_loop() -> dict[str, float]:  # the trainer's final evaluation: the end of the span
            sync(torch.device(device))
            marks["end"] = (time.perf_counter(), t.state.env_steps)
            return {}

        t.learn, t.evaluate = first_learn, end_of_loop  # type: ignore[method-assign]
        try:
            t.train()
        finally:
            t.close()
        updates = t.agent.updates
    (t0, s0), (t1, s1) = marks["start"], marks["end"]
    return {
        "preset": name,
        "device": device,
        **over,
        "env_steps_per_s": (s1 - s0) / (t1 - t0),
        "updates_per_s": updates / (t1 - t0),
        "timed_steps": s1 - s0,
    }


def bench_atari(r: Report, device: torch.device, small: bool) -> None:
    """Atari throughput at RL-Zoo's DQN settings on Breakout: the RL-Zoo preset eager and with CUDA
    graphs, and the m-dqn preset (Munchausen-DQN), each after a few random steps. The Pong run
    to a score of 18 (hours of training) does not fit the 8-minute check: not run."""
    ready: dict[str, Any] = {}
    try:
        import ale_py
        import gymnasium as gym

        gym.register_envs(ale_py)
        env = gym.make("ALE/Pong-v5")
        obs, _ = env.reset(seed=0)
        env.close()
        ready["ale_py"] = f"{ale_py.__version__}, ALE/Pong-v5 obs {tuple(obs.shape)}"
    except Exception as e:
        ready["ale_py"] = f"not usable: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    try:
        import minatar  # noqa: F401

        ready["minatar"] = "importable"
    except Exception as e:
        ready["minatar"] = f"not usable: {type(e).__name__}"
    for k, v in ready.items():
        r.say(f"atari  readiness: {k} {v}")
    r.data["atari"] = {"readiness": ready, "runs": []}
    r.skip("atari: the Pong run to >= 18 (hours of training; fastrl has no tuned Atari preset yet): not in this check")
    if not ready["ale_py"][0].isdigit():
        r.skip("atari: ale-py is not usable here, so no Atari throughput")
        return
    if device.type != "cuda" and not small:
        r.skip("(no CUDA): Atari throughput on the GPU")
        return
    starts, steps = ATARI_STEPS["small" if small else "full"]
    runs = [("default", {}), ("default", {"cuda_graph": True}), ("m-dqn", {"cuda_graph": True})]
    if device.type != "cuda":  # the dry run: every path once on CPU, no CUDA graph
        runs = [("default", {}), ("m-dqn", {})]
    for name, over in runs:
        row = atari_rate(device.type, name, over, starts, steps)
        r.data["atari"]["runs"].append(row)
        r.say(
            f"atari  Breakout {name:<7} {device.type}{' graph' if over.get('cuda_graph') else '':6} "
            f"{row['env_steps_per_s']:7.0f} env steps/s, {row['updates_per_s']:6.0f} updates/s "
            f"({row['timed_steps']} steps after {starts} random)"
        )


# ---------------------------------------------------------------------------- plots
def plot(r: Report) -> list[Path]:
    """Up to three PNGs: updates/s (graph and cnn), prefetch times, end-to-end times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, where, paths = r.data, f"{d_device(r)}{' (dry run)' if r.dry_run else ''}", []
    bars = [(f"MLP {k}", v["updates_per_s"]) for k, v in d.get("graph", {}).items() if isinstance(v, dict)]
    bars += [(f"CNN {k}", v["updates_per_s"]) for k, v in d.get("cnn", {}).items() if isinstance(v, dict)]
    if bars:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.bar([b[0] for b in bars], [b[1] for b in bars], color="tab:blue")
        ax.set_ylabel("updates / s")
        ax.set_title(f"DQN updates per second, eager vs CUDA graph, {where}")
        ax.tick_params(axis="x", rotation=20)
        paths.append(save(fig, r.out / "updates.png"))
    if d.get("prefetch"):
        keys = ("copy", "update", "plain", "prefetch")
        fig, axes = plt.subplots(1, len(d["prefetch"]), figsize=(10, 4), squeeze=False)
        for ax, row in zip(axes[0], d["prefetch"]):
            ax.bar(keys, [row[f"{k}_us"] for k in keys], color=["tab:gray", "tab:gray", "tab:orange", "tab:blue"])
            ax.set_title(f"{row['setting']}\nhidden {row['hidden']:.0%} of the copy", fontsize=9)
            ax.set_ylabel("us per iteration")
        fig.suptitle(f"sample + copy in the loop (plain) vs background prefetch, {where}")
        paths.append(save(fig, r.out / "prefetch.png"))
    if d.get("e2e"):
        fig, ax = plt.subplots(figsize=(8, 4))
        rows = d["e2e"]
        labels = [f"{x['env']}\n{x['device']}{' graph' if x['cuda_graph'] else ''}" for x in rows]
        vals = [x["time_to_s"] if x["reached"] else x["train_seconds"] for x in rows]
        colors = ["tab:green" if x["reached"] else "tab:gray" for x in rows]
        ax.bar(labels, vals, color=colors)
        ax.set_ylabel("training seconds")
        ax.set_title(f"presets end to end, {where}\ngreen: time to the threshold; gray: not reached (time trained)")
        paths.append(save(fig, r.out / "e2e.png"))
    return paths


def d_device(r: Report) -> str:
    m = r.data["meta"]
    return m["gpu"] or "CPU"


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- main
BENCHES: dict[str, Callable[[Report, torch.device, bool], None]] = {
    "graph": bench_graph,
    "prefetch": bench_prefetch,
    "cnn": bench_cnn,
    "e2e": bench_e2e,
    "atari": bench_atari,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu.json and the PNGs")
    ap.add_argument("--dry-run", action="store_true", help="every code path at tiny sizes (CPU machines)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    r = Report(args.out, args.dry_run)
    m = r.data["meta"]
    r.say(
        f"bench_gpu: {m['date']}, {m['gpu'] or 'no GPU'}, torch {m['torch']} (CUDA {m['cuda']}), "
        f"Python {m['python']}, {m['cpus']} CPUs{', dry run (tiny sizes)' if args.dry_run else ''}"
    )
    if device.type != "cuda":
        r.say("SKIP (no CUDA): torch sees no CUDA device; the CUDA-only parts below are skipped, the rest runs on CPU")
    for name in args.only:
        t0 = time.perf_counter()
        r.say(f"-- {name}")
        try:
            BENCHES[name](r, device, args.dry_run)
        except Exception:
            r.data["errors"].append({"section": name, "traceback": traceback.format_exc()})
            r.say(f"ERROR in {name}:\n{traceback.format_exc()}")
        r.say(f"-- {name}: {time.perf_counter() - t0:.1f} s")
        r.write()  # after every section: a step timeout later on keeps the figures so far
    r.say(f"wrote {r.write()} and {', '.join(p.name for p in plot(r))}")
    if r.data["errors"]:
        r.say(f"bench_gpu: {len(r.data['errors'])} section(s) failed: {[e['section'] for e in r.data['errors']]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
