"""Gradient-flow models: the end-product flow (SPEC §3.1) and the layer-wise flow (SPEC §3.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..compiled import AUTO_MAX_STATE, ENGINES, numba_available
from ..errors import BadInputError
from ..factors import end_product, layer_dims
from ..integrator import IntegrationResult
from ..penalties import Penalty
from ..problems import CompletionProblem
from .base import Flow
from .gradient import FactorPacker, end_product_velocity, layerwise_velocity_into

#: keyword arguments of :meth:`Flow.solve` the compiled engine implements (anything else, e.g. events or a
#: Jacobian, runs on scipy)
COMPILED_KWARGS = {"rtol", "atol", "max_steps", "max_wall_time", "progress", "max_step", "blowup"}


#: whether ``engine="auto"`` picks the compiled engine for small states (a switch for comparisons). The
#: compiled DOP853 takes scipy's steps; its saved states differ from scipy's only by round-off, which the
#: dense output can amplify during a sharp transition exactly as a 1e-15 perturbation of y0 does on the
#: scipy path (measured: depth 5, decoupled modes, rtol 1e-10: 3.3e-9 at t = 2.13 for both).
AUTO_PICKS_NUMBA = True


class EndProductFlow(Flow):
    """Ẇ = −P_W(∇ℓ(W) + λ∇R(W)) on the end product (SPEC §3.1; ACH18 Thm. 1, Zhao22 Eq. 4).

    Exact for layer-wise gradient flow started from balanced factors. State: W raveled row-major.
    """

    name = "gf"
    model = "end-product"

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0
    ):
        self.problem = problem
        self.depth = int(depth)
        self.penalty = penalty if penalty is not None else Penalty()
        self.lam = float(lam)
        self.shape = problem.shape

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        return np.array(end_product(factors), dtype=float).ravel()

    def end_product(self, y: np.ndarray) -> np.ndarray:
        return y.reshape(self.shape)

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        W = y.reshape(self.shape)
        return end_product_velocity(W, self.problem, self.depth, self.penalty, self.lam).ravel()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "depth": self.depth, "penalty": self.penalty.spec(), "lam": self.lam}


class LayerwiseFlow(Flow):
    """Ẇ_j = −W_{N:j+1}ᵀ (∇ℓ + λ∇R)(W) W_{j−1:1}ᵀ on the factors (ACH18; docs/math.md §6).
    Valid for any initialization.

    ``engine`` chooses how :meth:`solve` integrates: ``"scipy"`` (scipy's solvers on the Python field),
    ``"numba"`` (the compiled field and DOP853 loop of :mod:`flowsim.compiled`, method DOP853 only) or
    ``"auto"`` (numba when it is installed, the method is DOP853, nothing the compiled loop lacks is asked
    for — events, a Jacobian —, ``__call__`` is this class's own field and the state has at most
    ``AUTO_MAX_STATE`` entries; scipy otherwise). The
    engine used is recorded in the result's statistics (``run.json`` ``stats.engine``).
    """

    name = "gf"
    model = "layers"

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0,
        engine: str = "auto",
    ):
        if engine not in ENGINES:
            raise BadInputError(f"engine must be one of {'|'.join(ENGINES)}, got {engine!r}")
        self.problem = problem
        self.depth = int(depth)
        self.penalty = penalty if penalty is not None else Penalty()
        self.lam = float(lam)
        self.engine = engine
        self.packer: FactorPacker | None = None
        self._views: list[tuple[slice, tuple[int, int]]] = []

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        if len(factors) != self.depth:
            raise ValueError(f"expected {self.depth} factors, got {len(factors)}")
        self.packer = FactorPacker(layer_dims(factors))
        offs = self.packer.offsets
        self._views = [(slice(int(offs[j]), int(offs[j + 1])), shape)
                       for j, shape in enumerate(self.packer.shapes)]
        return self.packer.pack(factors)

    def layer_factors(self, y: np.ndarray) -> list[np.ndarray]:
        assert self.packer is not None, "call initial_state first"
        return self.packer.unpack(y)

    def end_product(self, y: np.ndarray) -> np.ndarray:
        return end_product(self.layer_factors(y))

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        out = np.empty(y.size)  # fresh: the solver keeps the velocities it is given
        views = self._views
        layerwise_velocity_into([y[sl].reshape(shape) for sl, shape in views], self.problem,
                                [out[sl].reshape(shape) for sl, shape in views], self.penalty, self.lam)
        return out

    def engine_for(self, size: int, method: str = "DOP853", **integrate_kwargs: Any) -> str:
        """The engine :meth:`solve` uses for a state of ``size`` entries (see the class docstring)."""
        wanted = self.engine == "numba" or (
            self.engine == "auto" and AUTO_PICKS_NUMBA and size <= AUTO_MAX_STATE)
        if not wanted:  # decided without importing numba (large states, engine "scipy")
            return "scipy"
        compilable = (method == "DOP853" and numba_available() and self._compiled_penalty()
                      and all(k in COMPILED_KWARGS for k, v in integrate_kwargs.items() if v is not None))
        # the compiled field reproduces LayerwiseFlow.__call__: a subclass or a replaced field runs on scipy
        compilable = compilable and type(self).__call__ is _LAYERWISE_FIELD
        if self.engine == "numba" and not compilable:
            raise BadInputError("engine 'numba' needs numba installed, method DOP853, a none/ratio/"
                                "nuclear/schatten penalty and no events or Jacobian")
        return "numba" if compilable else "scipy"

    def _compiled_penalty(self) -> bool:
        from ..compiled.field import penalty_vector

        try:
            penalty_vector(self.penalty, self.lam)
        except TypeError:
            return False
        return True

    def solve(self, y0: np.ndarray, t_eval: np.ndarray, *, method: str = "DOP853",
              **integrate_kwargs: Any) -> IntegrationResult:
        """Integrate from ``y0`` at ``t_eval[0]``; the states at ``t_eval`` (the contract of
        :func:`flowsim.integrator.integrate`) from the engine of :meth:`engine_for`."""
        assert self.packer is not None, "call initial_state first"
        if self.engine_for(int(np.size(y0)), method, **integrate_kwargs) == "numba":
            from ..compiled.solve import FieldArrays, solve_compiled

            field = FieldArrays.build(self.problem, self.packer.dims, self.penalty, self.lam)
            kwargs = {k: v for k, v in integrate_kwargs.items() if v is not None}
            return solve_compiled(field, y0, t_eval, **kwargs)
        res = super().solve(y0, t_eval, method=method, **integrate_kwargs)
        res.extra.setdefault("engine", "scipy")
        return res

    def describe(self) -> dict[str, Any]:
        d = {**super().describe(), "depth": self.depth, "penalty": self.penalty.spec(), "lam": self.lam,
             "engine": self.engine}
        if self.packer is not None:
            d["dims"] = self.packer.dims
        return d


_LAYERWISE_FIELD = LayerwiseFlow.__call__
