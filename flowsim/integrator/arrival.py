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
#: phase 2 runs in HOLD_CHUNKS equal pieces of the remaining horizon; after each piece (and wherever an
#: explicit phase-2 solver stalls) the driver tests whether the arrival is complete (see ``arrival_complete``)
HOLD_CHUNKS = 20
#: the arrival is complete when max|g| ≤ HOLD_GRAD_FRACTION·(the largest max|g| seen in the run) ...
HOLD_GRAD_FRACTION = 1e-3
#: ... and the objective ℓ + λR changed by at most HOLD_OBJECTIVE_FRACTION·|ℓ + λR at t0| over the last piece
HOLD_OBJECTIVE_FRACTION = 1e-6



def _remaining(budget: float | None, used: float) -> float | None:
    return None if budget is None else max(budget - used, 0.0)


def objective(flow: ArrivalFlow, y: np.ndarray) -> float:
    """ℓ + λR at the end product of the state y (the function the Adam-type flows decrease)."""
    W = flow.end_product(y)
    value = float(flow.problem.loss(W))
    lam = float(getattr(flow, "lam", 0.0))
    penalty = getattr(flow, "penalty", None)
    if lam and penalty is not None and not penalty.is_zero:
        value += lam * float(penalty.value(W))
    return value


def arrival_complete(
    grad_max: float, grad_peak: float, objective_change: float, objective_scale: float
) -> bool:
    """True when the finite-time arrival is over (``docs/math.md``, "Finite-time arrival"): the gradient has
    collapsed, max|g| ≤ ``HOLD_GRAD_FRACTION``·(its largest value in the run), *and* the objective has stopped
    moving, |Δ(ℓ + λR)| ≤ ``HOLD_OBJECTIVE_FRACTION``·|ℓ + λR at t0| over the last piece. A saddle plateau
    passes neither (measured: 16×16 depth 4, max|g| = 2e-2·peak and Δ(ℓ + λR) = 2e-3 per 0.025 of time);
    after a complete arrival the flow with ε = 0 is constant and the ε-regularized one only relaxes onto the
    stationary set at rate ~1/ε, so the driver holds the state."""
    return (grad_max <= HOLD_GRAD_FRACTION * grad_peak
            and abs(objective_change) <= HOLD_OBJECTIVE_FRACTION * max(abs(objective_scale), 1e-300))


def _grad_max(flow: ArrivalFlow, y: np.ndarray) -> float:
    return float(np.max(np.abs(flow.arrival_gradient(y)), initial=0.0))


