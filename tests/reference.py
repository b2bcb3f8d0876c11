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


# ---------------------------------------------------------------- prioritized replay model
# Mirrors fastrl::PrioritizedReplayBuffer operation by operation (same generator, same pairwise
# tree, same libm pow), so sampled ids and float64 weights can be compared exactly.

class Xoshiro256(ReferenceRng):
    """The buffer's generator (ReferenceRng above) started from a saved state instead of a seed."""

    def __init__(self, state):
        self.s = [int(w) for w in state]


def tree_levels(leaves: np.ndarray, k: int, identity: float, op) -> list[np.ndarray]:
    """A K-ary segment tree built bottom-up from scratch: levels[0] are the leaves (padded to a
    multiple of k with ``identity``), each parent combines its k children in order
    ((c0 op c1) op c2) ..., levels[-1] == [root]."""
    levels = [np.asarray(leaves, dtype=np.float64)]
    while len(levels[-1]) > 1:
        lv = levels[-1]
        padded = np.full(-(-len(lv) // k) * k, identity)
        padded[:len(lv)] = lv
        levels[-1] = padded
        cols = padded.reshape(-1, k)
        acc = cols[:, 0].copy()
        for j in range(1, k):
            acc = op(acc, cols[:, j])
        levels.append(acc)
    return levels


def tree_root(leaves: np.ndarray, k: int, identity: float = 0.0, op=np.add) -> float:
    return float(tree_levels(leaves, k, identity, op)[-1][0])


def find_prefix(levels: list[np.ndarray], mass: float, k: int) -> int:
    """Leaf whose cumulative interval holds ``mass``, never a zero-mass one (as SumTree::find_prefix)."""
    node = 0
    for lv in reversed(levels[:-1]):
        c = [float(x) for x in lv[node * k:(node + 1) * k]]
        cum = before = 0.0
        child = last_positive = 0
        for j in range(k):
            upto = cum + c[j]
            if upto <= mass:
                before = upto
                child += 1
            if c[j] > 0.0:
                last_positive = j
            cum = upto
        if child > last_positive:
            child = last_positive
            before = 0.0
            for j in range(child):
                before += c[j]
        mass -= before
        node = node * k + child
    return node


class PrioritizedModel:
    """Raw priorities per slot (p + eps), running max, masses r**alpha; ids and slots as the buffer's."""

    def __init__(self, capacity: int, alpha: float, eps: float, fanout: int = 4):
        self.capacity, self.alpha, self.eps, self.fanout = capacity, alpha, eps, fanout
        self.raw = np.zeros(capacity, dtype=np.float64)
        self.total = 0
        self.max_raw = 1.0

    @property
    def size(self) -> int:
        return min(self.total, self.capacity)

    def write(self, rows: int) -> None:
        for i in range(self.total, self.total + rows):
            self.raw[i % self.capacity] = self.max_raw
        self.total += rows

    def update(self, ids, priorities) -> int:
        priorities = [float(p) for p in priorities]
        if any(not (p >= 0 and np.isfinite(p)) for p in priorities):
            raise ValueError("bad priority")
        if any(i < 0 or i >= self.total for i in ids):
            raise IndexError("never written")
        applied = 0
        for i, p in zip(ids, priorities):
            if i < self.total - self.size:
                continue
            self.raw[i % self.capacity] = p + self.eps
            self.max_raw = max(self.max_raw, p + self.eps)
            applied += 1
        return applied

    def masses(self) -> np.ndarray:
        m = np.zeros(self.capacity, dtype=np.float64)
        for s in range(self.size):
            m[s] = float(self.raw[s]) ** self.alpha  # float ** float is libm pow, like std::pow
        return m

    def probabilities(self) -> np.ndarray:
        m = self.masses()
        return m / m.sum()

    def id_of(self, slot: int) -> int:
        if self.total <= self.capacity:
            return slot
        lo = self.total - self.capacity
        return lo + (slot - lo) % self.capacity

    def sample(self, rng: Xoshiro256, batch_size: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """Stratified proportional ids and weights (m_min / m_i)**beta == (N P(i))**-beta / max weight."""
        m = self.masses()
        levels = tree_levels(m, self.fanout, 0.0, np.add)
        s = float(levels[-1][0])
        positive = m[m > 0]
        m_min = positive.min()
        slice_ = s / batch_size
        ids = np.empty(batch_size, dtype=np.int64)
        w = np.empty(batch_size, dtype=np.float64)
        for i in range(batch_size):
            slot = find_prefix(levels, (float(i) + rng.uniform()) * slice_, self.fanout)
            ids[i] = self.id_of(slot)
            w[i] = 1.0 if beta == 0.0 else float(m_min / m[slot]) ** beta
        return ids, w

    def weights_formula(self, slots: np.ndarray, beta: float) -> np.ndarray:
        """The paper's formula literally: (N * P(i))**-beta / max_j (N * P(j))**-beta over stored rows."""
        p = self.probabilities()
        n = self.size
        live = p[:n][p[:n] > 0]
        return (n * p[slots]) ** -beta / ((n * live) ** -beta).max()
