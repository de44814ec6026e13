"""Which driver integrates a flow: :func:`solve_flow` is the one call that turns a flow (a vector field from
:mod:`flowsim.flows`) and its initial state into an :class:`~flowsim.integrator.IntegrationResult`.

* the depth-1 Filippov flows: the segment loop of :func:`flowsim.integrator.solve_sliding`;
* the flows that arrive in finite time (:class:`~flowsim.flows.base.ArrivalFlow`, the Adam-type flows):
  :func:`flowsim.integrator.solve_with_arrival`;
* the layer-wise gradient flow: the compiled engine (:mod:`flowsim.integrator.compiled`) or scipy, as
  :func:`engine_for` decides;
* ``model="auto"`` gradient flow: the driver of the formulation it chose;
* every other flow: :func:`flowsim.integrator.integrate` with the flow's Jacobian ``jac`` when it has one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadInputError
from ..flows.auto import AutoGradientFlow
from ..flows.base import ArrivalFlow, Flow
from ..flows.filippov import FilippovSpectralFlow
from ..flows.gf import LayerwiseFlow
from .arrival import solve_with_arrival
from .compiled import AUTO_MAX_STATE, numba_available
from .result import IntegrationResult
from .sliding import solve_sliding
from .stepper import integrate

#: keyword arguments of :func:`solve_flow` the compiled engine implements (anything else, e.g. events or a
#: Jacobian, runs on scipy)
COMPILED_KWARGS = {"rtol", "atol", "max_steps", "max_wall_time", "progress", "max_step", "blowup"}

#: whether ``engine="auto"`` picks the compiled engine for small states (a switch for comparisons). The
#: compiled DOP853 takes scipy's steps; its saved states differ from scipy's only by round-off, which the
#: dense output can amplify during a sharp transition exactly as a 1e-15 perturbation of y0 does on the
#: scipy path (measured: depth 5, decoupled modes, rtol 1e-10: 3.3e-9 at t = 2.13 for both).
AUTO_PICKS_NUMBA = True

#: the field the compiled engine reproduces: a subclass that replaces it runs on scipy
_LAYERWISE_FIELD = LayerwiseFlow.__call__


def _compiled_penalty(flow: LayerwiseFlow) -> bool:
    from .compiled.field import penalty_vector

    try:
        penalty_vector(flow.penalty, flow.lam)
    except TypeError:
        return False
    return True


def engine_for(flow: LayerwiseFlow, size: int, method: str = "DOP853", **integrate_kwargs: Any) -> str:
    """The engine (``"numba"`` or ``"scipy"``) that integrates ``flow`` on a state of ``size`` entries.

    ``flow.engine == "auto"`` picks numba when it is installed, the method is DOP853, nothing the compiled
    loop lacks is asked for (events, a Jacobian), the penalty is one the compiled field knows, ``__call__``
    is :class:`LayerwiseFlow`'s own field and the state has at most ``AUTO_MAX_STATE`` entries; scipy
    otherwise. ``"numba"`` raises :class:`BadInputError` where the compiled engine cannot run.
    """
    wanted = flow.engine == "numba" or (flow.engine == "auto" and AUTO_PICKS_NUMBA and size <= AUTO_MAX_STATE)
    if not wanted:  # decided without importing numba (large states, engine "scipy")
        return "scipy"
    compilable = (method == "DOP853" and numba_available() and _compiled_penalty(flow)
                  and all(k in COMPILED_KWARGS for k, v in integrate_kwargs.items() if v is not None))
    compilable = compilable and type(flow).__call__ is _LAYERWISE_FIELD
    if flow.engine == "numba" and not compilable:
        raise BadInputError("engine 'numba' needs numba installed, method DOP853, a none/ratio/"
                            "nuclear/schatten penalty and no events or Jacobian")
    return "numba" if compilable else "scipy"


def _solve_layerwise(flow: LayerwiseFlow, y0: np.ndarray, t_eval: np.ndarray, *, method: str = "DOP853",
                     **integrate_kwargs: Any) -> IntegrationResult:
    assert flow.packer is not None, "call initial_state first"
    if engine_for(flow, int(np.size(y0)), method, **integrate_kwargs) == "numba":
        from .compiled.solve import FieldArrays, solve_compiled

        field = FieldArrays.build(flow.problem, flow.packer.dims, flow.penalty, flow.lam)
        kwargs = {k: v for k, v in integrate_kwargs.items() if v is not None}
        return solve_compiled(field, y0, t_eval, **kwargs)
    res = integrate(flow, y0, t_eval, method=method, jac=getattr(flow, "jac", None), **integrate_kwargs)
    res.extra.setdefault("engine", "scipy")
    return res


def solve_flow(flow: Flow, y0: np.ndarray, t_eval: np.ndarray, **integrate_kwargs: Any) -> IntegrationResult:
    """Integrate ``flow`` from ``y0`` at ``t_eval[0]`` and return the states at ``t_eval``, on the driver
    the flow needs (module docstring). ``integrate_kwargs`` are those of
    :func:`flowsim.integrator.integrate` (``method``, ``rtol``, ``atol``, ``max_steps``, ``max_wall_time``,
    ``progress``, ...); what a driver puts in the result's ``extra`` ends up in ``run.json``'s ``stats``."""
    if isinstance(flow, AutoGradientFlow):
        return solve_flow(flow.chosen, y0, t_eval, **integrate_kwargs)
    if isinstance(flow, FilippovSpectralFlow):
        return solve_sliding(flow, y0, t_eval, **integrate_kwargs)
    if isinstance(flow, ArrivalFlow):
        return solve_with_arrival(flow, y0, t_eval, **integrate_kwargs)
    if isinstance(flow, LayerwiseFlow):
        return _solve_layerwise(flow, y0, t_eval, **integrate_kwargs)
    return integrate(flow, y0, t_eval, jac=getattr(flow, "jac", None), **integrate_kwargs)
