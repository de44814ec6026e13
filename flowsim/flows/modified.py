"""The modified flow of gradient descent (docs/math.md §7; BD21 "implicit gradient regularization").

GD with step η on the layer factors θ = (W_1, …, W_N) follows, to O(η²) on a finite horizon, the gradient
flow of the modified objective (BD21 Thm. 3.1 / Eq. 4)

    ℓ̃(θ) = L(θ) + (η/4)‖∇_θ L(θ)‖²,   L(θ) = ℓ(W_N⋯W_1) + λR(W_N⋯W_1),
    θ̇ = −∇ℓ̃(θ) = −(∇L + (η/2) H_L ∇L),

where H_L is the Hessian of L in θ. The Hessian–vector product H_L v is computed

* in closed form when there is no penalty (``hvp="closed"``, the default then): with the suffix products
  S_j = W_{N:j+1}, prefix products P_j = W_{j:1}, G = ∇ℓ(W) and the direction V = (V_1..V_N),
    dP_j = V_j P_{j−1} + W_j dP_{j−1},  dS_j = dS_{j+1} W_{j+1} + S_{j+1} V_{j+1},  dW = dP_N,
    dG = ∇²ℓ[dW] = (2c/D) P_Ω(dW),
    (H_L V)_j = dS_jᵀ G P_{j−1}ᵀ + S_jᵀ dG P_{j−1}ᵀ + S_jᵀ G dP_{j−1}ᵀ;
* by torch autograd (double backward, float64) otherwise (``hvp="autograd"``, required with a penalty):
  R is written on ``torch.linalg.svdvals`` (ratio ‖W‖_*/‖W‖_F, nuclear Σσ, Schatten ratio with σ floored
  at ``SCHATTEN_FLOOR``·σ_1 as in :mod:`flowsim.penalties`). Second derivatives through the SVD need
  distinct singular values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import BadInputError, check_positive
from ..factors import end_product, prefix_products, suffix_products
from ..penalties import SCHATTEN_FLOOR, NuclearPenalty, Penalty, RatioPenalty, SchattenRatioPenalty
from ..problems import CompletionProblem
from .gradient import layer_gradients
from .layer_state import LayerStateFlow

HVP_MODES = ("closed", "autograd")


def loss_hessian_vector_product(
    factors: Sequence[np.ndarray], problem: CompletionProblem, V: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """H_L V for L(θ) = ℓ(W_N⋯W_1) in closed form (see the module docstring; docs/math.md §7, BD21).

    ``V`` is a direction with the shapes of ``factors``; returns the N blocks of H_L V. Cost O(N) products.
    """
    N = len(factors)
    P, S = prefix_products(factors), suffix_products(factors)  # P_j = W_{j:1}, S_j = W_{N:j+1}
    # S[j] with 0-based layer index i = j-1: suffix of layer i is S[i+1] = W_{N:i+2}; here S[k] = W_{N:k+1}.
    dP = [np.zeros_like(P[0])]
    for i in range(N):
        dP.append(V[i] @ P[i] + factors[i] @ dP[i])
    dS: list[Any] = [None] * (N + 1)
    dS[N] = np.zeros_like(S[N])
    for k in range(N - 1, -1, -1):
        # S[k] = W_{N:k+1} = S[k+1] @ W_{k+1}  (W_{k+1} = factors[k])
        dS[k] = dS[k + 1] @ factors[k] + S[k + 1] @ V[k]
    G = problem.grad(P[N])
    dG = problem.grad(problem.W_star + dP[N])  # ∇²ℓ[dW] = (2c/D) P_Ω(dW) (∇ℓ is affine)
    out = []
    for i in range(N):
        # layer i (W_{i+1}): A = S[i+1] = W_{N:i+2}, B = P[i] = W_{i:1}
        A, B, dA, dB = S[i + 1], P[i], dS[i + 1], dP[i]
        out.append(dA.T @ G @ B.T + A.T @ dG @ B.T + A.T @ G @ dB.T)
    return out


def _torch_penalty(penalty: Penalty, W):  # -> torch scalar
    import torch

    if penalty.is_zero:
        return W.new_zeros(())
    s = torch.linalg.svdvals(W)
    if isinstance(penalty, RatioPenalty):
        return s.sum() / torch.sqrt((s * s).sum())
    if isinstance(penalty, NuclearPenalty):
        return s.sum()
    if isinstance(penalty, SchattenRatioPenalty):
        sf = torch.maximum(s, SCHATTEN_FLOOR * s[0].detach())
        return (sf**penalty.p).sum() ** (1 / penalty.p) / (sf**penalty.q).sum() ** (1 / penalty.q)
    raise BadInputError(f"gd-modified: no torch form for penalty {penalty.spec()!r}")


def autograd_modified_gradient(
    factors: Sequence[np.ndarray], problem: CompletionProblem, penalty: Penalty, lam: float, lr: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(∇L, ∇ℓ̃) by torch autograd in float64, ℓ̃ = L + (η/4)‖∇_θL‖² (docs/math.md §7; BD21)."""
    import torch

    theta = [
        torch.tensor(np.asarray(F, dtype=float), dtype=torch.float64, requires_grad=True) for F in factors
    ]
    W = end_product(theta)
    W_star = torch.as_tensor(problem.W_star, dtype=torch.float64)
    mask = torch.as_tensor(problem.mask, dtype=torch.float64)
    R = mask * (W - W_star)
    L = (problem.scale / problem.denominator) * (R * R).sum()
    if lam != 0.0 and not penalty.is_zero:
        L = L + lam * _torch_penalty(penalty, W)
    g = torch.autograd.grad(L, theta, create_graph=True)
    Lt = L + (lr / 4.0) * sum((gi * gi).sum() for gi in g)
    gt = torch.autograd.grad(Lt, theta)
    return [x.detach().numpy() for x in g], [x.detach().numpy() for x in gt]


