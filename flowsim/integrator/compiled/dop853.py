"""scipy's DOP853 step loop compiled with numba around :func:`.field.layerwise_field`.

The algorithm is ``scipy.integrate.DOP853`` line by line (HNW93 Sec. II.10, Dormand–Prince 8(5,3) with
scipy's coefficients ``scipy.integrate._ivp.dop853_coefficients``): the same initial step
(``select_initial_step``, HNW93 Sec. II.4), the same 5th/3rd-order blended error norm, the same step-size
control (safety 0.9, factors 0.2–10, no growth right after a rejection), the same 7th-order dense output
with its three extra stages. Results therefore agree with the scipy path to the tolerance (the sums run in
a different order, so not bit for bit).

The solver advances in chunks of at most ``steps_limit`` steps (:func:`advance`) and keeps its whole state
in arrays, so that the Python driver can check wall-time and step budgets and Ctrl-C between chunks.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.integrate._ivp import dop853_coefficients as _co

from .field import layerwise_field

N_STAGES = _co.N_STAGES
A = np.ascontiguousarray(_co.A, dtype=np.float64)
B = np.ascontiguousarray(_co.B, dtype=np.float64)
C = np.ascontiguousarray(_co.C, dtype=np.float64)
E3 = np.ascontiguousarray(_co.E3, dtype=np.float64)
E5 = np.ascontiguousarray(_co.E5, dtype=np.float64)
D = np.ascontiguousarray(_co.D, dtype=np.float64)
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0
ERROR_EXPONENT = -1.0 / 8.0  # −1/(error estimator order + 1), order 7

# indices of the integer state ``ist``
K_SAVE, NFEV, NSTEPS, STREAK, NONFINITE_SEEN = 0, 1, 2, 3, 4
# indices of the float state ``fst``
T_NOW, H_ABS, T_NONFINITE, T_PREV = 0, 1, 2, 3
# return codes of :func:`advance`
RUNNING, FINISHED, TOO_SMALL, STATE_DIVERGED, NONFINITE_STREAK = 0, 1, 2, 3, 4
#: code of a solve whose velocity is not finite at the initial time (set by the drivers of :func:`start`)
INITIAL_NONFINITE = -1


@njit(cache=True)
def _rms(x):  # pragma: no cover - compiled
    return np.sqrt(np.sum(x * x) / x.size)


@njit(cache=True)
def _finite(x):  # pragma: no cover - compiled
    for v in x:
        if not np.isfinite(v):
            return False
    return True


@njit(cache=True)
def _combine(a, K, s, h, y, out):  # pragma: no cover - compiled
    """out = y + h Σ_{i<s} a_i K_i, without temporaries (the stage sums of an explicit Runge–Kutta step)."""
    n = y.size
    for j in range(n):
        out[j] = 0.0
    for i in range(s):
        ai = a[i]
        if ai != 0.0:
            Ki = K[i]
            for j in range(n):
                out[j] += ai * Ki[j]
    for j in range(n):
        out[j] = y[j] + h * out[j]


@njit(cache=True)
def _eval(t, y, out, ist, fst, dims, offs, weight, w_star, pen, max_nonfinite):  # pragma: no cover
    """out = f(t, y); counts the evaluation and the streak of non-finite velocities (as the scipy path)."""
    ist[NFEV] += 1
    if _finite(y):
        layerwise_field(y, out, dims, offs, weight, w_star, pen)
    else:
        out[:] = np.nan
    if _finite(out):
        ist[STREAK] = 0
        return True
    if ist[NONFINITE_SEEN] == 0:
        ist[NONFINITE_SEEN] = 1
        fst[T_NONFINITE] = t
    ist[STREAK] += 1
    return ist[STREAK] < max_nonfinite


@njit(cache=True)
def start(y, f, fst, ist, t_bound, dims, offs, weight, w_star, pen, rtol, atol, max_step,
          max_nonfinite):  # pragma: no cover - compiled
    """f = f(t0, y0) and the initial step of HNW93 Sec. II.4 (scipy ``select_initial_step``, order 7).
    Returns False when the initial velocity is not finite."""
    t0 = fst[T_NOW]
    _eval(t0, y, f, ist, fst, dims, offs, weight, w_star, pen, max_nonfinite)
    if ist[NONFINITE_SEEN]:
        return False
    interval = abs(t_bound - t0)
    scale = atol + np.abs(y) * rtol
    d0 = _rms(y / scale)
    d1 = _rms(f / scale)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, interval)
    f1 = np.empty_like(y)
    _eval(t0 + h0, y + h0 * f, f1, ist, fst, dims, offs, weight, w_star, pen, max_nonfinite)
    d2 = _rms((f1 - f) / scale) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / 8.0)
    fst[H_ABS] = min(100 * h0, h1, interval, max_step)
    return True


@njit(cache=True)
def advance(y, f, fst, ist, t_eval, ys, dims, offs, weight, w_star, pen, rtol, atol, max_step, blowup,
            max_nonfinite, steps_limit):  # pragma: no cover - compiled
    """At most ``steps_limit`` accepted DOP853 steps (scipy ``RungeKutta._step_impl``), saving the dense
    output (scipy ``DOP853._dense_output_impl``, ``Dop853DenseOutput``) at every ``t_eval[k] ≤ t`` into
    ``ys[k]``. Returns RUNNING, FINISHED, TOO_SMALL, STATE_DIVERGED or NONFINITE_STREAK."""
    n = y.size
    t_bound = t_eval[-1]
    K = np.empty((D.shape[1], n))
    y_new = np.empty(n)
    y_stage = np.empty(n)
    zero = np.zeros(n)
    F = np.empty((7, n))
    for _ in range(steps_limit):
        t = fst[T_NOW]
        min_step = 10 * abs(np.nextafter(t, np.inf) - t)
        h_abs = fst[H_ABS]
        if h_abs > max_step:
            h_abs = max_step
        elif h_abs < min_step:
            h_abs = min_step
        rejected = False
        while True:
            if h_abs < min_step:
                return TOO_SMALL
            t_new = t + h_abs
            if t_new - t_bound > 0:
                t_new = t_bound
            h = t_new - t
            h_abs = abs(h)
            # rk_step: K_s = f(t + c_s h, y + h Σ_{i<s} a_si K_i)
            K[0] = f
            for s in range(1, N_STAGES):
                _combine(A[s], K, s, h, y, y_stage)
                if not _eval(t + C[s] * h, y_stage, K[s], ist, fst, dims, offs, weight, w_star, pen,
                             max_nonfinite):
                    return NONFINITE_STREAK
            _combine(B, K, N_STAGES, h, y, y_new)
            if not _eval(t + h, y_new, K[N_STAGES], ist, fst, dims, offs, weight, w_star, pen, max_nonfinite):
                return NONFINITE_STREAK
            # error norm of DOP853 (5th order estimate blended with the 3rd order one)
            err5 = 0.0
            err3 = 0.0
            for j in range(n):
                sc = atol + max(abs(y[j]), abs(y_new[j])) * rtol
                e5 = 0.0
                e3 = 0.0
                for i in range(N_STAGES + 1):
                    e5 += K[i, j] * E5[i]
                    e3 += K[i, j] * E3[i]
                err5 += (e5 / sc) ** 2
                err3 += (e3 / sc) ** 2
            if err5 == 0 and err3 == 0:
                error_norm = 0.0
            else:
                error_norm = abs(h) * err5 / np.sqrt((err5 + 0.01 * err3) * n)
            if error_norm < 1:
                if error_norm == 0:
                    factor = MAX_FACTOR
                else:
                    factor = min(MAX_FACTOR, SAFETY * error_norm**ERROR_EXPONENT)
                if rejected:
                    factor = min(1.0, factor)
                h_abs *= factor
                break
            shrink = SAFETY * error_norm**ERROR_EXPONENT
            h_abs *= shrink if shrink > MIN_FACTOR else MIN_FACTOR  # NaN error: shrink by MIN_FACTOR
            rejected = True
        # accepted
        ist[NSTEPS] += 1
        fst[T_PREV] = t
        fst[T_NOW] = t_new
        fst[H_ABS] = h_abs
        bad = False
        for j in range(n):
            v = y_new[j]
            if not (abs(v) <= blowup):
                bad = True
        k = ist[K_SAVE]
        if not bad and k < t_eval.size and t_eval[k] <= t_new:
            # dense output: three extra stages, then the 7 coefficient rows of Dop853DenseOutput
            for s in range(N_STAGES + 1, K.shape[0]):
                _combine(A[s], K, s, h, y, y_stage)
                if not _eval(t + C[s] * h, y_stage, K[s], ist, fst, dims, offs, weight, w_star, pen,
                             max_nonfinite):
                    return NONFINITE_STREAK
            for j in range(n):
                dy = y_new[j] - y[j]
                F[0, j] = dy
                F[1, j] = h * K[0, j] - dy
                F[2, j] = 2 * dy - h * (K[N_STAGES, j] + K[0, j])
            for r in range(D.shape[0]):
                _combine(D[r], K, K.shape[0], h, zero, F[3 + r])
            while k < t_eval.size and t_eval[k] <= t_new:
                x = (t_eval[k] - t) / h
                for j in range(n):
                    v = 0.0
                    for i in range(6, -1, -1):
                        v += F[i, j]
                        v *= x if (6 - i) % 2 == 0 else 1 - x
                    ys[k, j] = v + y[j]
                k += 1
            ist[K_SAVE] = k
        y[:] = y_new
        f[:] = K[N_STAGES]
        if bad:
            return STATE_DIVERGED
        if t_new - t_bound >= 0:
            return FINISHED
    return RUNNING
