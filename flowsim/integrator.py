"""ODE integration of a flow on scipy's solvers (the ``OdeSolver`` classes behind ``solve_ivp``).

flowsim steps the solver itself (exactly what ``solve_ivp`` does inside) so that between two steps it can
check for divergence (non-finite or overflowing state), enforce a wall-time or step budget, update a
progress bar, and keep everything computed so far when the user presses Ctrl-C. Saved states are taken from
the solver's dense output at the requested times, like ``solve_ivp(t_eval=...)``. The result is a plain
object in the style of ``solve_ivp``'s (``t``, ``y``, ``nfev``, ``status``, ``message``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import BDF, DOP853, LSODA, RK23, RK45, Radau

from .errors import BadInputError

SOLVERS = {"DOP853": DOP853, "RK45": RK45, "RK23": RK23, "Radau": Radau, "BDF": BDF, "LSODA": LSODA}
BLOWUP = 1e100
#: consecutive non-finite velocity evaluations after which the run is declared diverged. scipy shrinks the
#: step after a non-finite trial stage and normally fails on its own (step below the spacing of floats)
#: after a few hundred evaluations; this bound only guarantees that no solver can loop forever on NaN.
MAX_NONFINITE_EVALS = 2000


class _NonFiniteVelocity(Exception):
    """Raised inside the solver to abandon a step loop that sees only non-finite velocities."""


@dataclass
class IntegrationResult:
    """Outcome of :func:`integrate`.

    ``t`` (T,) are the saved times reached, ``y`` (T, dim) the states there. ``status`` is ``ok``,
    ``diverged`` (non-finite or overflowing state), ``failed`` (solver failure or budget exhausted) or
    ``interrupted`` (Ctrl-C); ``message`` says where. ``t_last`` is the last time the solver reached.
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

    @property
    def success(self) -> bool:
        """True when the integration reached the last requested time."""
        return self.status == "ok"

    def stats(self) -> dict:
        """Solver statistics for ``run.json``."""
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, "nfev": self.nfev,
                "njev": self.njev, "nlu": self.nlu, "steps": self.nsteps, "t_last": self.t_last,
                "integration_wall_time_s": self.wall_time_s, **self.extra}


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


def _progress_bar(enabled: bool | None, t0: float, t_end: float):
    if enabled is False:
        return None
    if enabled is None and not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=1000, delay=2.0, desc="integrating", unit="‰", leave=False,
                bar_format="{desc}: {percentage:3.0f}% of log-time |{bar}| t={postfix} [{elapsed}]")


def _log_fraction(t: float, t0: float, t_end: float) -> float:
    return math.log1p(max(t - t0, 0.0)) / math.log1p(t_end - t0)


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
) -> IntegrationResult:
    """Integrate ẏ = fun(t, y) from t_eval[0] (where y = y0) and return the states at ``t_eval``.

    ``method`` is any solver name of ``scipy.integrate.solve_ivp`` (DOP853 default, RK45, RK23, Radau,
    BDF, LSODA). ``max_steps``/``max_wall_time`` stop the run (status ``failed``) when exhausted; a state
    that becomes non-finite or exceeds ``blowup`` stops it with status ``diverged``. Ctrl-C returns the
    states saved so far with status ``interrupted``. ``progress=None`` shows a tqdm bar only on a TTY and
    only after two seconds.
    """
    if method not in SOLVERS:
        raise BadInputError(f"--method must be one of {'|'.join(SOLVERS)}, got {method!r}")
    for name, v in (("--rtol", rtol), ("--atol", atol)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise BadInputError(f"{name} must be a finite number > 0, got {v!r}")
    t_eval = np.asarray(t_eval, dtype=float)
    if t_eval.ndim != 1 or t_eval.size < 1 or np.any(np.diff(t_eval) <= 0) or not np.all(np.isfinite(t_eval)):
        raise BadInputError("saving times must be finite and strictly increasing")
    t0, t_end = float(t_eval[0]), float(t_eval[-1])
    y0 = np.asarray(y0, dtype=float)
    nonfinite: list[float] = []  # time of the first non-finite velocity
    errors: list[str] = []  # first numerical error raised by ``fun`` (e.g. an SVD that did not converge)
    streak = [0]  # consecutive non-finite evaluations

    def wrapped(t: float, y: np.ndarray) -> np.ndarray:
        if np.all(np.isfinite(y)):
            try:
                v = np.asarray(fun(t, y), dtype=float)
            except (np.linalg.LinAlgError, FloatingPointError, OverflowError) as exc:
                if not errors:
                    errors.append(f"{type(exc).__name__}: {exc}")
                v = np.full_like(y, np.nan)
        else:  # a trial state overflowed: the velocity there is undefined
            v = np.full_like(y, np.nan)
        if np.all(np.isfinite(v)):
            streak[0] = 0
            return v
        if not nonfinite:
            nonfinite.append(t)
        streak[0] += 1
        if streak[0] >= MAX_NONFINITE_EVALS:
            raise _NonFiniteVelocity(t)
        return v

    def nonfinite_note() -> str:
        note = f"; the velocity was first non-finite at t={nonfinite[0]:.6g}" if nonfinite else ""
        return note + (f" ({errors[0]})" if errors else "")

    start = time.perf_counter()
    ts: list[float] = [t0]
    ys: list[np.ndarray] = [y0.copy()]
    status, message = "ok", "reached t_end"
    nsteps = 0
    solver = None
    bar = _progress_bar(progress, t0, t_end)
    if not np.all(np.isfinite(y0)) or np.max(np.abs(y0), initial=0.0) > blowup:
        status, message = "diverged", f"the initial state is not finite or exceeds {blowup:.0e} (t={t0:g})"
    elif t_end > t0:
        errstate = np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")
        errstate.__enter__()  # overflow is detected and reported below, not printed as warnings
        try:
            if not np.all(np.isfinite(wrapped(t0, y0))):
                # scipy's initial step size would be NaN and its step loop would never end: stop here.
                raise _NonFiniteVelocity(t0)
            kwargs = {"rtol": rtol, "atol": atol, "max_step": max_step}
            if first_step is not None:
                kwargs["first_step"] = first_step
            solver = SOLVERS[method](wrapped, t0, y0, t_end, **kwargs)
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
                if k < t_eval.size and t_eval[k] <= solver.t:
                    dense = solver.dense_output()
                    while k < t_eval.size and t_eval[k] <= solver.t:
                        ts.append(float(t_eval[k]))
                        ys.append(np.asarray(dense(t_eval[k]), dtype=float))
                        k += 1
                if bar is not None:
                    bar.n = int(1000 * _log_fraction(solver.t, t0, t_end))
                    bar.set_postfix_str(f"{solver.t:.3g}", refresh=False)
                    bar.refresh()
                if max_steps is not None and nsteps >= max_steps and solver.status == "running":
                    status = "failed"
                    message = f"step budget of {max_steps} steps exhausted at t={solver.t:.6g}"
                    break
                if (max_wall_time is not None and solver.status == "running"
                        and time.perf_counter() - start > max_wall_time):
                    status = "failed"
                    message = f"wall-time budget of {max_wall_time:g} s exhausted at t={solver.t:.6g}"
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
    return IntegrationResult(
        t=np.array(ts), y=np.array(ys), status=status, message=message,
        t_last=float(solver.t) if solver is not None else t0,
        nfev=int(getattr(solver, "nfev", 0)), njev=int(getattr(solver, "njev", 0)),
        nlu=int(getattr(solver, "nlu", 0)), nsteps=nsteps, method=method, rtol=float(rtol), atol=float(atol),
        wall_time_s=time.perf_counter() - start,
    )
