"""Python driver of the compiled DOP853 loop: budgets, Ctrl-C, progress and the :class:`IntegrationResult`.

Same contract as :func:`flowsim.integrator.integrate` (statuses ``ok``/``diverged``/``failed``/
``interrupted``, the same messages, every state saved before a failure kept); the statistics add
``engine = "numba"``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ...errors import BadInputError
from ...penalties import Penalty
from ...problems import CompletionProblem
from ..result import IntegrationResult
from ..stepper import BLOWUP, MAX_NONFINITE_EVALS, check_tolerances, log_fraction, progress_bar
from . import dop853 as _d
from .field import loss_weight, penalty_vector

#: accepted steps per compiled chunk: budgets and Ctrl-C are checked between chunks
CHUNK_STEPS = 256
TOO_SMALL_STEP = "Required step size is less than spacing between numbers"


@dataclass(frozen=True)
class FieldArrays:
    """The arrays :func:`~flowsim.integrator.compiled.field.layerwise_field` reads: layer dims, state
    offsets, loss weight (2c/D)·1_Ω, W* and the penalty vector [kind, λ, p, q]."""

    dims: np.ndarray
    offs: np.ndarray
    weight: np.ndarray
    w_star: np.ndarray
    pen: np.ndarray

    @classmethod
    def build(cls, problem: CompletionProblem, dims: list[int], penalty: Penalty | None, lam: float
              ) -> FieldArrays:
        """Arrays for the layer-wise flow of ``problem`` with layer dims [d_0..d_N]."""
        d = np.asarray(dims, dtype=np.int64)
        offs = np.concatenate([[0], np.cumsum(d[1:] * d[:-1])]).astype(np.int64)
        return cls(d, offs, loss_weight(problem), np.ascontiguousarray(problem.W_star, dtype=float),
                   penalty_vector(penalty, lam))

    def args(self) -> tuple:
        """Positional arguments of the compiled field."""
        return self.dims, self.offs, self.weight, self.w_star, self.pen


def solve_compiled(
    field: FieldArrays,
    y0: np.ndarray,
    t_eval: np.ndarray,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-10,
    max_steps: int | None = None,
    max_wall_time: float | None = None,
    progress: bool | None = None,
    max_step: float = np.inf,
    blowup: float = BLOWUP,
    chunk_steps: int = CHUNK_STEPS,
) -> IntegrationResult:
    """Integrate the layer-wise gradient flow with the compiled DOP853 and return the states at ``t_eval``.

    Same arguments and result as :func:`flowsim.integrator.integrate` with ``method="DOP853"``.
    """
    rtol_used = check_tolerances(rtol, atol)
    t_eval = np.asarray(t_eval, dtype=float)
    if t_eval.ndim != 1 or t_eval.size < 1 or np.any(np.diff(t_eval) <= 0) or not np.all(np.isfinite(t_eval)):
        raise BadInputError("saving times must be finite and strictly increasing")
    t0, t_end = float(t_eval[0]), float(t_eval[-1])
    start_time = time.perf_counter()
    y = np.array(y0, dtype=float)
    ys = np.zeros((t_eval.size, y.size))
    ys[0] = y
    f = np.empty_like(y)
    fst = np.array([t0, 0.0, np.nan, t0])
    ist = np.zeros(5, dtype=np.int64)
    ist[_d.K_SAVE] = 1
    args = field.args()
    code = _d.FINISHED
    bar = None
    status: str | None = None
    message = ""
    if not np.all(np.isfinite(y)) or np.max(np.abs(y), initial=0.0) > blowup:
        status, message = "diverged", f"the initial state is not finite or exceeds {blowup:.0e} (t={t0:g})"
    elif t_end > t0:
        bar = progress_bar(progress, t0, t_end)
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                code = _d.RUNNING
                if not _d.start(y, f, fst, ist, t_end, *args, rtol_used, atol, max_step, MAX_NONFINITE_EVALS):
                    code = _d.INITIAL_NONFINITE
                while code == _d.RUNNING:
                    limit = chunk_steps if max_steps is None else min(chunk_steps, max_steps - ist[_d.NSTEPS])
                    code = _d.advance(y, f, fst, ist, t_eval, ys, *args, rtol_used, atol, max_step, blowup,
                                      MAX_NONFINITE_EVALS, limit)
                    t_now, nsteps = fst[_d.T_NOW], int(ist[_d.NSTEPS])
                    if bar is not None:
                        bar.n = int(1000 * log_fraction(t_now, t0, t_end))
                        bar.set_postfix_str(f"{t_now:.3g}", refresh=False)
                        bar.refresh()
                    if code != _d.RUNNING:
                        break
                    status, message = budget_exhausted(max_steps, max_wall_time, start_time, t_now, nsteps)
                    if status is not None:
                        break
        except KeyboardInterrupt:
            status = "interrupted"
            message = f"interrupted by the user at t={fst[_d.T_NOW]:.6g} (step {int(ist[_d.NSTEPS])})"
        except (np.linalg.LinAlgError, ZeroDivisionError) as exc:  # an SVD that did not converge
            status = "diverged"
            message = (f"solver error at t={fst[_d.T_NOW]:.6g} (step {int(ist[_d.NSTEPS])}): "
                       f"{type(exc).__name__}: {exc}{nonfinite_note(fst, ist)}")
        finally:
            if bar is not None:
                bar.close()
    return make_result(code, status, message, t_eval, ys, y, fst, ist, rtol_used, atol, blowup,
                       time.perf_counter() - start_time)


def budget_exhausted(max_steps: int | None, max_wall_time: float | None, start_time: float, t_now: float,
                     nsteps: int) -> tuple[str | None, str]:
    """(``"failed"``, message) when the step or wall-time budget is used up, else (None, "")."""
    if max_steps is not None and nsteps >= max_steps:
        return "failed", f"step budget of {max_steps} steps exhausted at t={t_now:.6g}"
    if max_wall_time is not None and time.perf_counter() - start_time > max_wall_time:
        return "failed", f"wall-time budget of {max_wall_time:g} s exhausted at t={t_now:.6g}"
    return None, ""


def nonfinite_note(fst: np.ndarray, ist: np.ndarray) -> str:
    """Where the velocity was first non-finite, as the scipy path reports it."""
    seen = ist[_d.NONFINITE_SEEN]
    return f"; the velocity was first non-finite at t={fst[_d.T_NONFINITE]:.6g}" if seen else ""


def end_status(code: int, t0: float, t_now: float, nsteps: int, t_prev: float, t_nonfinite: float | None,
               blowup: float) -> tuple[str, str]:
    """(status, message) of a DOP853 solve that stopped with return ``code`` of
    :func:`~flowsim.integrator.compiled.dop853.advance` at ``t_now`` after ``nsteps`` steps, worded as the
    scipy path words them (:func:`flowsim.integrator.integrate`); ``t_nonfinite`` is where the velocity was
    first non-finite (None: never). Any engine with these return codes can use it."""
    note = "" if t_nonfinite is None else f"; the velocity was first non-finite at t={t_nonfinite:.6g}"
    if code == _d.INITIAL_NONFINITE:
        return "diverged", f"the velocity is not finite at the initial time t={t0:g}"
    if code == _d.TOO_SMALL:
        return ("diverged" if t_nonfinite is not None else "failed",
                f"integrator failed at t={t_now:.6g} (step {nsteps + 1}): {TOO_SMALL_STEP}{note}")
    if code == _d.STATE_DIVERGED:
        return "diverged", (f"state became non-finite or exceeded {blowup:.0e} at t={t_now:.6g} (step "
                            f"{nsteps}); last good time t={t_prev:.6g}")
    if code == _d.NONFINITE_STREAK:
        return "diverged", (f"the velocity stayed non-finite for {MAX_NONFINITE_EVALS} evaluations after "
                            f"t={t_now:.6g} (step {nsteps}){note}")
    return "ok", "reached t_end"


def make_result(code: int, status: str | None, message: str, t_eval: np.ndarray, ys: np.ndarray,
                y: np.ndarray, fst: np.ndarray, ist: np.ndarray, rtol: float, atol: float, blowup: float,
                wall_time_s: float) -> IntegrationResult:
    """The :class:`IntegrationResult` of one compiled solve that ended with return ``code`` of
    :func:`~flowsim.integrator.compiled.dop853.advance` (``status``/``message`` given: a budget, Ctrl-C or
    error)."""
    t_now, nsteps = fst[_d.T_NOW], int(ist[_d.NSTEPS])
    if status is None:
        t_nonfinite = float(fst[_d.T_NONFINITE]) if ist[_d.NONFINITE_SEEN] else None
        status, message = end_status(code, float(t_eval[0]), t_now, nsteps, fst[_d.T_PREV], t_nonfinite,
                                     blowup)
    n_saved = int(ist[_d.K_SAVE])
    return IntegrationResult(
        t=t_eval[:n_saved].copy(), y=ys[:n_saved].copy(), status=status, message=message,
        t_last=float(t_now), nfev=int(ist[_d.NFEV]), njev=0, nlu=0, nsteps=nsteps,
        method="DOP853", rtol=rtol, atol=float(atol), wall_time_s=wall_time_s,
        extra={"engine": "numba"}, y_last=y.copy(),
    )
