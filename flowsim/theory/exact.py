"""The exact counterparts of the printed formulas (docs/math.md §3–§6, §8.2).

* the exact ratio-penalty gradient ∇R = UVᵀ/‖W‖_F − ‖W‖_* W/‖W‖_F³ (docs/math.md §3);
* the exact penalized singular-value velocity σ̇_i = −Nσ_i^{2−2/N}(u_iᵀ∇ℓv_i + λ(1/‖W‖_F − ‖W‖_*σ_i/‖W‖_F³))
  (docs/math.md §5, the corrected Zhao22 Eq. 7);
* the exact penalized end-product velocity Ẇ = −P_W(∇ℓ + λ∇R) (docs/math.md §4 with G = ∇ℓ + λ∇R);
* the end-product velocity of any layer-wise flow, Ẇ = Σ_j W_{N:j+1} Ẇ_j W_{j−1:1}, in particular of
  layer-wise gradient flow (docs/math.md §6) and of the variance-adapted layer flow (docs/math.md §8.2);
* σ̇ along any velocity (u_iᵀẆv_i) and its central finite-difference check.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flowsim.factors import prefix_products, suffix_products
from flowsim.flows import apply_end_product_preconditioner, layer_gradients
from flowsim.flows.gradient import singular_value_projection
from flowsim.flows.variance import VARIANCE_EPS, variance_adapted_end_product_velocity
from flowsim.penalties import ratio_spectral_grad


def ratio_gradient(W: np.ndarray) -> np.ndarray:
    """∇R for R = ‖W‖_*/‖W‖_F: UVᵀ/‖W‖_F − ‖W‖_* W/‖W‖_F³ (docs/math.md §3; Zhao22
    Sec. 3, exact). Zero at W = 0.

    The matrix form, evaluated on W itself: an independent reference for the spectral form U diag(g(σ)) Vᵀ
    of :class:`flowsim.penalties.RatioPenalty` (g: :func:`flowsim.penalties.ratio_spectral_grad`) that the
    checker compares flowsim's flows against."""
    W = np.asarray(W, dtype=float)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    fro = float(np.sqrt(np.sum(s**2)))
    if fro == 0.0:
        return np.zeros_like(W)
    support = (s > max(W.shape) * np.finfo(float).eps * s[0]).astype(float)
    return ((U * support) @ Vt) / fro - float(np.sum(s)) * W / fro**3


def ratio_gradient_projection(s: np.ndarray) -> np.ndarray:
    """u_iᵀ∇R v_i = 1/‖W‖_F − ‖W‖_* σ_i/‖W‖_F³ (docs/math.md §3, §5)."""
    return ratio_spectral_grad(np.asarray(s, dtype=float))


def penalized_singular_value_velocity(
    W: np.ndarray, loss_grad: np.ndarray, depth: int, lam: float
) -> np.ndarray:
    """docs/math.md §5 exact (corrected Zhao22 Eq. 7):
    σ̇_i = −N σ_i^{2−2/N} (u_iᵀ∇ℓ v_i + λ(1/‖W‖_F − ‖W‖_*σ_i/‖W‖_F³))."""
    U, s, Vt = np.linalg.svd(np.asarray(W, dtype=float), full_matrices=False)
    proj = singular_value_projection(loss_grad, U, Vt)
    if lam != 0.0:
        proj = proj + lam * ratio_gradient_projection(s)
    return -depth * (s**2) ** ((depth - 1) / depth) * proj


def penalized_end_product_velocity(
    W: np.ndarray, loss_grad: np.ndarray, depth: int, lam: float
) -> np.ndarray:
    """docs/math.md §4 with the exact penalty: Ẇ = −P_W(∇ℓ + λ∇R), ∇R exact (:func:`ratio_gradient`)."""
    G = np.asarray(loss_grad, dtype=float)
    if lam != 0.0:
        G = G + lam * ratio_gradient(W)
    return -apply_end_product_preconditioner(np.asarray(W, dtype=float), G, depth)


