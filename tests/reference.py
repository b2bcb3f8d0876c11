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


# ---------------------------------------------------------------- returns (issue 3)
# Slow, per-stream Python loops in float64 over time-major [T] or [T, N] arrays.


def _streams(a):
    a = np.asarray(a)
    return a.reshape(a.shape[0], 1 if a.ndim == 1 else a.shape[1])


def discounted_returns(rewards, terminated, truncated, gamma, bootstrap=None):
    """G[t] = r[t] + gamma * next; next = 0 after terminated, bootstrap[t] after truncated or at
    the last step, G[t + 1] otherwise."""
    r = _streams(rewards).astype(np.float64)
    te, tr = _streams(terminated).astype(bool), _streams(truncated).astype(bool)
    b = np.zeros_like(r) if bootstrap is None else _streams(bootstrap).astype(np.float64)
    T, N = r.shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in reversed(range(T)):
            if te[t, n]:
                nxt = 0.0
            elif tr[t, n] or t == T - 1:
                nxt = b[t, n]
            else:
                nxt = out[t + 1, n]
            out[t, n] = r[t, n] + gamma * nxt
    return out.reshape(np.shape(rewards))


def gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """(advantages, returns) by the textbook recursion over each stream."""
    r, v, nv = (_streams(x).astype(np.float64) for x in (rewards, values, next_values))
    te, tr = _streams(terminated).astype(bool), _streams(truncated).astype(bool)
    T, N = r.shape
    adv = np.zeros((T, N))
    for n in range(N):
        for t in reversed(range(T)):
            delta = r[t, n] + gamma * (0.0 if te[t, n] else nv[t, n]) - v[t, n]
            after = 0.0 if (te[t, n] or tr[t, n] or t == T - 1) else adv[t + 1, n]
            adv[t, n] = delta + gamma * lam * after
    shape = np.shape(rewards)
    return adv.reshape(shape), (adv + v).reshape(shape)


def lambda_returns(rewards, next_values, terminated, truncated, gamma, lam):
    """TD(lambda) returns as the explicit lambda-weighted mix of k-step returns of each episode
    segment (not the recursion the C++ uses): G = (1-lam) sum_k lam^(k-1) G^(k) + lam^(K-1) G^(K),
    where the segment ends K steps later (episode end or end of the rollout)."""
    r, nv = (_streams(x).astype(np.float64) for x in (rewards, next_values))
    te, tr = _streams(terminated).astype(bool), _streams(truncated).astype(bool)
    T, N = r.shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            end = t  # last step of the segment that starts at t
            while end < T - 1 and not (te[end, n] or tr[end, n]):
                end += 1
            K = end - t + 1

            def kstep(k):  # k-step return from t, bootstrapped from next_values[t + k - 1]
                g = sum(gamma**i * r[t + i, n] for i in range(k))
                last = t + k - 1
                return g + (0.0 if te[last, n] else gamma**k * nv[last, n])

            total = sum((1 - lam) * lam ** (k - 1) * kstep(k) for k in range(1, K))
            out[t, n] = total + lam ** (K - 1) * kstep(K)
    return out.reshape(np.shape(rewards))


class ReturnsModel:
    """Every row ever written to a time-major multi-stream circular buffer, as plain Python lists;
    n-step targets and episode returns computed by forward scans over them (issue 3).

    Row id i belongs to stream i % num_envs; the ids stored are the last `capacity` ones
    (capacity rounded down to a multiple of num_envs)."""

    def __init__(self, capacity, num_envs, episode_gamma=None):
        self.capacity = capacity // num_envs * num_envs
        self.num_envs = num_envs
        self.gamma = episode_gamma
        self.rewards, self.terminated, self.truncated = [], [], []

    def extend(self, rewards, terminated, truncated):
        self.rewards += [float(r) for r in rewards]
        self.terminated += [bool(x) for x in terminated]
        self.truncated += [bool(x) for x in truncated]

    @property
    def total(self):
        return len(self.rewards)

    def live_ids(self):
        return list(range(max(0, self.total - self.capacity), self.total))

    def nstep(self, i, n, gamma):
        """(discounted reward sum, id of the last summed step, k summed) for start id i."""
        total, k, j = 0.0, 0, i
        while True:
            total += gamma**k * self.rewards[j]
            k += 1
            if self.terminated[j] or self.truncated[j] or k == n or j + self.num_envs >= self.total:
                return total, j, k
            j += self.num_envs

    def episode_return(self, i):
        """(return-to-go, True) if the episode of id i has ended, else (0.0, False)."""
        j = i
        while j < self.total and not (self.terminated[j] or self.truncated[j]):
            j += self.num_envs
        if j >= self.total:
            return 0.0, False
        steps = range(i, j + 1, self.num_envs)
        return sum(self.gamma**k * self.rewards[s] for k, s in enumerate(steps)), True


