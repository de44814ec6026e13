"""Independent references built from explicit Kronecker products (tests only, n ≤ 8; SPEC §0)."""

from __future__ import annotations

import numpy as np


def vec(X: np.ndarray) -> np.ndarray:
    """Column-major vec (SPEC §0): vec(AXB) = (Bᵀ ⊗ A) vec(X)."""
    return X.reshape(-1, order="F")


def unvec(v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`vec`."""
    return v.reshape(shape, order="F")


def psd_power(S: np.ndarray, a: float) -> np.ndarray:
    """S^a for symmetric PSD S by eigendecomposition, with 0⁰ = 1 (so S⁰ = I even when S is singular).

    Eigenvalues below the round-off level 100·dim·ε·λ_max are exact zeros (as in the SVD route).
    """
    lam, Q = np.linalg.eigh((S + S.T) / 2)
    lam = np.where(lam > 100 * S.shape[0] * np.finfo(float).eps * max(lam.max(), 0.0), lam, 0.0)
    p = np.ones_like(lam) if a == 0 else lam**a
    return (Q * p) @ Q.T


def kron_preconditioner(W: np.ndarray, depth: int) -> np.ndarray:
    """P_W = Σ_j (WᵀW)^{(N−j)/N} ⊗ (WWᵀ)^{(j−1)/N} (SPEC §3.1, column-major vec), built explicitly."""
    m, n = W.shape
    P = np.zeros((m * n, m * n))
    for j in range(1, depth + 1):
        P += np.kron(psd_power(W.T @ W, (depth - j) / depth), psd_power(W @ W.T, (j - 1) / depth))
    return P
