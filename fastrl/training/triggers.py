"""Periodic events of a run (log, evaluate, checkpoint): each fires when the env-step counter
crosses a multiple of its period; one mechanism for all of them."""

from __future__ import annotations

import math


class Triggers:
    """``Triggers(log=1000, evaluate=5000, checkpoint=0)``: periods in env steps (0: never), kept
    in that order. ``fired(prev, now, solved)`` lists the events due between ``prev`` and ``now``
    env steps; those named in ``when_solved`` also fire once the run is solved. It is called after
    every env step, so it first checks the next step any event is due (O(1)) and only then which."""

    def __init__(self, when_solved: tuple[str, ...] = (), **every: int) -> None:
        self.every = every
        self.when_solved = when_solved
        self._checked, self._due = 0, 0.0  # no period has a multiple in (_checked, _due)

    def fired(self, prev: int, now: int, solved: bool = False) -> list[str]:
        if now < self._due and prev >= self._checked and not solved:
            return []
        self._checked = now
        self._due = min(((now // k + 1) * k for k in self.every.values() if k > 0), default=math.inf)
        return [
            name
            for name, k in self.every.items()
            if (k > 0 and now // k > prev // k) or (solved and name in self.when_solved)
        ]