def solve_with_arrival(
    flow: ArrivalFlow, y0: np.ndarray, t_eval: np.ndarray, *, method: str = "DOP853",
    max_steps: int | None = None, max_wall_time: float | None = None, **integrate_kwargs: Any,
) -> IntegrationResult:
    """Integrate a flow that arrives at its stationary set in finite time (``docs/math.md``,
    "Finite-time arrival"), in up to three phases recorded in ``extra["phases"]`` and ``extra["events"]``:

    1. the requested solver; an explicit one runs Hairer's stiffness test on every accepted step
       (``detect_stiffness`` of :func:`flowsim.integrator.integrate`; HW96 §IV.2), with the step staying
       below ``STALL_FRACTION``·(t_end − t0) for ``STALL_STEPS`` steps as a fallback. Either ends the phase:
       the state is near the set where ∇ → 0 in some entries, where the field −g/√(g² + s² + ε²) has a
       Jacobian ~ ∂g/∂y / max(s, ε);
    2. from there on, the implicit ``ARRIVAL_METHOD`` (with the flow's ``jac`` if it has one), which follows
       the stiff continuation at steps set by the accuracy, not by the stiffness (HW96). Above
       ``DENSE_JACOBIAN_MAX_DIM`` state entries the requested explicit solver goes on at its stability limit
       instead. Phase 2 runs in ``HOLD_CHUNKS`` pieces; after each piece, and wherever
       the explicit solver stalls, :func:`arrival_complete` tests whether the arrival is over;
    3. once it is, the state is held to t_end (event ``arrived-hold``; the phase-2 record ends ``held``).

    The events record the time, the loss, the largest entry of the gradient and how many entries are at 0
    (|g| ≤ 1e3·ε). Budgets (``max_steps``, ``max_wall_time``) cover all phases together.
    """
    t_eval = np.asarray(t_eval, dtype=float)
    t0, t_end = float(t_eval[0]), float(t_eval[-1])
    # a flow's ``jac`` is dense (size² entries): above the limit no Jacobian is formed
    jac = getattr(flow, "jac", None) if np.size(y0) <= DENSE_JACOBIAN_MAX_DIM else None
    kink_events = list(getattr(flow, "kink_events", list)())
    if kink_events:
        integrate_kwargs = {**integrate_kwargs, "events": kink_events}
    start = time.perf_counter()
    explicit = method not in IMPLICIT_SOLVERS
    stall = STALL_FRACTION * (t_end - t0)
    first = integrate(flow, y0, t_eval, method=method, max_steps=max_steps, max_wall_time=max_wall_time,
                      jac=jac, min_step=stall if explicit else None,
                      stall_steps=STALL_STEPS, detect_stiffness=explicit, **integrate_kwargs)
    phases: list[dict[str, Any]] = [{"method": method, "t_start": t0, "t_end": first.t_last,
                                     "steps": first.nsteps, "nfev": first.nfev, "ended": first.status}]
    first.extra.update(phases=phases, events=[])
    if first.status not in ("stalled", "stiff"):
        return _with_kink_report(flow, kink_events, first)
    t_arr, y_arr = first.t_last, first.y_last
    assert y_arr is not None
    eps = float(getattr(flow, "eps", 0.0))

    def report(kind: str, t: float, y: np.ndarray, **more: Any) -> dict[str, Any]:
        g = np.asarray(flow.arrival_gradient(y), dtype=float)
        return {"kind": kind, "t": t, **more, "loss": float(flow.problem.loss(flow.end_product(y))),
                "grad_max_abs": float(np.max(np.abs(g))),
                "grad_entries_at_zero": int(np.count_nonzero(np.abs(g) <= 1e3 * eps)),
                "grad_entries": int(g.size)}

    event = report("stiff-after-arrival", t_arr, y_arr,
                   detected_by="stiffness test" if first.status == "stiff" else "explicit step-size collapse")
    event["message"] = first.message
    events = [event]
    dense_ok = y_arr.size <= DENSE_JACOBIAN_MAX_DIM
    method2 = ARRIVAL_METHOD if dense_ok else method
    reason = ("stiff after the finite-time arrival" if dense_ok else
              f"stiff after the finite-time arrival; a dense Jacobian of dimension {y_arr.size} is out of "
              f"reach, so the explicit solver goes on at its stability limit")
    watch_stall = method2 not in IMPLICIT_SOLVERS  # an explicit phase 2 stops where it stalls, to test
    # the scales of the completion test: the largest gradient of the run and the objective at t0
    grad_peak = max([_grad_max(flow, y) for y in first.y] + [_grad_max(flow, y_arr)])
    f_scale = objective(flow, np.asarray(first.y[0]))
    ts, ys = [first.t], [first.y]
    nfev = njev = nlu = steps2 = 0
    t_cur, y_cur, f_cur = t_arr, y_arr, objective(flow, y_arr)
    piece = (t_end - t_arr) / HOLD_CHUNKS
    status, message, t_hold = "ok", "", None
    t_events, y_events = list(first.t_events), list(first.y_events)
    event_index = None
    while t_cur < t_end:
        t_next = t_end if t_end - t_cur <= 1.5 * piece else t_cur + piece
        inside = t_eval[(t_eval > t_cur) & (t_eval <= t_next)]
        grid = np.unique(np.concatenate([[t_cur], inside, [t_next]]))
        used = first.nsteps + steps2
        res = integrate(flow, y_cur, grid, method=method2, jac=jac,
                        max_steps=None if max_steps is None else max(max_steps - used, 1),
                        max_wall_time=_remaining(max_wall_time, time.perf_counter() - start),
                        min_step=stall if watch_stall else None, stall_steps=STALL_STEPS, **integrate_kwargs)
        nfev, njev, nlu, steps2 = nfev + res.nfev, njev + res.njev, nlu + res.nlu, steps2 + res.nsteps
        keep = np.isin(res.t, inside) & (res.t > t_cur)
        ts.append(res.t[keep])
        ys.append(res.y[keep])
        t_events = [np.concatenate([a, b]) for a, b in zip(t_events, res.t_events)]
        y_events = [np.concatenate([a, b]) for a, b in zip(y_events, res.y_events)]
        event_index = res.event_index
        assert res.y_last is not None
        f_new = objective(flow, res.y_last)
        if res.status not in ("ok", "stalled"):
            status, message, t_cur, y_cur = res.status, res.message, res.t_last, res.y_last
            break
        done = arrival_complete(_grad_max(flow, res.y_last), grad_peak, f_new - f_cur, f_scale)
        t_cur, y_cur, f_cur = res.t_last, res.y_last, f_new
        if done and t_cur < t_end:
            t_hold = t_cur
            rest = t_eval[t_eval > t_cur]
            ts.append(rest)
            ys.append(np.repeat(y_cur[None, :], rest.size, axis=0))
            events.append(report("arrived-hold", t_cur, y_cur, objective=f_cur, grad_peak=grad_peak,
                                 detected_by="stall" if res.status == "stalled" else "piece"))
            t_cur = t_end
            break
        if res.status == "stalled":  # not arrived yet: the explicit solver goes on at its stability limit
            watch_stall = False
    phases.append({"method": method2, "t_start": t_arr, "t_end": t_hold if t_hold is not None else t_cur,
                   "steps": steps2, "nfev": nfev, "njev": njev,
                   "ended": "held" if t_hold is not None else status, "reason": reason})
    if status == "ok":
        held = (f"; the arrival was complete at t={t_hold:.6g} (max|∇| {events[-1]['grad_max_abs']:.3g}), "
                f"held from there") if t_hold is not None else ""
        message = (f"reached t_end; stiff after a finite-time arrival at t={t_arr:.6g} (loss "
                   f"{event['loss']:.3g}, {event['grad_entries_at_zero']} of {event['grad_entries']} "
                   f"gradient entries at 0), continued with {method2}{held}")
    else:
        message = f"{message} (phase 2, {method2} from t={t_arr:.6g}: {reason})"
    return _with_kink_report(flow, kink_events, IntegrationResult(
        t=np.concatenate(ts), y=np.concatenate(ys), status=status, message=message, t_last=t_cur,
        nfev=first.nfev + nfev, njev=first.njev + njev, nlu=first.nlu + nlu, nsteps=first.nsteps + steps2,
        method=method, rtol=first.rtol, atol=first.atol, wall_time_s=time.perf_counter() - start,
        extra={"phases": phases, "events": events}, t_events=t_events, y_events=y_events,
        event_index=event_index, y_last=y_cur,
    ))


