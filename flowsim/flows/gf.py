"""Gradient-flow models: the end-product flow (docs/math.md §4) and the layer-wise flow (docs/math.md §6)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import BadInputError
from ..penalties import Penalty
from ..problems import CompletionProblem
from .base import EndProductStateFlow
from .gradient import end_product_velocity, layerwise_velocity_into
from .layer_state import LayerStateFlow

#: the engines a :class:`LayerwiseFlow` can ask the integrator for (:func:`flowsim.integrator.engine_for`)
ENGINES = ("auto", "scipy", "numba")


class EndProductFlow(EndProductStateFlow):
    """Ẇ = −P_W(∇ℓ(W) + λ∇R(W)) on the end product (docs/math.md §4; ACH18 Thm. 1, Zhao22 Eq. 4).

    Exact for layer-wise gradient flow started from balanced factors. State: W raveled row-major.
    """

    name = "gf"

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        W = y.reshape(self.shape)
        return end_product_velocity(W, self.problem, self.depth, self.penalty, self.lam).ravel()


class LayerwiseFlow(LayerStateFlow):
    """Ẇ_j = −W_{N:j+1}ᵀ (∇ℓ + λ∇R)(W) W_{j−1:1}ᵀ on the factors (ACH18; docs/math.md §6).
    Valid for any initialization.

    ``engine`` chooses how the integrator (:func:`flowsim.integrator.solve_flow`) runs it: ``"scipy"``
    (scipy's solvers on the Python field), ``"numba"`` (the compiled field and DOP853 loop of
    :mod:`flowsim.integrator.compiled`, method DOP853 only) or ``"auto"`` (numba when it is installed and
    the run allows it; see :func:`flowsim.integrator.engine_for`). The engine used is recorded in the
    result's statistics (``run.json`` ``stats.engine``).
    """

    name = "gf"
    settings = ("engine",)

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0,
        engine: str = "auto",
    ):
        if engine not in ENGINES:
            raise BadInputError(f"engine must be one of {'|'.join(ENGINES)}, got {engine!r}")
        super().__init__(problem, depth, penalty, lam)
        self.engine = engine
        self._views: list[tuple[slice, tuple[int, int]]] = []

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        packer = self.set_packer(factors)
        offs = packer.offsets
        self._views = [(slice(int(offs[j]), int(offs[j + 1])), shape)
                       for j, shape in enumerate(packer.shapes)]
        return packer.pack(factors)

    @property
    def spreads_nonfinite(self) -> bool:
        """True without a penalty: the field is then matrix products only, so a non-finite state gives a
        non-finite velocity and nothing raises (the integrator skips its check of the state). False for a
        subclass with a field of its own."""
        unpenalized = self.penalty is None or self.penalty.is_zero or self.lam == 0.0
        return unpenalized and type(self).__call__ is LayerwiseFlow.__call__

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        out = np.empty(y.size)  # fresh: the solver keeps the velocities it is given
        views = self._views
        layerwise_velocity_into([y[sl].reshape(shape) for sl, shape in views], self.problem,
                                [out[sl].reshape(shape) for sl, shape in views], self.penalty, self.lam)
        return out

