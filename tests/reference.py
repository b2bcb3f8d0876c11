"""Slow, obviously-correct numpy models of every core operation (the oracle for the C++ core)."""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- replay buffer storage model

MASK64 = (1 << 64) - 1


class ReferenceRng:
    """xoshiro256** seeded through splitmix64, with Lemire's bounded draws: the buffer's generator."""

    def __init__(self, seed: int) -> None:
        x = seed & MASK64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x: int, k: int) -> int:
        return ((x << k) | (x >> (64 - k))) & MASK64

    def next(self) -> int:
        s = self.s
        result = (self._rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def below(self, n: int) -> int:
        m = self.next() * n
        low = m & MASK64
        if low < n:
            threshold = ((1 << 64) - n) % n
            while low < threshold:
                m = self.next() * n
                low = m & MASK64
        return m >> 64

    def uniform(self) -> float:
        return (self.next() >> 11) * 2.0**-53


class ReferenceBuffer:
    """The replay buffer as plain Python: a dict of rows keyed by id, and the same generator."""

    def __init__(self, fields, capacity: int, num_envs: int, seed: int) -> None:
        self.fields = fields  # [(name, shape, dtype)]
        self.num_envs = num_envs
        self.capacity = capacity // num_envs * num_envs
        self.rows: dict[int, dict[str, np.ndarray]] = {}
        self.total = 0
        self.rng = ReferenceRng(seed)

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def live_ids(self) -> range:
        return range(self.total - len(self), self.total)

    def write(self, columns: dict[str, np.ndarray]) -> None:
        """Append rows: ``columns[name]`` is ``[K, *shape]``, K a multiple of num_envs."""
        k = len(next(iter(columns.values())))
        assert k % self.num_envs == 0
        for r in range(k):
            self.rows[self.total] = {
                name: np.asarray(columns[name][r]).astype(dtype) for name, _, dtype in self.fields}
            self.total += 1
        for i in [i for i in self.rows if i < self.total - len(self)]:
            del self.rows[i]

    def storage(self, name: str) -> np.ndarray:
        """What the slot-indexed storage of a field must hold for its live slots (others: None)."""
        return {i % self.capacity: self.rows[i][name] for i in self.live_ids()}

    def sample_ids(self, batch_size: int, replace: bool) -> list[int]:
        n = len(self)
        lo = self.total - n
        if replace:
            return [lo + self.rng.below(n) for _ in range(batch_size)]
        chosen: set[int] = set()
        out = []
        for j in range(n - batch_size, n):
            t = self.rng.below(j + 1)
            pick = t if t not in chosen else j
            chosen.add(pick)
            out.append(lo + pick)
        for i in range(batch_size - 1, 0, -1):
            k = self.rng.below(i + 1)
            out[i], out[k] = out[k], out[i]
        return out
