"""Slow, obviously-correct numpy models of every core operation (the oracle for the C++ core)."""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- replay buffer storage model


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