# ============================================================================ DQN targets (issue 6)
def dqn_targets(rewards, terminated, q_next_target, q_next_online, discounts, double):
    """y_i = r_i + discount_i * (1 - terminated_i) * Q_target(s'_i, a*_i), one transition at a time.

    a*_i = argmax Q_online(s'_i) with Double DQN, argmax Q_target(s'_i) otherwise (first max wins).
    """
    y = np.empty(len(rewards))
    for i in range(len(rewards)):
        chooser = q_next_online[i] if double else q_next_target[i]
        a = int(np.argmax(chooser))
        bootstrap = 0.0 if terminated[i] else float(q_next_target[i][a])
        y[i] = rewards[i] + discounts[i] * bootstrap
    return y


def chunk_td_priorities(q, obs, actions, rewards, next_obs, terminated, truncated, gamma, n):
    """|n-step TD error| of every step of a ``[T, E]`` chunk, one step at a time: ``q(x)`` gives the
    Q-values of one observation. Step t of stream e sums rewards r_t, r_t+1, ... of its stream while
    fewer than n are summed, the chunk has them and no summed step ended (terminated or truncated);
    it bootstraps from the last summed step's next observation unless that step terminated."""
    T, E = rewards.shape
    out = np.empty((T, E))
    for t in range(T):
        for e in range(E):
            g, disc, j = 0.0, 1.0, t
            while True:
                g += disc * rewards[j, e]
                disc *= gamma
                if terminated[j, e] or truncated[j, e] or j - t + 1 == n or j + 1 == T:
                    break
                j += 1
            boot = 0.0 if terminated[j, e] else float(np.max(q(next_obs[j, e])))
            out[t, e] = abs(g + disc * boot - float(q(obs[t, e])[actions[t, e]]))
    return out


# ---------------------------------------------------------------- observations stored once, frame stacks (issue 5)


class FullCopyObservations:
    """A naive buffer's observations: per id, full copies of the observation and next observation a
    step returned, built per stream the way gymnasium's ``FrameStackObservation(env, k,
    padding_type=...)`` builds them from single frames (k == 1: the frames themselves).

    Per stream, an episode starts at the stream's first row and after a terminated or truncated
    row. A row's stack is the last k frames of its episode, oldest first, padded before the
    episode's first frame with that frame ("reset") or with zeros ("zero"); its next stack is the
    stack without its oldest frame, with the row's next frame appended (what ``step`` returns).
    Rows are time-major: row r of a write belongs to stream (total + r) % num_envs.
    ``terminated_next="zero"``: a terminated row's next frame is zeros, whatever the step returned."""

    def __init__(self, num_envs: int, k: int = 1, padding: str = "reset", terminated_next: str = "keep") -> None:
        from collections import deque

        self._deque = deque
        self.num_envs, self.k, self.padding = num_envs, k, padding
        self.zero_terminated = terminated_next == "zero"
        self.queues: list = [None] * num_envs  # running episode's last k frames, per stream
        self.obs: list[np.ndarray] = []
        self.next_obs: list[np.ndarray] = []

    def write(self, obs, next_obs, terminated, truncated) -> None:
        for r in range(len(obs)):
            s = len(self.obs) % self.num_envs
            frame, nxt = np.asarray(obs[r]), np.asarray(next_obs[r])
            if self.zero_terminated and terminated[r]:
                nxt = np.zeros_like(nxt)
            if self.k == 1:
                self.obs.append(frame.copy())
                self.next_obs.append(nxt.copy())
                continue
            q = self.queues[s]
            if q is None:  # episode start: the wrapper's reset fills the queue with padding
                pad = frame if self.padding == "reset" else np.zeros_like(frame)
                q = self._deque([pad] * (self.k - 1), maxlen=self.k)
            q.append(frame)
            self.obs.append(np.stack(list(q)))
            self.next_obs.append(np.stack(list(q)[1:] + [nxt]))
            self.queues[s] = None if (terminated[r] or truncated[r]) else q