class ModifiedGDFlow(LayerStateFlow):
    """θ̇ = −∇ℓ̃(θ) = −(∇L + (η/2) H_L∇L), ℓ̃ = L + (η/4)‖∇_θL‖² on the layer factors
    (docs/math.md §7; BD21 Eq. 4).

    ``lr`` is the GD step size η the flow models; ``hvp`` selects the closed-form (no penalty) or the
    autograd Hessian–vector product (see the module docstring).
    """

    name = "gd-modified"

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0,
        lr: float = 0.01, hvp: str | None = None,
    ):
        super().__init__(problem, depth, penalty, lam)
        check_positive("--lr", lr)
        penalized = self.lam != 0.0 and not self.penalty.is_zero
        if hvp is None:
            hvp = "autograd" if penalized else "closed"
        if hvp not in HVP_MODES:
            raise BadInputError(f"hvp must be one of {'|'.join(HVP_MODES)}, got {hvp!r}")
        if hvp == "closed" and penalized:
            raise BadInputError(
                "the closed-form Hessian–vector product covers the loss only; use hvp='autograd' "
                "with a penalty"
            )
        self.lr = float(lr)
        self.hvp = hvp

    def modified_gradient(self, factors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """∇ℓ̃ = ∇L + (η/2) H_L ∇L, blocks per layer (docs/math.md §7)."""
        if self.hvp == "autograd":
            return autograd_modified_gradient(factors, self.problem, self.penalty, self.lam, self.lr)[1]
        grads = layer_gradients(factors, self.problem.grad(end_product(factors)))
        Hg = loss_hessian_vector_product(factors, self.problem, grads)
        return [g + (0.5 * self.lr) * h for g, h in zip(grads, Hg)]

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        return -np.concatenate([g.ravel() for g in self.modified_gradient(self.layer_factors(y))])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "lr": self.lr, "hvp": self.hvp}
