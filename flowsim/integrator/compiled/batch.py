"""Many independent layer-wise gradient flows of one shape, each with its own DOP853 step control.

The kernels loop over the flows of the arrays they are given and release the GIL, so the driver
(:func:`flowsim.ensemble.simulate_ensemble`) runs disjoint slices of the batch on several threads at once;
the flows never wait for each other.
"""

from __future__ import annotations

from numba import njit

from .dop853 import INITIAL_NONFINITE, RUNNING, advance, start


@njit(nogil=True, cache=True)
def start_many(Y, Fv, FST, IST, codes, t_bound, dims, offs, weights, w_stars, pens, rtol, atol, max_step,
               max_nonfinite):  # pragma: no cover - compiled
    """:func:`flowsim.integrator.compiled.dop853.start` for every flow b with ``codes[b] == RUNNING``."""
    for b in range(Y.shape[0]):
        if codes[b] == RUNNING:
            ok = start(Y[b], Fv[b], FST[b], IST[b], t_bound, dims, offs, weights[b], w_stars[b], pens[b],
                       rtol, atol, max_step, max_nonfinite)
            if not ok:
                codes[b] = INITIAL_NONFINITE


@njit(nogil=True, cache=True)
def advance_many(Y, Fv, FST, IST, codes, t_eval, YS, dims, offs, weights, w_stars, pens, rtol, atol, max_step,
                 blowup, max_nonfinite, steps_limit):  # pragma: no cover - compiled
    """:func:`~flowsim.integrator.compiled.dop853.advance` (at
    most ``steps_limit`` steps) for every running flow."""
    for b in range(Y.shape[0]):
        if codes[b] == RUNNING:
            codes[b] = advance(Y[b], Fv[b], FST[b], IST[b], t_eval, YS[b], dims, offs, weights[b], w_stars[b],
                               pens[b], rtol, atol, max_step, blowup, max_nonfinite, steps_limit)