def labelled_stack(episode: int, t: int, k: int, padding: str = "reset") -> np.ndarray:
    """The stack ``FrameStackObservation(env, k)`` returns at step ``t`` of an episode whose frame at
    step ``u`` is ``(episode, u)`` (``int32[k, 2]``, oldest first): frames ``t - k + 1 .. t``, those
    before the episode's first frame replaced by it ("reset") or by ``(0, 0)`` ("zero"). With
    every frame labelled by its episode and step, a stack that mixes two episodes, or repeats or
    skips a step, cannot equal it."""
    out = np.zeros((k, 2), np.int32)
    for j, u in enumerate(range(t - k + 1, t + 1)):
        if u >= 0 or padding == "reset":
            out[j] = (episode, max(u, 0))
    return out


def env_like_rows(rng: np.random.Generator, steps: int, num_envs: int, frame_shape, dtype, start, p_done=0.15,
                  p_jump=0.0, values=None):
    """``steps`` time-major vector-env steps ([steps * num_envs] rows): obs, next_obs, terminated,
    truncated. Each stream's next observation is its next row's observation, except after a
    terminated / truncated row (the reset observation follows) and, with probability ``p_jump``,
    anywhere (a discontinuity: rows that are not consecutive). ``start`` holds each stream's
    current observation and is updated. Frames are drawn from ``values`` when given (to make
    repeats, 0.0 / -0.0 and NaN likely)."""

    def frame():
        if values is not None:
            return rng.choice(np.asarray(values, dtype=dtype), size=frame_shape)
        if np.dtype(dtype).kind == "u":
            return rng.integers(0, 256, size=frame_shape).astype(dtype)
        return rng.normal(size=frame_shape).astype(dtype)

    for s in range(num_envs):
        if start[s] is None:
            start[s] = frame()
    obs, nxt, term, trunc = [], [], [], []
    for _ in range(steps):
        for s in range(num_envs):
            o, n = start[s], frame()
            te, tr = rng.random() < p_done / 2, rng.random() < p_done / 2
            obs.append(o)
            nxt.append(n)
            term.append(te)
            trunc.append(tr and not te)
            start[s] = frame() if (te or tr or rng.random() < p_jump) else n
    shape = (len(obs), *frame_shape)
    return (np.array(obs, dtype=dtype).reshape(shape), np.array(nxt, dtype=dtype).reshape(shape),
            np.array(term, dtype=bool), np.array(trunc, dtype=bool))


def snapshot(buf):
    """A buffer's state and a copy of its arrays, to check that a rejected call changed nothing."""
    sd = buf.state_dict()
    return sd["state"], {k: v.copy() for k, v in sd["arrays"].items()}


# ---------------------------------------------------------------- the DQN family's targets and losses (issue 17)


