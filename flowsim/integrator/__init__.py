"""The integrator layer: it drives the flows of :mod:`flowsim.flows` (vector fields, their Jacobians, events
and sliding rules) on scipy's solvers or on the compiled engine.

* :mod:`~flowsim.integrator.stepper`: :func:`integrate`, scipy's step loop with budgets, divergence
  detection, events, stiffness detection and Ctrl-C-safe partial results; :func:`log_time_grid`;
* :mod:`~flowsim.integrator.arrival`: :func:`solve_with_arrival`, the finite-time-arrival switch of the
  Adam-type flows;
* :mod:`~flowsim.integrator.sliding`: :func:`solve_sliding`, the segment loop of the depth-1 Filippov flows;
* :mod:`~flowsim.integrator.compiled`: the numba engine of the layer-wise gradient flow;
* :mod:`~flowsim.integrator.dispatch`: :func:`solve_flow`, which picks one of the above for a flow, and
  :func:`engine_for`;
* :mod:`~flowsim.integrator.result`: :class:`IntegrationResult`.
"""

from __future__ import annotations

from .arrival import ARRIVAL_METHOD, DENSE_JACOBIAN_MAX_DIM, STALL_FRACTION, STALL_STEPS, solve_with_arrival
from .dispatch import engine_for, solve_flow
from .result import IntegrationResult
from .sliding import solve_sliding
from .stepper import (
    BLOWUP,
    IMPLICIT_SOLVERS,
    MAX_NONFINITE_EVALS,
    MIN_RTOL,
    SOLVERS,
    integrate,
    log_fraction,
    log_time_grid,
    progress_bar,
)

__all__ = [
    "ARRIVAL_METHOD", "BLOWUP", "DENSE_JACOBIAN_MAX_DIM", "IMPLICIT_SOLVERS", "MAX_NONFINITE_EVALS",
    "MIN_RTOL", "SOLVERS", "STALL_FRACTION", "STALL_STEPS", "IntegrationResult", "engine_for", "integrate",
    "log_fraction", "log_time_grid", "progress_bar", "solve_flow", "solve_sliding", "solve_with_arrival",
]
