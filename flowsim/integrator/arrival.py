"""The driver of the flows that arrive at their stationary set in finite time (the Adam-type flows,
:class:`flowsim.flows.base.ArrivalFlow`): an explicit phase watched by a stiffness test, then the stiff
continuation on an implicit solver (``docs/math.md``, "Finite-time arrival")."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..flows.base import ArrivalFlow
from .result import IntegrationResult
from .stepper import IMPLICIT_SOLVERS, integrate

#: an explicit solver whose accepted step stays below STALL_FRACTION·(t_end − t0) for STALL_STEPS consecutive
#: steps has met the stiffness that follows a finite-time arrival (S ≈ 1/ε; DOP853 steps of ~1e-8 on T = 0.5)
STALL_FRACTION = 1e-6
STALL_STEPS = 20
#: the implicit solver used after the arrival (Radau IIA, order 5, L-stable; HW96), with scipy's
#: finite-difference Jacobian when the flow gives none. LSODA was tried and rejected: on the depth-1 sign
#: flow, whose field turns over on the scale ε of each arrived entry, its Newton iterations kept failing
#: (20 000 steps without passing the second arrival, where Radau needs 450 steps to t = 2)
ARRIVAL_METHOD = "Radau"
#: above this state dimension a dense Jacobian (dim² doubles, dim evaluations per build) is out of reach
DENSE_JACOBIAN_MAX_DIM = 5000



def _remaining(budget: float | None, used: float) -> float | None:
    return None if budget is None else max(budget - used, 0.0)


def solve_with_arrival(
    flow: ArrivalFlow, y0: np.ndarray, t_eval: np.ndarray, *, method: str = "DOP853",
    max_steps: int | None = None, max_wall_time: float | None = None, **integrate_kwargs: Any,
) -> IntegrationResult:
    """Integrate a flow that arrives at its stationary set in finite time (``docs/math.md``,
    "Finite-time arrival"), in up to two phases recorded in ``extra["phases"]`` and ``extra["events"]``:

    1. the requested solver; an explicit one runs Hairer's stiffness test on every accepted step
       (``detect_stiffness`` of :func:`flowsim.integrator.integrate`; HW96 §IV.2), with the step staying
       below ``STALL_FRACTION``·(t_end − t0) for ``STALL_STEPS`` steps as a fallback. Either ends the phase:
       the state has reached the set where ∇ → 0 in some entries, where the field −g/(|g| + ε) has a
       Jacobian ~ 1/ε;
    2. from there on, the implicit ``ARRIVAL_METHOD`` (with the flow's ``jac`` if it has one), which follows
       the stiff continuation — constant where ∇ = 0, sliding where some entries of ∇ stay at 0 — at steps
       set by the accuracy, not by the stiffness (HW96). Above ``DENSE_JACOBIAN_MAX_DIM`` state entries
       (and without ``jac``) the requested explicit solver goes on at its stability limit instead.

    The event records the time, the loss, the largest entry of the gradient and how many entries are at 0
    (|g| ≤ 1e3·ε). Budgets (``max_steps``, ``max_wall_time``) cover both phases together.
    """
    t_eval = np.asarray(t_eval, dtype=float)
    t0, t_end = float(t_eval[0]), float(t_eval[-1])
    jac = getattr(flow, "jac", None)
    start = time.perf_counter()
    explicit = method not in IMPLICIT_SOLVERS
    first = integrate(flow, y0, t_eval, method=method, max_steps=max_steps, max_wall_time=max_wall_time,
                      jac=jac, min_step=STALL_FRACTION * (t_end - t0) if explicit else None,
                      stall_steps=STALL_STEPS, detect_stiffness=explicit, **integrate_kwargs)
    phases = [{"method": method, "t_start": t0, "t_end": first.t_last, "steps": first.nsteps,
               "nfev": first.nfev, "ended": first.status}]
    first.extra.update(phases=phases, events=[])
    if first.status not in ("stalled", "stiff"):
        return first
    t_arr, y_arr = first.t_last, first.y_last
    assert y_arr is not None
    g = np.asarray(flow.arrival_gradient(y_arr), dtype=float)
    W = flow.end_product(y_arr)
    eps = float(getattr(flow, "eps", 0.0))
    event = {"kind": "stiff-after-arrival", "t": t_arr,
             "detected_by": "stiffness test" if first.status == "stiff" else "explicit step-size collapse",
             "loss": float(flow.problem.loss(W)),
             "grad_max_abs": float(np.max(np.abs(g))),
             "grad_entries_at_zero": int(np.count_nonzero(np.abs(g) <= 1e3 * eps)),
             "grad_entries": int(g.size),
             "message": first.message}
    first.extra["events"].append(event)
    dense_ok = y_arr.size <= DENSE_JACOBIAN_MAX_DIM or jac is not None
    method2 = ARRIVAL_METHOD if dense_ok else method
    reason = ("stiff after the finite-time arrival" if dense_ok else
              f"stiff after the finite-time arrival; a dense Jacobian of dimension {y_arr.size} is out of "
              f"reach, so the explicit solver goes on at its stability limit")
    rest = t_eval[t_eval > t_arr]
    grid = np.concatenate([[t_arr], rest]) if rest.size and rest[0] > t_arr else np.array([t_arr, t_end])
    second = integrate(flow, y_arr, grid, method=method2, jac=jac,
                       max_steps=None if max_steps is None else max(max_steps - first.nsteps, 1),
                       max_wall_time=_remaining(max_wall_time, time.perf_counter() - start),
                       **integrate_kwargs)
    phases.append({"method": method2, "t_start": t_arr, "t_end": second.t_last,
                   "steps": second.nsteps, "nfev": second.nfev, "njev": second.njev, "ended": second.status,
                   "reason": reason})
    keep = second.t > t_arr  # the arrival time itself is not a saving time
    status, message = second.status, second.message
    if status == "ok":
        message = (f"reached t_end; stiff after a finite-time arrival at t={t_arr:.6g} (loss "
                   f"{event['loss']:.3g}, {event['grad_entries_at_zero']} of {g.size} gradient entries at 0),"
                   f" continued with {method2}")
    else:
        message = f"{message} (phase 2, {method2} from t={t_arr:.6g}: {reason})"
    return IntegrationResult(
        t=np.concatenate([first.t, second.t[keep]]), y=np.concatenate([first.y, second.y[keep]]),
        status=status, message=message, t_last=second.t_last, nfev=first.nfev + second.nfev,
        njev=first.njev + second.njev, nlu=first.nlu + second.nlu, nsteps=first.nsteps + second.nsteps,
        method=method, rtol=first.rtol, atol=first.atol, wall_time_s=time.perf_counter() - start,
        extra={"phases": phases, "events": [event]},
        t_events=[np.concatenate([a, b]) for a, b in zip(first.t_events, second.t_events)],
        y_events=[np.concatenate([a, b]) for a, b in zip(first.y_events, second.y_events)],
        event_index=second.event_index, y_last=second.y_last,
    )