def categorical_projection(probs, rewards, discounts, terminated, v_min, v_max):
    """C51's projection, one sample and one atom at a time (float64): the shifted atom
    ``r + discount * (1 - terminated) * z_j``, clipped to the support, gives its mass to the atoms
    on either side in proportion to closeness, or all of it to the atom it lands on."""
    probs = np.asarray(probs, dtype=np.float64)
    b, n = probs.shape
    dz = (v_max - v_min) / (n - 1)
    m = np.zeros((b, n))
    for i in range(b):
        for j in range(n):
            z = v_min + j * dz
            tz = rewards[i] + (0.0 if terminated[i] else discounts[i]) * z
            tz = min(max(tz, v_min), v_max)
            pos = min(max((tz - v_min) / dz, 0.0), n - 1.0)  # in [0, n - 1] up to rounding
            lo, hi = int(np.floor(pos)), int(np.ceil(pos))
            if lo == hi:
                m[i, lo] += probs[i, j]
            else:
                m[i, lo] += probs[i, j] * (hi - pos)
                m[i, hi] += probs[i, j] * (pos - lo)
    return m


def quantile_huber_loss(quantiles, targets, kappa):
    """QR-DQN's loss per sample, by the paper's sum: for each predicted quantile i (tau_i the
    midpoint (2i + 1) / 2N) the mean over target samples j of |tau_i - [u < 0]| * L_kappa(u) / kappa,
    u = T_j - theta_i (|tau_i - [u < 0]| * |u| for kappa 0)."""
    quantiles = np.asarray(quantiles, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    b, n = quantiles.shape
    out = np.zeros(b)
    for s in range(b):
        total = 0.0
        for i in range(n):
            tau = (2 * i + 1) / (2 * n)
            acc = 0.0
            for t in targets[s]:
                u = t - quantiles[s, i]
                if kappa == 0:
                    loss = abs(u)
                elif abs(u) <= kappa:
                    loss = 0.5 * u * u / kappa
                else:
                    loss = (abs(u) - 0.5 * kappa)
                acc += abs(tau - (1.0 if u < 0 else 0.0)) * loss
            total += acc / len(targets[s])
        out[s] = total
    return out


def munchausen_targets(q_obs, q_next, actions, rewards, discounts, terminated, alpha, tau, clip):
    """The Munchausen-DQN target one sample at a time (float64), from its definition:
    pi = softmax(q / tau), y = r + alpha * clip(tau * log pi(a|s), clip, 0)
    + discount * (1 - terminated) * sum_b pi(b|s') (q(s', b) - tau * log pi(b|s'))."""

    def log_softmax(x):
        x = np.asarray(x, dtype=np.float64)
        mx = max(x)
        return x - mx - np.log(sum(np.exp(v - mx) for v in x))

    y = np.empty(len(rewards))
    for i in range(len(rewards)):
        log_pi = log_softmax(np.asarray(q_obs[i], dtype=np.float64) / tau)
        bonus = alpha * min(max(tau * log_pi[int(actions[i])], clip), 0.0)
        log_pi_next = log_softmax(np.asarray(q_next[i], dtype=np.float64) / tau)
        soft_v = sum(np.exp(lp) * (q - tau * lp) for lp, q in zip(log_pi_next, q_next[i]))
        y[i] = rewards[i] + bonus + (0.0 if terminated[i] else discounts[i] * soft_v)
    return y


# ---------------------------------------------------------------- statistics over seeds (rliable's method)
def iqm_slow(scores) -> float:
    """Interquartile mean, the long way: every score in one list, sorted, a quarter (rounded down)
    dropped from each end, the rest averaged."""
    flat = sorted(float(x) for x in np.ravel(np.asarray(scores, dtype=float)))
    cut = len(flat) // 4
    kept = flat[cut : len(flat) - cut]
    return sum(kept) / len(kept)


def bootstrap_slow(scores, statistic, idx) -> list[float]:
    """The statistic of each stratified resample, with explicit loops: resample ``r`` takes, for
    task ``t``, run ``idx[r, i, t]`` as its ``i``-th run (``scores``: float[runs, tasks] or
    float[runs])."""
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    runs, tasks = x.shape
    out = []
    for r in range(idx.shape[0]):
        sample = [[x[idx[r, i, t], t] for t in range(tasks)] for i in range(runs)]
        out.append(iqm_slow(sample) if statistic == "iqm" else sum(map(sum, sample)) / (runs * tasks))
    return out


def percentile_slow(values, q: float) -> float:
    """The q-th percentile with linear interpolation between order statistics (numpy's default)."""
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)
