"""Independent references for the tests: explicit Kronecker products (n ≤ 8; docs/math.md §1) and torch
autograd layer gradients."""

from __future__ import annotations

import numpy as np

from flowsim.theory.printed import psd_power  # S^a of a PSD matrix (0⁰ = 1); re-exported for the tests

__all__ = ["autograd_layer_gradients", "kron_preconditioner", "psd_power", "unvec", "vec"]


def vec(X: np.ndarray) -> np.ndarray:
    """Column-major vec (docs/math.md §1): vec(AXB) = (Bᵀ ⊗ A) vec(X)."""
    return X.reshape(-1, order="F")


def unvec(v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`vec`."""
    return v.reshape(shape, order="F")


def kron_preconditioner(W: np.ndarray, depth: int) -> np.ndarray:
    """P_W = Σ_j (WᵀW)^{(N−j)/N} ⊗ (WWᵀ)^{(j−1)/N} (docs/math.md §4, column-major vec), built explicitly."""
    m, n = W.shape
    P = np.zeros((m * n, m * n))
    for j in range(1, depth + 1):
        P += np.kron(psd_power(W.T @ W, (depth - j) / depth), psd_power(W @ W.T, (j - 1) / depth))
    return P


def autograd_layer_gradients(factors: list[np.ndarray], problem, lam: float = 0.0) -> list[np.ndarray]:
    """∇_{W_j}(ℓ + λR) by torch autograd in float64, with R = ‖W‖_*/‖W‖_F from the singular values
    (docs/math.md §2, §3, §6), independent of flowsim's closed forms."""
    import torch

    theta = [torch.tensor(np.asarray(F, dtype=float), requires_grad=True) for F in factors]
    W = theta[0]
    for F in theta[1:]:
        W = F @ W
    mask = torch.as_tensor(problem.mask, dtype=torch.float64)
    L = problem.scale * ((mask * (W - torch.as_tensor(problem.W_star))) ** 2).sum() / problem.denominator
    if lam:
        s = torch.linalg.svdvals(W)
        L = L + lam * s.sum() / torch.sqrt((s * s).sum())
    L.backward()
    return [t.grad.numpy() for t in theta]