KINK_NOTE = ("no sliding rule is validated for the Adam-type flows at a null block larger than 1×1, so "
             "the penalty's gradient field is used there (docs/math.md, \"Adam-type flows at the kink of a "
             "spectral penalty\")")


EDGE_NOTE = ("the moment-averaged rule does not fix the velocity there (docs/math.md, \"Adam-type flows at "
             "the kink of a spectral penalty\", \"Still stopping\")")


def _with_kink_report(flow: ArrivalFlow, kink_events: list, res: IntegrationResult) -> IntegrationResult:
    """Record the visits to the kink of a nuclear-type penalty (``extra["kink"]``: the rule's counts, the
    saved times at which W had a zero singular value, the first time at which a second singular value
    reached the kink — ``kink_events[0]``, the driver's recorded event — where no rule is validated, and,
    for a run that stopped, what the rule saw there, ``at_stop``); say so in the message."""
    stats = getattr(flow, "kink_stats", None)
    null_rank = getattr(flow, "null_rank", None)
    if stats is None or null_rank is None or not kink_events:
        return res
    at_kink = [float(t) for t, y in zip(res.t, res.y) if null_rank(y) > 0]
    larger = float(res.t_events[0][0]) if res.t_events and np.size(res.t_events[0]) else None
    if larger is None and res.t.size and kink_events[0](float(res.t[0]), res.y[0]) <= 0:  # from the start
        larger = float(res.t[0])
    res.extra["kink"] = {"rule": "moment-averaged sliding (1×1 null block)", **stats,
                         "first_saved_time_at_kink": at_kink[0] if at_kink else None,
                         "saved_times_at_kink": len(at_kink), "larger_null_block_from": larger}
    if at_kink:
        res.message += (f"; a singular value of W at the kink of the penalty from t≈{at_kink[0]:.4g} "
                        "(saved times), moment-averaged sliding rule")
    if larger is not None:
        res.message += f"; a second singular value of W reached the kink at t={larger:.6g}: {KINK_NOTE}"
        res.extra.setdefault("events", []).append({"kind": "kink-null-block-grows", "t": larger})
    state = getattr(flow, "kink_state", None)
    if res.status != "ok" and state is not None and res.y_last is not None:
        at_stop = state(res.y_last)
        res.extra["kink"]["at_stop"] = at_stop
        if at_stop is not None and len(at_stop["solutions"]) > 1:
            mus = ", ".join(f"{m:+.3g}" for m in at_stop["solutions"])
            res.message += (f"; where it stopped the sliding condition has {len(at_stop['solutions'])} "
                            f"solutions (μ = {mus}; averaged gradient entries within 1e3·ε of 0 with no "
                            f"spread: {at_stop['entries_in_eps_layer']}): {EDGE_NOTE}")
    return res
