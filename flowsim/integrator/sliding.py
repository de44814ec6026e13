"""The driver of the depth-1 Filippov flows (:class:`flowsim.flows.filippov.FilippovSpectralFlow`): one
:func:`flowsim.integrator.integrate` call per segment of constant active rank, ended by the flow's
rank-changing events (``docs/math.md``, "Non-smooth penalties at depth 1"). The flow owns the sliding rules
(:meth:`~flowsim.flows.filippov.FilippovSpectralFlow.begin_segment`,
:meth:`~flowsim.flows.filippov.FilippovSpectralFlow.apply_event`) and decides which sliding segments run in
the factored chart W = USVᵀ (:class:`~flowsim.flows.filippov.FixedRankChart`, KL07); this module only runs
the segments, on the full W or in the chart, and hands the flow full-W states."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..flows.filippov import MAX_EVENTS, FilippovSpectralFlow, FixedRankChart
from .result import IntegrationResult
from .stepper import integrate


def solve_sliding(flow: FilippovSpectralFlow, y0: np.ndarray, t_eval: np.ndarray, **kwargs: Any
                  ) -> IntegrationResult:
    """Integrate ``flow`` from y0 over ``t_eval`` in segments of constant active rank, one
    :func:`integrate` call per segment (terminal events end a segment; the state is updated and the next
    segment continues on the remaining saving times). Step and wall-time budgets apply to the whole run;
    ``extra`` holds the flow's event statistics."""
    start = time.perf_counter()
    t_eval = np.asarray(t_eval, dtype=float)
    max_steps = kwargs.pop("max_steps", None)
    max_wall = kwargs.pop("max_wall_time", None)
    kwargs.pop("events", None)
    ts: list[np.ndarray] = [t_eval[:1]]
    ys: list[np.ndarray] = [np.asarray(y0, dtype=float)[None, :]]
    totals = {"nfev": 0, "njev": 0, "nlu": 0, "nsteps": 0}
    t_cur, y = float(t_eval[0]), np.asarray(y0, dtype=float)
    res: IntegrationResult | None = None
    status, message = "ok", "reached t_end"
    n_events = 0
    while True:
        grid = np.concatenate([[t_cur], t_eval[t_eval > t_cur]])
        if grid.size < 2:
            break
        budget: dict[str, Any] = {}
        if max_steps is not None:
            budget["max_steps"] = max(1, int(max_steps) - totals["nsteps"])
        if max_wall is not None:
            budget["max_wall_time"] = max(1e-3, float(max_wall) - (time.perf_counter() - start))
        y, sliding = flow.begin_segment(t_cur, y)
        chart = FixedRankChart(flow, y) if flow.use_chart(sliding) else None
        flow.segment_counts["full" if chart is None else "chart"] += 1
        if chart is None:
            events = flow.event_functions(y, sliding)
            res = integrate(flow, y, grid, events=events, **budget, **kwargs)
            states = flow.segment_states(res.y[1:], sliding)
        else:
            events = chart.event_functions(flow.drop_level(y))
            res = integrate(chart, chart.z0, grid, events=events, **budget, **kwargs)
            states = chart.decode_rows(res.y[1:]) if res.y.shape[0] > 1 else res.y[:0, :0]
        for key in totals:
            totals[key] += int(getattr(res, key))
        ts.append(res.t[1:])
        ys.append(states.reshape(-1, y.size))
        if res.status != "event":
            status, message = res.status, res.message
            break
        n_events += 1
        if n_events > MAX_EVENTS:
            status = "failed"
            message = (f"more than {MAX_EVENTS} rank-changing events by t={res.t_last:.6g} (chattering "
                       f"between rank {flow.rank - 1} and {flow.rank + 1})")
            break
        assert res.event_index is not None
        t_cur = float(res.t_last)
        y_event = res.y_last if res.y_last is not None else res.y_events[res.event_index][-1]
        if chart is not None:
            y_event = chart.decode(y_event)
        y = flow.apply_event(t_cur, y_event, events[res.event_index].__name__)
    return IntegrationResult(
        t=np.concatenate(ts), y=np.concatenate(ys), status=status, message=message,
        t_last=float(res.t_last) if res is not None else float(t_eval[0]),
        nfev=totals["nfev"], njev=totals["njev"], nlu=totals["nlu"], nsteps=totals["nsteps"],
        method=res.method if res is not None else str(kwargs.get("method", "DOP853")),
        rtol=res.rtol if res is not None else float(kwargs.get("rtol", 0.0)),
        atol=res.atol if res is not None else float(kwargs.get("atol", 0.0)),
        wall_time_s=time.perf_counter() - start, extra=flow.statistics(),
    )
