"""Layer factors of a deep linear network (docs/math.md §1): end products, balanced
factorizations, balancedness.

Factors are a list ``[W_1, …, W_N]`` with W_j ∈ ℝ^{d_j×d_{j−1}}, d_0 = n, d_N = m, and the end product
W = W_N⋯W_1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import numpy as np


class _Matrix(Protocol):
    """What the chain products use of an array: ``@`` and ``shape`` (numpy arrays, torch tensors)."""

    @property
    def shape(self) -> Any: ...

    def __matmul__(self, other: Any, /) -> Any: ...


#: a numpy array, or a torch tensor (the chain products only use ``@``)
ArrayT = TypeVar("ArrayT", bound=_Matrix)


def end_product(factors: Sequence[ArrayT]) -> ArrayT:
    """W = W_N ⋯ W_1 (docs/math.md §1).

    Works on anything with ``@``: numpy arrays, and stacked torch tensors (B, d_j, d_{j−1}) of a batch of
    networks (:mod:`flowsim.validation.batched`).
    """
    W = factors[0]
    for F in factors[1:]:
        W = F @ W
    return W


def prefix_products(factors: Sequence[ArrayT], identity: bool = True) -> list[Any]:
    """[W_{0:1}, W_{1:1}, …, W_{N:1}] (the products of the first j factors; docs/math.md §1 and §6), so that
    entry j is W_{j:1}.

    W_{0:1} = I_n with ``identity`` (a numpy identity); without it, None (never materialized: what the
    batched torch code and the hot loops use). N − 1 matrix products, W_{j+1:1} = W_{j+1} W_{j:1}:
    W_{1:1} is W_1 itself (the same array, not a copy). Works on numpy arrays and on stacked torch tensors.
    """
    out: list[Any] = [np.eye(factors[0].shape[-1]) if identity else None, factors[0]]
    for F in factors[1:]:
        out.append(F @ out[-1])
    return out


def suffix_products(factors: Sequence[ArrayT], identity: bool = True) -> list[Any]:
    """[W_{N:1}, W_{N:2}, …, W_{N:N+1}] (the products of the last N − j factors; docs/math.md §1 and §6),
    so that entry j is W_{N:j+1}.

    W_{N:N+1} = I_m with ``identity``; without it, None. N − 1 matrix products,
    W_{N:j} = W_{N:j+1} W_j: W_{N:N} is W_N itself (the same array, not a copy). Works on numpy arrays and on
    stacked torch tensors.
    """
    out: list[Any] = [np.eye(factors[-1].shape[-2]) if identity else None, factors[-1]]
    for F in reversed(factors[:-1]):
        out.append(out[-1] @ F)
    return out[::-1]


def canonical_balanced_factors(W: np.ndarray, depth: int) -> list[np.ndarray]:
    """Canonical balanced factorization of W = UΣVᵀ (docs/math.md §1), with hidden width r = min(m, n):

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
    """D_j = W_{j+1}ᵀW_{j+1} − W_jW_jᵀ for j = 1..N−1, stacked (zero for balanced
    factors; docs/math.md §1)."""
    return np.array([factors[j + 1].T @ factors[j + 1] - factors[j] @ factors[j].T
                     for j in range(len(factors) - 1)])


def layer_dims(factors: Sequence[np.ndarray]) -> list[int]:
    """[d_0, d_1, …, d_N]."""
    return [factors[0].shape[1], *[F.shape[0] for F in factors]]
