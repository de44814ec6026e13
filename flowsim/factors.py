"""Layer factors of a deep linear network (SPEC §0): end products, balanced factorizations, balancedness.

Factors are a list ``[W_1, …, W_N]`` with W_j ∈ ℝ^{d_j×d_{j−1}}, d_0 = n, d_N = m, and the end product
W = W_N⋯W_1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def end_product(factors: Sequence[np.ndarray]) -> np.ndarray:
    """W = W_N ⋯ W_1 (SPEC §0)."""
    W = factors[0]
    for F in factors[1:]:
        W = F @ W
    return W


def prefix_products(factors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """[W_{0:1}, W_{1:1}, …, W_{N:1}] with W_{0:1} = I_n (the products of the first j factors).

    N − 1 matrix products: W_{1:1} is W_1 itself (the same array, not a copy).
    """
    n = factors[0].shape[1]
    out = [np.eye(n), factors[0]]
    for F in factors[1:]:
        out.append(F @ out[-1])
    return out


def suffix_products(factors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """[W_{N:1}, W_{N:2}, …, W_{N:N+1}] with W_{N:N+1} = I_m (products of the last N−j factors).

    N − 1 matrix products: W_{N:N} is W_N itself (the same array, not a copy).
    """
    m = factors[-1].shape[0]
    out = [np.eye(m), factors[-1]]
    for F in reversed(factors[:-1]):
        out.append(out[-1] @ F)
    return out[::-1]


def canonical_balanced_factors(W: np.ndarray, depth: int) -> list[np.ndarray]:
    """Canonical balanced factorization of W = UΣVᵀ (SPEC §0), with hidden width r = min(m, n):

        W_1 = Σ^{1/N} Vᵀ,  W_j = Σ^{1/N} (1 < j < N),  W_N = U Σ^{1/N};  N = 1 gives W_1 = W.

    The factors satisfy W_{j+1}ᵀW_{j+1} = W_jW_jᵀ = Σ^{2/N} and multiply back to W.
    """
    if depth == 1:
        return [np.array(W, dtype=float)]
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    root = s ** (1.0 / depth)
    first = root[:, None] * Vt
    last = U * root
    middle = [np.diag(root) for _ in range(depth - 2)]
    return [first, *middle, last]


def balancedness_residuals(factors: Sequence[np.ndarray]) -> np.ndarray:
    """D_j = W_{j+1}ᵀW_{j+1} − W_jW_jᵀ for j = 1..N−1, stacked (zero for balanced factors; SPEC §0)."""
    return np.array([factors[j + 1].T @ factors[j + 1] - factors[j] @ factors[j].T
                     for j in range(len(factors) - 1)])


def layer_dims(factors: Sequence[np.ndarray]) -> list[int]:
    """[d_0, d_1, …, d_N]."""
    return [factors[0].shape[1], *[F.shape[0] for F in factors]]
