"""Every published formula the checker tests, *as printed*, as a function of W (and of the layer factors
where the formula needs layer gradients); docs/math.md §4, §5, §8.1. One name per formula:

* ACH18 Eq. 4 / Zhao22 Eq. 4 in its printed vec form, P_W = Σ_j (WᵀW)^{(N−j)/N} ⊗ (WWᵀ)^{(j−1)/N}
  (column-major vec): :func:`eq4_preconditioner`, :func:`eq4_velocity`, applied through
  (A ⊗ B) vec(X) = vec(B X Aᵀ) with matrix powers from an eigendecomposition of WᵀW and WWᵀ — a second
  formulation, independent of the SVD-kernel route that flowsim integrates.
* the literal implementations in :mod:`flowsim.flows.printed` (which the Adam flow ``adam-printed``
  integrates), re-exported here: Zhao22 Eq. 3 (:func:`eq3_singular_value_velocity`), Theorem 1 — Eq. 5
  (:func:`theorem1_singular_value_velocity`) and Eq. 6 (:func:`theorem1_velocity`) —, Theorem 2 — Eq. 7
  (:func:`eq7_singular_value_velocity`) and Eq. 8 (:func:`eq8_velocity`, its λ-term
  :func:`printed_penalty_term`) — and Theorem 3, Eq. 9 (:func:`theorem3_velocity`).
"""

from __future__ import annotations

import numpy as np

from flowsim.flows.printed import (
    eq3_singular_value_velocity,
    eq7_singular_value_velocity,
    eq8_velocity,
    kron_matvec,
    printed_penalty_term,
    theorem1_singular_value_velocity,
    theorem1_velocity,
    theorem3_velocity,
)


def psd_power(S: np.ndarray, a: float) -> np.ndarray:
    """S^a for a symmetric PSD matrix by eigendecomposition, 0⁰ = 1 (docs/math.md §1); eigenvalues below
    100·dim·ε·λ_max are treated as exact zeros."""
    lam, Q = np.linalg.eigh((S + S.T) / 2)
    lam = np.where(lam > 100 * S.shape[0] * np.finfo(float).eps * max(float(lam.max()), 0.0), lam, 0.0)
    p = np.ones_like(lam) if a == 0 else lam**a
    return (Q * p) @ Q.T


def eq4_preconditioner(W: np.ndarray, X: np.ndarray, depth: int) -> np.ndarray:
    """ACH18 Eq. 4 / Zhao22 Eq. 4 as printed:
    vec(P_W X) = Σ_{j=1}^{N} ((WᵀW)^{(N−j)/N} ⊗ (WWᵀ)^{(j−1)/N}) vec(X) (column-major vec),
    evaluated as Σ_j (WWᵀ)^{(j−1)/N} X (WᵀW)^{(N−j)/N} via :func:`kron_matvec`."""
    W = np.asarray(W, dtype=float)
    left = W @ W.T
    right = W.T @ W
    out = np.zeros_like(W)
    for j in range(1, depth + 1):
        A = psd_power(right, (depth - j) / depth)
        B = psd_power(left, (j - 1) / depth)
        out += kron_matvec(A, B, X, "col-major")
    return out


def eq4_velocity(W: np.ndarray, G: np.ndarray, depth: int) -> np.ndarray:
    """ACH18 Eq. 4: vec(Ẇ) = −P_W vec(G), G = ∇ℓ(W) (+ λ∇R(W) for the penalized flow)."""
    return -eq4_preconditioner(W, G, depth)


__all__ = [
    "eq3_singular_value_velocity", "eq4_preconditioner", "eq4_velocity", "eq7_singular_value_velocity",
    "eq8_velocity", "printed_penalty_term", "psd_power", "theorem1_singular_value_velocity",
    "theorem1_velocity", "theorem3_velocity",
]
