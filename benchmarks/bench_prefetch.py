"""Background prefetch (buffer.prefetcher) against sampling in the training thread.

Each iteration samples a batch and runs one DQN update on it (forward, Huber loss, backward,
fused Adam; the sampled tensors are read by the update). Timed, in the same run, round-robin:
  sample   batch = buffer.sample(B), then the update,
  prefetch batch = pf.next() (drawn in the background during the previous update), the update,
           then pf.wait() (where a trainer would write the buffer).
Settings: float32[8] observations with an MLP (gathers are cheap) and uint8[4, 84, 84] Atari
frames with the Nature CNN (a 32-batch gather moves 1.8 MB), uniform and prioritized.

    python benchmarks/bench_prefetch.py [--rounds 7] [--iters 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import fastrl
from fastrl.agents.nets import QNetwork

torch.set_num_threads(1)


def make(kind: str, shape: tuple[int, ...], dtype: Any, cap: int) -> Any:
    kw = dict(observation_shape=shape, observation_dtype=dtype, seed=0)
    buf = fastrl.PrioritizedReplayBuffer(cap, **kw) if kind == "per" else fastrl.ReplayBuffer(cap, **kw)
    g = np.random.default_rng(0)
    for start in range(0, cap, 1000):
        n = min(1000, cap - start)
        obs = (g.integers(0, 255, (n, *shape), dtype=np.uint8) if dtype == "uint8"
               else g.standard_normal((n, *shape), dtype=np.float32))
        buf.extend(obs, g.integers(0, 4, n), g.standard_normal(n).astype(np.float32), obs,
                   g.random(n) < 0.01, np.zeros(n, bool))
    return buf


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, 1 torch thread, {os.cpu_count()} CPUs; us per iteration, median of "
          f"{args.rounds} rounds of {args.iters}; load {os.getloadavg()[0]:.2f}")
    print(f"{'setting':<42}{'sample':>9}{'prefetch':>10}{'ratio':>8}")
    for label, shape, dtype, cap, batch, pixels in [
            ("float32[8], MLP 128x128, B=64", (8,), "float32", 100_000, 64, False),
            ("uint8[4,84,84], Nature CNN, B=32", (4, 84, 84), "uint8", 20_000, 32, True)]:
        for kind in ("uniform", "per"):
            buf = make(kind, shape, dtype, cap)
            q = QNetwork(shape, 4, (128, 128), pixels=pixels)
            opt = torch.optim.Adam(q.parameters(), lr=1e-4, fused=True)

            def update(b: Any) -> None:
                qa = q(b.observations).gather(1, b.actions.view(-1, 1)).squeeze(1)
                loss = F.smooth_l1_loss(qa, b.rewards)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            beta = {"beta": 0.4} if kind == "per" else {}
            pf = buf.prefetcher(batch, **beta)

            def plain() -> None:
                update(buf.sample(batch, **beta))

            def pre() -> None:
                update(pf.next())
                pf.wait()

            times: dict[str, list[float]] = {"sample": [], "prefetch": []}
            for f in (plain, pre):
                for _ in range(10):
                    f()
            for _ in range(args.rounds):
                for name, f in (("sample", plain), ("prefetch", pre)):
                    t0 = time.perf_counter()
                    for _ in range(args.iters):
                        f()
                    times[name].append((time.perf_counter() - t0) / args.iters * 1e6)
            pf.close()
            s, p = statistics.median(times["sample"]), statistics.median(times["prefetch"])
            print(f"{label + ' ' + kind:<42}{s:>9.1f}{p:>10.1f}{p / s:>8.2f}", flush=True)
    print("ratio = prefetch / sample (below 1: prefetch faster)")


if __name__ == "__main__":
    main()
