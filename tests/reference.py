"""Slow, obviously-correct numpy models of every core operation (the oracle for the C++ core)."""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- replay buffer storage model
