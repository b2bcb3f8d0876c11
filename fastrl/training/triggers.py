"""Periodic events of a run (log, evaluate, checkpoint): each fires when the env-step counter
crosses a multiple of its period; one mechanism for all of them."""

from __future__ import annotations


class Triggers:
    """``Triggers(log=1000, evaluate=5000, checkpoint=0)``: periods in env steps (0: never), kept
    in that order. ``fired(prev, now, solved)`` lists the events due between ``prev`` and ``now``
    env steps; those named in ``when_solved`` also fire once the run is solved."""

    def __init__(self, when_solved: tuple[str, ...] = (), **every: int) -> None:
        self.every = every
        self.when_solved = when_solved

    def fired(self, prev: int, now: int, solved: bool = False) -> list[str]:
        return [name for name, k in self.every.items()
                if (k > 0 and now // k > prev // k) or (solved and name in self.when_solved)]