def end_product_velocity_of_layers(
    factors: Sequence[np.ndarray], layer_velocities: Sequence[np.ndarray]
) -> np.ndarray:
    """Ẇ = Σ_{j=1}^{N} W_{N:j+1} Ẇ_j W_{j−1:1}: the chain rule for W = W_N⋯W_1 (docs/math.md §1)."""
    pre = prefix_products(factors)
    suf = suffix_products(factors)
    return sum(suf[j + 1] @ layer_velocities[j] @ pre[j] for j in range(len(factors)))


def gradient_flow_end_product_velocity(factors: Sequence[np.ndarray], G: np.ndarray) -> np.ndarray:
    """End-product velocity of layer-wise gradient flow Ẇ_j = −W_{N:j+1}ᵀ G W_{j−1:1}ᵀ (docs/math.md §6). For
    balanced factors it equals −P_W(G) (ACH18 Thm. 1)."""
    return end_product_velocity_of_layers(factors, [-g for g in layer_gradients(factors, G)])


def variance_adapted_velocity(
    factors: Sequence[np.ndarray], G: np.ndarray, eps: float = VARIANCE_EPS
) -> np.ndarray:
    """docs/math.md §8.2: vec(Ẇ) = −Σ_j A_j G_j A_jᵀ vec(G), A_j = (W_{j−1:1})ᵀ ⊗ W_{N:j+1}, computed
    layer-wise (:func:`flowsim.flows.variance.variance_adapted_end_product_velocity`)."""
    return variance_adapted_end_product_velocity(factors, G, eps)


def projected_singular_value_velocity(W: np.ndarray, Wdot: np.ndarray) -> np.ndarray:
    """σ̇_i = u_iᵀ Ẇ v_i (first-order perturbation of a simple singular value)."""
    U, _, Vt = np.linalg.svd(np.asarray(W, dtype=float), full_matrices=False)
    return singular_value_projection(Wdot, U, Vt)


def singular_value_derivative_fd(W: np.ndarray, Wdot: np.ndarray, rel_step: float = 1e-3) -> np.ndarray:
    """dσ/dt along Ẇ by Richardson-extrapolated central differences (an independent route: singular values
    only, no singular vectors): D(h) = (σ(W + hẆ) − σ(W − hẆ))/(2h), result (4D(h/2) − D(h))/3, with
    h = rel_step·min(‖W‖, smallest gap between singular values (and 0 for m ≠ n))/‖Ẇ‖, so the step stays
    well inside the region where the σ_i are smooth. Truncation error O(h⁴) for simple σ_i."""
    W = np.asarray(W, dtype=float)
    Wdot = np.asarray(Wdot, dtype=float)
    nd = float(np.linalg.norm(Wdot))
    if nd == 0.0:
        return np.zeros(min(W.shape))
    s = np.linalg.svd(W, compute_uv=False)
    gaps = np.abs(np.diff(np.concatenate([s, [0.0]]))) if W.shape[0] != W.shape[1] else np.abs(np.diff(s))
    scale = min(float(np.linalg.norm(W)), float(gaps.min()) if gaps.size else np.inf)
    h = rel_step * scale / nd

    def central(step: float) -> np.ndarray:
        sp = np.linalg.svd(W + step * Wdot, compute_uv=False)
        sm = np.linalg.svd(W - step * Wdot, compute_uv=False)
        return (sp - sm) / (2 * step)

    return (4 * central(h / 2) - central(h)) / 3


__all__ = [
    "end_product_velocity_of_layers", "gradient_flow_end_product_velocity", "penalized_end_product_velocity",
    "penalized_singular_value_velocity", "projected_singular_value_velocity", "ratio_gradient",
    "ratio_gradient_projection", "singular_value_derivative_fd", "variance_adapted_velocity",
]
