"""Schedules: :class:`Schedule`, the exploration rate (epsilon, noise scale) of an agent, constant,
linear or exponential, advanced per step or per episode; :class:`LinearSchedule` and
:class:`BetaSchedule`, a value as a function of the step (prioritized replay's beta)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from fastrl._util import check_int, check_real

KINDS = ("constant", "linear", "exponential")
UNITS = ("step", "episode")


def linear(start: float, end: float, t: int, duration: int) -> float:
    """From ``start`` at ``t = 0`` to ``end`` at ``t = duration``, then held: every linear schedule."""
    return start + min(1.0, t / duration) * (end - start)


@dataclass
class Schedule:
    """epsilon as a function of a counter ``t`` of env steps or of finished episodes.

    - constant: ``start``.
    - linear: from ``start`` to ``end`` over ``duration`` units, then ``end``.
    - exponential: ``max(end, start * decay**t)``.

    The trainer calls :meth:`next_step` after every env step and :meth:`next_episode` after
    every finished episode; only the one matching ``unit`` moves ``t``. The state is ``t``
    alone, so a restored schedule continues exactly.
    """

    kind: Literal["constant", "linear", "exponential"] = "linear"
    start: float = 1.0
    end: float = 0.05
    duration: int = 10_000
    decay: float = 0.995
    unit: Literal["step", "episode"] = "step"
    t: int = 0
    scale: int = 1
    """Units each counted step or episode stands for: a collector that is one of N counts N per
    unit, so that its schedule follows the whole run's (its share is one N-th of the steps)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"schedule kind must be one of {KINDS}, got {self.kind!r}")
        if self.unit not in UNITS:
            raise ValueError(f"schedule unit must be one of {UNITS}, got {self.unit!r}")
        for name in ("start", "end"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"schedule {name} must be in [0, 1], got {v}")
        if self.kind == "linear" and self.duration < 1:
            raise ValueError(f"linear schedule duration must be >= 1, got {self.duration}")
        if self.kind == "exponential" and not 0.0 < self.decay <= 1.0:
            raise ValueError(f"exponential schedule decay must be in (0, 1], got {self.decay}")

    @property
    def value(self) -> float:
        """The current epsilon."""
        if self.kind == "constant":
            return self.start
        if self.kind == "linear":
            return linear(self.start, self.end, self.t, self.duration)
        return max(self.end, self.start * self.decay**self.t)

    def next_step(self, n: int = 1) -> float:
        """Account for ``n`` env steps (one vector-env step of ``n`` envs); returns the new value."""
        if self.unit == "step":
            self.t += int(n) * self.scale
        return self.value

    def next_episode(self, n: int = 1) -> float:
        """Account for ``n`` finished episodes; returns the new value."""
        if self.unit == "episode":
            self.t += int(n) * self.scale
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])


class LinearSchedule:
    """A value moving linearly from ``start`` to ``end`` over ``horizon`` steps, then held at ``end``.

    ``schedule(step)`` for ``step >= 0``; ``horizon`` is a number of steps (> 0).
    """

    def __init__(self, start: float, end: float, horizon: int) -> None:
        self.horizon = check_int("horizon", horizon, 1)
        self.start = check_real("start", start, -math.inf)
        self.end = check_real("end", end, -math.inf)

    def __call__(self, step: int) -> float:
        return linear(self.start, self.end, check_int("step", step, 0), self.horizon)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(start={self.start}, end={self.end}, horizon={self.horizon})"


class BetaSchedule(LinearSchedule):
    """The importance-sampling exponent of prioritized replay: ``beta0`` to 1 over ``horizon`` steps."""

    def __init__(self, beta0: float = 0.4, horizon: int = 100_000, end: float = 1.0) -> None:
        super().__init__(check_real("beta0", beta0), check_real("end", end), horizon)
