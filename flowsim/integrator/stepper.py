"""ODE integration of a flow on scipy's solvers (the ``OdeSolver`` classes behind ``solve_ivp``).

flowsim steps the solver itself (exactly what ``solve_ivp`` does inside) so that between two steps it can
check for divergence (non-finite or overflowing state), enforce a wall-time or step budget, update a
progress bar, and keep everything computed so far when the user presses Ctrl-C. Saved states are taken from
the solver's dense output at the requested times, like ``solve_ivp(t_eval=...)``. The result is a plain
object in the style of ``solve_ivp``'s (``t``, ``y``, ``nfev``, ``status``, ``message``, ``t_events``,
``y_events``).

Events follow ``solve_ivp``: each ``event(t, y) -> float`` may carry ``terminal`` (bool, or a positive int
= stop at that occurrence) and ``direction`` (> 0: only upward zero crossings, < 0: only downward, 0: both).
They are evaluated once per accepted step (never per velocity evaluation) and a sign change over a step is
located by Brent's method on the step's dense output.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.integrate import BDF, DOP853, LSODA, RK23, RK45, Radau
from scipy.optimize import brentq

from ..errors import BadInputError
from .result import IntegrationResult

SOLVERS = {"DOP853": DOP853, "RK45": RK45, "RK23": RK23, "Radau": Radau, "BDF": BDF, "LSODA": LSODA}
#: the solvers that take a Jacobian (``jac=``); the explicit ones ignore it
IMPLICIT_SOLVERS = ("Radau", "BDF", "LSODA")
#: scipy raises any rtol below 100·eps to this value (``scipy.integrate._ivp.common.validate_tol``)
MIN_RTOL = 100 * np.finfo(float).eps
BLOWUP = 1e100
#: consecutive non-finite velocity evaluations after which the run is declared diverged. scipy shrinks the
#: step after a non-finite trial stage and normally fails on its own (step below the spacing of floats)
#: after a few hundred evaluations; this bound only guarantees that no solver can loop forever on NaN.
MAX_NONFINITE_EVALS = 2000
#: solvers whose dense output gives the same numbers for an array of times as for each time alone (the
#: Horner scheme of ``Dop853DenseOutput`` runs entry-wise), so the saving times passed in one step are
#: read off in one call, as ``solve_ivp(t_eval=...)`` does
VECTOR_DENSE_OUTPUT = ("DOP853",)


#: Hairer's stiffness test for the Dormand–Prince pairs (HW96 §IV.2, the codes DOPRI5/DOP853): with the
#: last two stages at t + h, hλ ≈ h‖f(y₁) − f(ŷ)‖/‖y₁ − ŷ‖ estimates h times the dominant eigenvalue; the
#: step is stability-limited when hλ exceeds the boundary of the method's stability region on the negative
#: axis (3.25 for RK45 = DOPRI5, 6.1 for DOP853), and the problem is declared stiff after STIFF_COUNT such
#: steps (reset by STIFF_RESET steps below it)
STIFF_BOUNDARY = {"RK45": 3.25, "DOP853": 6.1}
STIFF_COUNT = 15
STIFF_RESET = 6


class _StiffnessMonitor:
    """Hairer's stiffness detection on scipy's explicit Runge–Kutta solvers, once per accepted step."""

    def __init__(self, solver, method: str):
        self.solver = solver
        self.bound = STIFF_BOUNDARY[method]
        self.stage = solver.n_stages - 1
        if solver.C[self.stage] != 1.0:
            raise ValueError(f"{method}: the last stage is not at t + h")
        self.stiff = 0
        self.nonstiff = 0
        self.h_lambda = 0.0

    def step(self) -> bool:
        """Update the counters after an accepted step; True when the problem has become stiff."""
        sv = self.solver
        h, s = sv.h_previous, self.stage
        y_stage = sv.y_old + h * (sv.K[:s].T @ sv.A[s, :s])
        den = np.linalg.norm(sv.y - y_stage)
        if den == 0.0:
            return False
        self.h_lambda = h * float(np.linalg.norm(sv.K[-1] - sv.K[s])) / float(den)
        if self.h_lambda > self.bound:
            self.nonstiff = 0
            self.stiff += 1
        else:
            self.nonstiff += 1
            if self.nonstiff >= STIFF_RESET:
                self.stiff = 0
        return self.stiff >= STIFF_COUNT


class _NonFiniteVelocity(Exception):
    """Raised inside the solver to abandon a step loop that sees only non-finite velocities."""


def check_tolerances(rtol: float, atol: float) -> float:
    """Validate ``rtol`` and ``atol`` (finite numbers > 0, else :class:`BadInputError`); returns rtol
    raised to ``MIN_RTOL`` = 100·ε as scipy does (every engine uses this one check)."""
    for name, v in (("--rtol", rtol), ("--atol", atol)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise BadInputError(f"{name} must be a finite number > 0, got {v!r}")
    return max(float(rtol), MIN_RTOL)


def log_time_grid(t_end: float, n_save: int = 200, t_min: float | None = None, t0: float = 0.0) -> np.ndarray:
    """Saving times: t0 followed by ``n_save`` log-spaced times from ``t_min`` (default t_end·1e-5, at
    least just above t0) to ``t_end``."""
    if not (math.isfinite(t_end) and t_end > t0):
        raise BadInputError(f"--t-end must be a finite number > {t0:g}, got {t_end!r}")
    if n_save < 1:
        raise BadInputError(f"number of saved times must be ≥ 1, got {n_save}")
    lo = t_end * 1e-5 if t_min is None else t_min
    lo = max(lo, t0 + (t_end - t0) * 1e-9)
    # lo can underflow to 0 for a subnormal t_end; geomspace needs 0 < lo
    grid = np.geomspace(lo, t_end, n_save) if 0 < lo < t_end else np.array([t_end])
    grid = grid[grid > t0]
    return np.concatenate([[t0], grid])


def progress_bar(enabled: bool | None, t0: float, t_end: float) -> Any:
    """A tqdm bar over the log-time fraction of (t0, t_end) (``enabled=None``: only on a TTY), or None."""
    if enabled is False:
        return None
    if enabled is None and not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=1000, delay=2.0, desc="integrating", unit="‰", leave=False,
                bar_format="{desc}: {percentage:3.0f}% of log-time |{bar}| t={postfix} [{elapsed}]")


def log_fraction(t: float, t0: float, t_end: float) -> float:
    """How far t is along (t0, t_end) on the log1p scale the progress bar shows (0 to 1)."""
    return math.log1p(max(t - t0, 0.0)) / math.log1p(t_end - t0)


class _Events:
    """The events of one integration (``solve_ivp`` semantics), evaluated once per accepted step."""

    def __init__(self, events: Sequence[Callable[[float, np.ndarray], float]] | None):
        self.events = list(events or [])
        n = len(self.events)
        self.direction = np.zeros(n)
        self.max_count = np.full(n, np.inf)
        for i, ev in enumerate(self.events):
            if not callable(ev):
                raise TypeError(f"event {i} is not callable")
            self.direction[i] = float(getattr(ev, "direction", 0.0))
            terminal = getattr(ev, "terminal", None)
            if terminal is None or terminal is False or terminal == 0:
                continue
            if terminal is True:
                self.max_count[i] = 1
            elif int(terminal) == terminal and terminal > 0:
                self.max_count[i] = int(terminal)
            else:
                raise ValueError(f"event {i}: `terminal` must be a bool or a positive int, got {terminal!r}")
        self.count = np.zeros(n, dtype=int)
        self.t_events: list[list[float]] = [[] for _ in range(n)]
        self.y_events: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.g: Any = None  # the event values at the last step (an array once start() ran)

    def name(self, i: int) -> str:
        return str(getattr(self.events[i], "__name__", f"event {i}"))

    def values(self, t: float, y: np.ndarray) -> np.ndarray:
        return np.array([float(ev(t, y)) for ev in self.events])

    def start(self, t: float, y: np.ndarray) -> None:
        if self.events:
            self.g = self.values(t, y)

    def step(self, t_old: float, t: float, y: np.ndarray, dense: Callable) -> tuple[int, float] | None:
        """Record the zero crossings inside (t_old, t]; return (index, time) of a terminal one, if any.

        Like ``solve_ivp``: an event is active on the step when g changed sign (with its ``direction``),
        each root is found by Brent's method on the dense output, roots are handled in time order and the
        first event whose count reaches its ``terminal`` number stops the integration there.
        """
        if not self.events:
            return None
        g_old, g_new = self.g, self.values(t, y)
        self.g = g_new
        up = (g_old <= 0) & (g_new >= 0)
        down = (g_old >= 0) & (g_new <= 0)
        either = up | down
        active: Any = np.nonzero((up & (self.direction > 0)) | (down & (self.direction < 0))
                                 | (either & (self.direction == 0)))[0]
        if active.size == 0:
            return None
        roots = []
        for i in active:
            ev = self.events[i]
            if g_new[i] == 0.0:
                roots.append(t)
                continue
            if g_old[i] == 0.0:  # a zero at the start of the step was recorded on the previous step
                roots.append(np.nan)
                continue
            roots.append(brentq(lambda s, ev=ev: float(ev(s, dense(s))), t_old, t,
                                xtol=4 * np.finfo(float).eps, rtol=4 * np.finfo(float).eps))
        order = np.argsort(roots)
        for j in order:
            i, root = int(active[j]), float(roots[j])
            if math.isnan(root):
                continue
            self.count[i] += 1
            self.t_events[i].append(root)
            self.y_events[i].append(np.asarray(y if root == t else dense(root), dtype=float).copy())
            if self.count[i] >= self.max_count[i]:
                return i, root
        return None

    def arrays(self, dim: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        ys = [np.array(v) if v else np.empty((0, dim)) for v in self.y_events]
        return [np.array(v, dtype=float) for v in self.t_events], ys


class _GuardedField:
    """The vector field as the solver sees it: a non-finite state or velocity, or a numerical error raised
    by the field, becomes a NaN velocity (the solver then shrinks its step); the first such time and error
    are kept for the message, and ``MAX_NONFINITE_EVALS`` consecutive ones end the run."""

    def __init__(self, fun: Callable[[float, np.ndarray], np.ndarray]):
        self.fun = fun
        self.nonfinite: list[float] = []  # time of the first non-finite velocity
        self.errors: list[str] = []  # first numerical error raised by ``fun`` (e.g. an SVD failure)
        self.streak = 0  # consecutive non-finite evaluations
        # a field that turns every non-finite state into a non-finite velocity without raising (matrix
        # products only, e.g. the unpenalized layer-wise flow) needs no check of the state before its
        # evaluation: the check of the velocity below sees the same thing, one reduction less per evaluation
        self.check_state = not getattr(fun, "spreads_nonfinite", False)

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        # one reduction per array: a sum is finite iff every entry is (an overflowing sum means entries
        # beyond 1e304, far past ``blowup``), and it allocates no boolean temporary
        if not self.check_state or math.isfinite(np.add.reduce(y, axis=None)):
            try:
                v = np.asarray(self.fun(t, y), dtype=float)
            except (np.linalg.LinAlgError, FloatingPointError, OverflowError) as exc:
                if not self.errors:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                v = np.full_like(y, np.nan)
            else:
                if math.isfinite(np.add.reduce(v, axis=None)):
                    self.streak = 0
                    return v
        else:  # a trial state overflowed: the velocity there is undefined
            v = np.full_like(y, np.nan)
        if not self.nonfinite:
            self.nonfinite.append(t)
        self.streak += 1
        if self.streak >= MAX_NONFINITE_EVALS:
            raise _NonFiniteVelocity(t)
        return v

    def note(self) -> str:
        """Where the velocity first became non-finite, and the first error, for a message."""
        note = f"; the velocity was first non-finite at t={self.nonfinite[0]:.6g}" if self.nonfinite else ""
        return note + (f" ({self.errors[0]})" if self.errors else "")


class _StepLimits:
    """The rules that end a run between two accepted steps besides t_end, events and divergence: the
    stiffness test, a stalled step size, the step budget and the wall-time budget (checked in this order,
    only while the solver is still running)."""

    def __init__(self, monitor: _StiffnessMonitor | None, min_step: float | None, stall_steps: int,
                 max_steps: int | None, max_wall_time: float | None, start: float):
        self.monitor, self.min_step, self.stall_steps = monitor, min_step, stall_steps
        self.max_steps, self.max_wall_time, self.start = max_steps, max_wall_time, start
        self.small_steps = 0

    def check(self, solver: Any, t_prev: float, nsteps: int) -> tuple[str, str] | None:
        """(status, message) when a rule ends the run after this step, else None."""
        if solver.status != "running":
            return None
        if self.monitor is not None and self.monitor.step():
            return "stiff", (f"the problem became stiff at t={solver.t:.10g} (step {nsteps}): h·λ ≈ "
                             f"{self.monitor.h_lambda:.3g} > {self.monitor.bound} on {STIFF_COUNT} steps, "
                             f"step h={solver.h_previous:.3g}")
        if self.min_step is not None:
            self.small_steps = self.small_steps + 1 if solver.t - t_prev < self.min_step else 0
            if self.small_steps >= self.stall_steps:
                return "stalled", (f"the step size stayed below {self.min_step:.3g} for {self.stall_steps} "
                                   f"steps at t={solver.t:.10g} (step {nsteps})")
        if self.max_steps is not None and nsteps >= self.max_steps:
            return "failed", f"step budget of {self.max_steps} steps exhausted at t={solver.t:.6g}"
        if self.max_wall_time is not None and time.perf_counter() - self.start > self.max_wall_time:
            return "failed", f"wall-time budget of {self.max_wall_time:g} s exhausted at t={solver.t:.6g}"
        return None


def _solver_kwargs(method: str, rtol: float, atol: float, max_step: float, first_step: float | None,
                   jac: Callable | np.ndarray | None) -> dict:
    kwargs: dict = {"rtol": rtol, "atol": atol, "max_step": max_step}
    if first_step is not None:
        kwargs["first_step"] = first_step
    if jac is not None and method in IMPLICIT_SOLVERS:
        kwargs["jac"] = jac
    return kwargs


def integrate(
    fun: Callable[[float, np.ndarray], np.ndarray],
    y0: np.ndarray,
    t_eval: np.ndarray,
    *,
    method: str = "DOP853",
    rtol: float = 1e-7,
    atol: float = 1e-10,
    max_steps: int | None = None,
    max_wall_time: float | None = None,
    progress: bool | None = None,
    first_step: float | None = None,
    max_step: float = np.inf,
    blowup: float = BLOWUP,
    events: Sequence[Callable[[float, np.ndarray], float]] | None = None,
    jac: Callable | np.ndarray | None = None,
    min_step: float | None = None,
    stall_steps: int = 20,
    detect_stiffness: bool = False,
) -> IntegrationResult:
    """Integrate ẏ = fun(t, y) from t_eval[0] (where y = y0) and return the states at ``t_eval``.

    ``method`` is any solver name of ``scipy.integrate.solve_ivp`` (DOP853 default, RK45, RK23, Radau,
    BDF, LSODA). ``max_steps``/``max_wall_time`` stop the run (status ``failed``) when exhausted; a state
    that becomes non-finite or exceeds ``blowup`` stops it with status ``diverged``. Ctrl-C returns the
    states saved so far with status ``interrupted``. ``progress=None`` shows a tqdm bar only on a TTY and
    only after two seconds.

    ``events`` and ``jac`` are those of ``solve_ivp``: events are located on the dense output of each
    accepted step (a terminal one ends the run with status ``event``); ``jac`` goes to the implicit
    solvers (Radau, BDF, LSODA) and is ignored by the explicit ones. ``min_step``: when the accepted step
    stays below it for ``stall_steps`` consecutive steps the run stops with status ``stalled`` (how a
    driver notices that an explicit solver has met stiffness; off by default). ``detect_stiffness`` (RK45 and
    DOP853 only) runs Hairer's stiffness test on every accepted step and stops with status ``stiff`` once the
    step is stability-limited (see ``STIFF_BOUNDARY``). An rtol below 100·eps is
    raised to 100·eps, as scipy does, without its warning; the result records the value used.
    """
    if method not in SOLVERS:
        raise BadInputError(f"--method must be one of {'|'.join(SOLVERS)}, got {method!r}")
    rtol = check_tolerances(rtol, atol)
    t_eval = np.asarray(t_eval, dtype=float)
    if t_eval.ndim != 1 or t_eval.size < 1 or np.any(np.diff(t_eval) <= 0) or not np.all(np.isfinite(t_eval)):
        raise BadInputError("saving times must be finite and strictly increasing")
    ev = _Events(events)
    t0, t_end = float(t_eval[0]), float(t_eval[-1])
    y0 = np.asarray(y0, dtype=float)
    wrapped = _GuardedField(fun)
    nonfinite, errors, nonfinite_note = wrapped.nonfinite, wrapped.errors, wrapped.note
    vector_dense = method in VECTOR_DENSE_OUTPUT

    start = time.perf_counter()
    ts: list[float] = [t0]
    ys: list[np.ndarray] = [y0.copy()]
    status, message = "ok", "reached t_end"
    event_index: int | None = None
    t_stop: float | None = None  # time of a terminal event
    y_stop: np.ndarray | None = None
    nsteps = 0
    solver = None
    bar = progress_bar(progress, t0, t_end)
    if not np.all(np.isfinite(y0)) or np.max(np.abs(y0), initial=0.0) > blowup:
        status, message = "diverged", f"the initial state is not finite or exceeds {blowup:.0e} (t={t0:g})"
    elif t_end > t0:
        errstate = np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")
        errstate.__enter__()  # overflow is detected and reported below, not printed as warnings
        try:
            if not np.all(np.isfinite(wrapped(t0, y0))):
                # scipy's initial step size would be NaN and its step loop would never end: stop here.
                raise _NonFiniteVelocity(t0)
            ev.start(t0, y0)
            solver = SOLVERS[method](wrapped, t0, y0, t_end,
                                     **_solver_kwargs(method, rtol, atol, max_step, first_step, jac))
            monitor = (_StiffnessMonitor(solver, method)
                       if detect_stiffness and method in STIFF_BOUNDARY else None)
            limits = _StepLimits(monitor, min_step, stall_steps, max_steps, max_wall_time, start)
            k = 1
            while solver.status == "running":
                t_prev = solver.t
                msg = solver.step()
                nsteps += 1
                if solver.status == "failed":
                    status = "diverged" if nonfinite else "failed"
                    message = (f"integrator failed at t={solver.t:.6g} (step {nsteps}): "
                               f"{str(msg).rstrip('.')}{nonfinite_note()}")
                    break
                y = solver.y
                if not np.all(np.isfinite(y)) or np.max(np.abs(y)) > blowup:
                    status = "diverged"
                    message = (f"state became non-finite or exceeded {blowup:.0e} at t={solver.t:.6g} "
                               f"(step {nsteps}); last good time t={t_prev:.6g}")
                    break
                dense = None
                t_save = solver.t
                if ev.events:
                    dense = solver.dense_output()
                    hit = ev.step(t_prev, solver.t, y, dense)
                    if hit is not None:
                        event_index, t_stop = hit
                        y_stop = ev.y_events[event_index][-1]
                        t_save = t_stop
                if k < t_eval.size and t_eval[k] <= t_save:
                    dense = dense or solver.dense_output()
                    k_end = int(np.searchsorted(t_eval, t_save, side="right"))
                    ts.extend(t_eval[k:k_end].tolist())
                    if vector_dense:  # one call for every saving time of the step (columns = states)
                        ys.extend(np.asarray(dense(t_eval[k:k_end]), dtype=float).T)
                    else:
                        ys.extend(np.asarray(dense(tk), dtype=float) for tk in t_eval[k:k_end])
                    k = k_end
                if event_index is not None:
                    status = "event"
                    message = f"terminal event {ev.name(event_index)} at t={t_stop:.10g} (step {nsteps})"
                    break
                if bar is not None:
                    bar.n = int(1000 * log_fraction(solver.t, t0, t_end))
                    bar.set_postfix_str(f"{solver.t:.3g}", refresh=False)
                    bar.refresh()
                stop = limits.check(solver, t_prev, nsteps)
                if stop is not None:
                    status, message = stop
                    break
        except _NonFiniteVelocity:
            status = "diverged"
            if solver is None:
                message = f"the velocity is not finite at the initial time t={t0:g}" + (
                    f" ({errors[0]})" if errors else "")
            else:
                message = (f"the velocity stayed non-finite for {MAX_NONFINITE_EVALS} evaluations after "
                           f"t={solver.t:.6g} (step {nsteps}){nonfinite_note()}")
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            if not nonfinite:  # not caused by a non-finite velocity: a genuine error, keep its traceback
                raise
            # implicit solvers (BDF, Radau, LSODA) may raise on a Jacobian or LU with NaN entries
            status = "diverged"
            message = (f"solver error at t={solver.t if solver is not None else t0:.6g} (step {nsteps}): "
                       f"{type(exc).__name__}: {exc}{nonfinite_note()}")
        except KeyboardInterrupt:
            status = "interrupted"
            t_at = solver.t if solver is not None else t0
            message = f"interrupted by the user at t={t_at:.6g} (step {nsteps})"
        finally:
            errstate.__exit__(None, None, None)
            if bar is not None:
                bar.close()
    t_events, y_events = ev.arrays(y0.size)
    if t_stop is not None:
        t_last, y_last = t_stop, y_stop
    elif solver is not None:
        t_last, y_last = float(solver.t), np.asarray(solver.y, dtype=float).copy()
    else:
        t_last, y_last = t0, y0.copy()
    return IntegrationResult(
        t=np.array(ts), y=np.array(ys), status=status, message=message, t_last=float(t_last),
        nfev=int(getattr(solver, "nfev", 0)), njev=int(getattr(solver, "njev", 0)),
        nlu=int(getattr(solver, "nlu", 0)), nsteps=nsteps, method=method, rtol=rtol, atol=float(atol),
        wall_time_s=time.perf_counter() - start, t_events=t_events, y_events=y_events,
        event_index=event_index, y_last=y_last,
    )
