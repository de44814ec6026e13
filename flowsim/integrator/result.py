"""The result of an integration (:func:`flowsim.integrator.integrate`, the arrival and sliding drivers, the
compiled engine): a plain object in the style of ``solve_ivp``'s."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class IntegrationResult:
    """Outcome of :func:`flowsim.integrator.integrate` (and of every driver built on it).

    ``t`` (T,) are the saved times reached, ``y`` (T, dim) the states there. ``status`` is ``ok``,
    ``event`` (a terminal event fired: ``event_index`` says which, ``t_last`` is its time and the saved
    states are those of ``t_eval`` up to it), ``stalled`` (the accepted step stayed below ``min_step``),
    ``stiff`` (``detect_stiffness``: the explicit step became stability-limited),
    ``diverged`` (non-finite or overflowing state), ``failed`` (solver failure or budget exhausted) or
    ``interrupted`` (Ctrl-C); ``message`` says where. ``t_last`` is the last time reached. ``t_events[i]``
    and ``y_events[i]`` are the times and states of every occurrence of event i (as ``solve_ivp``).
    ``rtol``/``atol`` are the tolerances the solver actually used.
    """

    t: np.ndarray
    y: np.ndarray
    status: str
    message: str
    t_last: float
    nfev: int
    njev: int
    nlu: int
    nsteps: int
    method: str
    rtol: float
    atol: float
    wall_time_s: float
    extra: dict = field(default_factory=dict)
    t_events: list[np.ndarray] = field(default_factory=list)
    y_events: list[np.ndarray] = field(default_factory=list)
    event_index: int | None = None
    y_last: np.ndarray | None = None

    @property
    def success(self) -> bool:
        """True when the integration reached the last requested time."""
        return self.status == "ok"

    def stats(self) -> dict:
        """Solver statistics for ``run.json``."""
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, "nfev": self.nfev,
                "njev": self.njev, "nlu": self.nlu, "steps": self.nsteps, "t_last": self.t_last,
                "integration_wall_time_s": self.wall_time_s, **self.extra}
