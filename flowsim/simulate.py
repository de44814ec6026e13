"""One entry point: integrate a flow from initial factors and return a :class:`Trajectory`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .factors import end_product
from .flows.base import Flow
from .integrator import log_time_grid, solve_flow
from .trajectory import Trajectory

DEFAULT_T_END = 1e4
DEFAULT_RTOL = 1e-7
DEFAULT_ATOL = 1e-10
#: integrator statuses that a trajectory reports differently: a terminal event is where the flow's own
#: dynamics ends (its message says which event and when); a stall or stiffness stop is a failure to reach
#: t_end
STATUS_OF_RESULT = {"event": "ok", "stalled": "failed", "stiff": "failed"}


def formulation_stats(flow: Flow) -> dict[str, str]:
    """``stats["formulation"]``: which state the velocity was evaluated on (``auto`` flows record their
    choice, and ``formulation_reason`` why)."""
    out = {"formulation": getattr(flow, "formulation", None) or flow.model}
    if getattr(flow, "formulation_reason", ""):
        out["formulation_reason"] = flow.formulation_reason  # type: ignore[attr-defined]
    return out


def simulate(
    flow: Flow,
    factors: Sequence[np.ndarray],
    t_end: float = DEFAULT_T_END,
    *,
    t_eval: np.ndarray | None = None,
    n_save: int = 200,
    t_min: float | None = None,
    method: str = "DOP853",
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    max_steps: int | None = None,
    max_wall_time: float | None = None,
    progress: bool | None = None,
    save_matrices: bool = False,
) -> Trajectory:
    """Integrate ``flow`` from the layer ``factors`` up to ``t_end`` and record
    the metrics of docs/math.md §2.

    Saving times are ``t_eval`` if given, else t0 plus ``n_save`` log-spaced times (see
    :func:`flowsim.integrator.log_time_grid`). The returned trajectory carries the integrator's status
    (``ok``/``diverged``/``failed``/``interrupted``), message and statistics; on failure it holds every
    state saved before the failure. :func:`flowsim.integrator.solve_flow` picks the flow's driver, so flows
    with their own event-driven driver record what happened in ``stats``.

    Example::

        problem = synthetic_problem(20, 20, rank=2, observed=200, seed=0)
        factors = init_factors("balanced-gaussian", problem.shape, depth=3, scale=1e-3)
        traj = simulate(EndProductFlow(problem, depth=3), factors, t_end=1e4)
    """
    y0 = flow.initial_state(factors)
    grid = log_time_grid(t_end, n_save, t_min, flow.t0) if t_eval is None else np.asarray(t_eval, dtype=float)
    res = solve_flow(flow, y0, grid, method=method, rtol=rtol, atol=atol, max_steps=max_steps,
                     max_wall_time=max_wall_time, progress=progress)
    status = STATUS_OF_RESULT.get(res.status, res.status)
    Ws = [flow.end_product(y) for y in res.y]
    stats = res.stats()
    stats["integration_nfev"] = res.nfev
    stats.update(formulation_stats(flow))
    traj = Trajectory.from_snapshots(res.t, Ws, flow.problem, save_matrices=save_matrices, status=status,
                                     message=res.message, stats=stats, W0=end_product(factors))
    return traj
