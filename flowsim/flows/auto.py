"""Gradient flow by the cheaper exact formulation: end-product state (docs/math.md §4) or layer
state (docs/math.md §6), picked from the initial factors, the depth and the penalty.

Both formulations integrate the same dynamics when the initial factors are balanced (ACH18 Thm. 1: the end
product of layer-wise gradient flow from balanced factors follows Ẇ = −P_W(∇ℓ + λ∇R)). Their costs per
velocity evaluation differ:

* end-product (docs/math.md §4): one SVD of W plus four m×n matrix products (no SVD for N = 1 without a
  penalty);
* layers (docs/math.md §6): 3(N − 1) matrix products, no SVD — unless a penalty is active, whose gradient
  ∇R needs the SVD of W anyway, on top of the layer products.

The rule (:func:`choose_formulation`):

1. N = 1: ``end-product`` (the two states coincide, W_1 = W; the velocity is −G either way) — or
   ``filippov`` when λ > 0 and the penalty is non-smooth at σ_i = 0 (nuclear, ratio, Schatten p ≤ 1 < q/p):
   the minimal-norm-subgradient flow of :mod:`flowsim.flows.filippov`, with rank-changing events.
2. unbalanced factors (relative balancedness residual above ``balance_tol``): ``layers``, the only exact
   model of layer-wise gradient flow (the end-product flow would be an approximation).
3. an active penalty (λ > 0): ``end-product`` (one SVD serves the penalty and the preconditioner).
4. otherwise: ``layers`` (no SVD per evaluation; on the paper setting it also takes slightly fewer steps,
   see bench/README.md).

The choice and its reason are recorded in ``describe()`` and, through :func:`flowsim.simulate.simulate`,
in ``run.json`` (``stats.formulation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..factors import balancedness_residuals
from ..penalties import Penalty
from ..problems import CompletionProblem
from .base import PenalizedFlow
from .filippov import FilippovSpectralFlow
from .gf import EndProductFlow, LayerwiseFlow

#: relative balancedness residual max_j ‖W_{j+1}ᵀW_{j+1} − W_jW_jᵀ‖_F / max_j ‖W_j‖_F² below which factors
#: count as balanced: far below the default rtol (1e-7), far above the round-off of a balanced factorization.
BALANCE_TOL = 1e-10


def relative_imbalance(factors: Sequence[np.ndarray]) -> float:
    """max_j ‖W_{j+1}ᵀW_{j+1} − W_jW_jᵀ‖_F / max_j ‖W_j‖_F² (docs/math.md §1 balancedness; 0 for N = 1
    and for all-zero factors)."""
    if len(factors) < 2:
        return 0.0
    scale = max(float(np.sum(np.square(F))) for F in factors)
    if scale == 0.0:
        return 0.0
    res = balancedness_residuals(factors)
    return float(max(np.linalg.norm(D) for D in res)) / scale


def choose_formulation(
    factors: Sequence[np.ndarray], penalty: Penalty | None = None, lam: float = 0.0,
    balance_tol: float = BALANCE_TOL,
) -> tuple[str, str]:
    """(``"end-product"``, ``"layers"`` or ``"filippov"``, reason): the cheaper exact formulation of
    layer-wise gradient flow from ``factors`` (module docstring)."""
    depth = len(factors)
    if depth == 1:
        if penalty is not None and lam > 0 and penalty.sticks_at_zero:
            return "filippov", (f"depth 1 with the {penalty.spec()} penalty, non-smooth at σ_i = 0: "
                                "minimal-norm-subgradient (Filippov) flow with rank-changing events")
        return "end-product", "depth 1: the layer and the end product coincide"
    imbalance = relative_imbalance(factors)
    if imbalance > balance_tol:
        return "layers", (f"factors are not balanced (relative residual {imbalance:.2e} > {balance_tol:g}): "
                          "only the layer state is exact")
    if penalty is not None and lam != 0.0 and not penalty.is_zero:
        return "end-product", "a penalty needs the SVD of W at every evaluation: reuse it for P_W"
    return "layers", (f"balanced factors (relative residual {imbalance:.2e}), no penalty: "
                      f"{3 * (depth - 1)} matrix products per evaluation, no SVD")


class AutoGradientFlow(PenalizedFlow):
    """Gradient flow (docs/math.md §4 ≡ §6 on balanced factors) on the state picked by
    :func:`choose_formulation` when :meth:`initial_state` sees the factors. ``formulation`` and
    ``formulation_reason`` say which."""

    name = "gf"
    model = "auto"

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0,
        balance_tol: float = BALANCE_TOL,
    ):
        super().__init__(problem, depth, penalty, lam)
        self.balance_tol = float(balance_tol)
        self.formulation: str | None = None
        self.formulation_reason = ""
        self._inner: EndProductFlow | LayerwiseFlow | FilippovSpectralFlow | None = None

    @property
    def chosen(self) -> EndProductFlow | LayerwiseFlow | FilippovSpectralFlow:
        """The flow of the chosen formulation (the integrator runs its driver); set by
        :meth:`initial_state`."""
        assert self._inner is not None, "call initial_state first"
        return self._inner

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        if len(factors) != self.depth:
            raise ValueError(f"expected {self.depth} factors, got {len(factors)}")
        self.formulation, self.formulation_reason = choose_formulation(
            factors, self.penalty, self.lam, self.balance_tol)
        if self.formulation == "filippov":
            self._inner = FilippovSpectralFlow(self.problem, self.penalty, self.lam)
        else:
            cls = LayerwiseFlow if self.formulation == "layers" else EndProductFlow
            self._inner = cls(self.problem, self.depth, self.penalty, self.lam)
        return self._inner.initial_state(factors)

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        return self.chosen(t, y)

    def end_product(self, y: np.ndarray) -> np.ndarray:
        return self.chosen.end_product(y)

    def layer_factors(self, y: np.ndarray) -> list[np.ndarray] | None:
        return self.chosen.layer_factors(y)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {**super().describe(), "balance_tol": self.balance_tol}
        if self._inner is not None:
            d = {**self._inner.describe(), **d, "formulation": self.formulation,
                 "formulation_reason": self.formulation_reason}
        return d
