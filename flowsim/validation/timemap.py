"""The time map between discrete iterations and flow time (docs/math.md §11): t_k = kη."""

from __future__ import annotations

import math

import numpy as np

from flowsim.errors import BadInputError


def iteration_times(iterations: np.ndarray, lr: float) -> np.ndarray:
    """t_k = k·η for the given iterations k (docs/math.md §11)."""
    return np.asarray(iterations, dtype=np.int64) * float(lr)


def iterations_for_horizon(t_end: float, lr: float) -> int:
    """The number of steps K with Kη ≥ t_end, the smallest such (round-off of t_end/η forgiven)."""
    if not (math.isfinite(t_end) and t_end > 0):
        raise BadInputError(f"--t-end must be a finite number > 0, got {t_end!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise BadInputError(f"step sizes must be finite numbers > 0, got {lr!r}")
    return max(1, math.ceil(t_end / lr - 1e-9))


def flow_iterations(iterations: np.ndarray, lr: float, t0: float) -> np.ndarray:
    """The recorded iterations whose time kη is reachable by a flow starting at t0 (kη ≥ t0, up to
    round-off): all of them for t0 = 0, k ≥ 1 for the Adam ODE (t0 = η)."""
    it = np.asarray(iterations, dtype=np.int64)
    return it[it * float(lr) >= t0 * (1 - 1e-12)]
