"""Gradient-flow vector fields of a depth-N linear network (docs/math.md §4–§6).

All end-product computations work in the SVD basis; no Kronecker product is ever formed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..factors import prefix_products
from ..penalties import Penalty
from ..problems import CompletionProblem


def end_product_kernel(s: np.ndarray, shape: tuple[int, int], depth: int) -> np.ndarray:
    """K_kl = Σ_{j=1}^{N} σ_k^{2(j−1)/N} σ_l^{2(N−j)/N} (docs/math.md §4; ACH18
    Thm. 1, Zhao22 Eq. 4, SVD basis).

    σ is padded with zeros to length m (rows) and n (columns), with 0⁰ = 1, so K represents P_W on the
    full space even when W is singular. The geometric sum equals (σ_k² − σ_l²)/(σ_k^{2/N} − σ_l^{2/N}) for
    σ_k ≠ σ_l; it is evaluated as the sum of its N positive terms, which is stable at σ_k ≈ σ_l (no
    cancellation) and costs N·m·n flops.

    Singular values at or below the numerical-rank threshold τ = max(m, n)·ε_mach·σ_1 are treated as exact
    zeros: they are round-off of the SVD, and the fractional power σ^{2/N} would amplify a round-off of
    ε_mach·σ_1 into ε_mach^{1/N}·σ_1^{2/N}.
    """
    m, n = shape
    if depth == 1:
        return np.ones((m, n))
    a = np.zeros(m)
    b = np.zeros(n)
    r = s.size
    tau = max(m, n) * np.finfo(float).eps * (float(s[0]) if r else 0.0)
    a[:r] = np.where(s > tau, s, 0.0) ** (2.0 / depth)
    b[:r] = a[:r]
    # rows a^0..a^{N−1} and b^{N−1}..b^0 (numpy: 0.0**0 = 1); K = Σ_j a^{j−1} ⊗ b^{N−j} = Aᵀ B, one product
    powers = np.arange(depth, dtype=float)[:, None]
    A = a[None, :] ** powers
    B = b[None, :] ** powers[::-1]
    return A.T @ B


def full_svd(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W = U diag(σ) Vᵀ with square U (m×m), V (n×n) and σ of length min(m, n), descending."""
    return np.linalg.svd(W, full_matrices=True)


def apply_end_product_preconditioner(
    W: np.ndarray, X: np.ndarray, depth: int, svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """P_W(X) = Σ_j (WWᵀ)^{(j−1)/N} X (WᵀW)^{(N−j)/N} = U (K ∘ UᵀXV) Vᵀ
    (docs/math.md §4; ACH18 / Zhao22 Eq. 4).

    In vec form: vec(P_W(X)) = [Σ_j (WᵀW)^{(N−j)/N} ⊗ (WWᵀ)^{(j−1)/N}] vec(X) (column-major vec).
    """
    U, s, Vt = full_svd(W) if svd is None else svd
    Xt = U.T @ X @ Vt.T
    return U @ (end_product_kernel(s, W.shape, depth) * Xt) @ Vt


def end_product_velocity(
    W: np.ndarray,
    problem: CompletionProblem,
    depth: int,
    penalty: Penalty | None = None,
    lam: float = 0.0,
    svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Ẇ = −Σ_{j=1}^{N} (WWᵀ)^{(j−1)/N} G (WᵀW)^{(N−j)/N}, G = ∇ℓ(W) + λ∇R(W) (docs/math.md §4; ACH18 Thm. 1,
    Zhao22 Eq. 4). Evaluated as Ẇ = −U (K ∘ G̃) Vᵀ with G̃ = UᵀGV; the spectral penalty adds λ g(σ) to the
    diagonal of G̃ (its gradient is U diag(g) Vᵀ). Cost: one SVD plus four m×n matrix products.
    """
    penalized = penalty is not None and lam != 0.0 and not penalty.is_zero
    if depth == 1 and not penalized:  # P_W = identity: no SVD needed
        return -problem.grad(W)
    U, s, Vt = full_svd(W) if svd is None else svd
    Gt = U.T @ problem.grad(W) @ Vt.T
    if penalized:
        r = s.size
        # (``penalized`` implies ``penalty is not None``)
        Gt[np.arange(r), np.arange(r)] += lam * penalty.spectral_grad(s, W.shape)  # type: ignore[union-attr]
    Gt *= end_product_kernel(s, W.shape, depth)
    np.negative(Gt, out=Gt)
    return U @ Gt @ Vt


def total_gradient(
    W: np.ndarray, problem: CompletionProblem, penalty: Penalty | None = None, lam: float = 0.0,
    svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """G = ∇ℓ(W) + λ∇R(W) (docs/math.md §4); ``svd`` = a thin SVD of W already at hand."""
    G = problem.grad(W)
    if penalty is not None and lam != 0.0 and not penalty.is_zero:
        G = G + lam * penalty.grad(W, svd)
    return G


def singular_value_projection(X: np.ndarray, U: np.ndarray, Vt: np.ndarray) -> np.ndarray:
    """p_r = u_rᵀ X v_r for the singular pairs given as the columns of U and the rows of Vt
    (W = U diag(σ) Vᵀ).

    With X = Ẇ it is σ̇_r, the first-order perturbation of a simple singular value; with X = ∇ℓ(W) it is the
    projected loss gradient of the singular-value dynamics (docs/math.md §5; ACHL19 Thm. 3, Zhao22 Eq. 3).
    """
    return np.einsum("ir,ir->r", U, np.asarray(X, dtype=float) @ Vt.T)


def singular_value_velocity(
    W: np.ndarray,
    problem: CompletionProblem,
    depth: int,
    penalty: Penalty | None = None,
    lam: float = 0.0,
) -> np.ndarray:
    """σ̇_i = −N (σ_i²)^{(N−1)/N} (u_iᵀ∇ℓ(W) v_i + λ u_iᵀ∇R(W) v_i) (docs/math.md §5; ACHL19 Thm. 3, Zhao22
    Eq. 3 for λ = 0, with the exact penalty projection for λ > 0). Valid where the σ_i are distinct."""
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    proj = singular_value_projection(problem.grad(W), U, Vt)
    if penalty is not None and lam != 0.0 and not penalty.is_zero:
        proj = proj + lam * penalty.spectral_grad(s, W.shape)
    return -depth * (s**2) ** ((depth - 1) / depth) * proj


def layer_gradients(
    factors: Sequence[np.ndarray], G: np.ndarray, prefixes: Sequence[np.ndarray] | None = None
) -> list[np.ndarray]:
    """∇_{W_j} = W_{N:j+1}ᵀ G W_{j−1:1}ᵀ for j = 1..N: the gradient of f(W_N⋯W_1) w.r.t. W_j when ∇f(W) = G
    (docs/math.md §6).

    Evaluated as back-propagation: B_N = G, B_{j−1} = W_jᵀ B_j (so B_j = W_{N:j+1}ᵀ G) and
    ∇_{W_j} = B_j W_{j−1:1}ᵀ, which costs 2(N − 1) matrix products given the prefix products
    ``prefixes`` = [W_{0:1}, …, W_{N:1}] of :func:`flowsim.factors.prefix_products` (computed here, N − 1
    more products, when not given).
    """
    N = len(factors)
    if N == 1:
        return [np.array(G, dtype=float)]
    pre = prefix_products(factors) if prefixes is None else prefixes
    grads: list[np.ndarray] = [G] * N
    B = G
    for j in range(N - 1, 0, -1):  # 0-based layer index j ↔ W_{j+1}; pre[j] = W_{j:1}
        grads[j] = B @ pre[j].T
        B = factors[j].T @ B
    grads[0] = B
    return grads


def layerwise_velocity(
    factors: Sequence[np.ndarray],
    problem: CompletionProblem,
    penalty: Penalty | None = None,
    lam: float = 0.0,
) -> list[np.ndarray]:
    """Ẇ_j = −W_{N:j+1}ᵀ (∇ℓ(W) + λ∇R(W)) W_{j−1:1}ᵀ (docs/math.md §6): layer-wise
    gradient flow on ℓ(W) + λR(W).

    Cost: 3(N − 1) matrix products (N − 1 for the prefix products, whose last is W, and 2(N − 1) for the
    back-propagation of :func:`layer_gradients`) plus O(mn) work for the loss gradient.
    """
    pre = prefix_products(factors)
    G = total_gradient(pre[-1], problem, penalty, lam)
    grads = layer_gradients(factors, G, pre)
    return [np.negative(g, out=g) if g is not G else -g for g in grads]  # negate the fresh arrays in place


def layerwise_velocity_into(
    factors: Sequence[np.ndarray],
    problem: CompletionProblem,
    out: Sequence[np.ndarray],
    penalty: Penalty | None = None,
    lam: float = 0.0,
) -> None:
    """Write Ẇ_j = −W_{N:j+1}ᵀ (∇ℓ(W) + λ∇R(W)) W_{j−1:1}ᵀ (docs/math.md §6) into the arrays ``out[j]`` (e.g.
    views of a flat state vector, :meth:`FactorPacker.unpack`), without temporaries for the result.

    Same back-propagation as :func:`layer_gradients` with −G propagated (B_N = −G, B_{j−1} = W_jᵀB_j,
    Ẇ_j = B_j W_{j−1:1}ᵀ): 3(N − 1) matrix products, the last one of each layer written in place.
    """
    N = len(factors)
    pre = prefix_products(factors, identity=False)  # [None, W_{1:1}, …, W_{N:1}]
    G = total_gradient(pre[-1], problem, penalty, lam)
    if N == 1:
        np.negative(G, out=out[0])
        return
    B = np.negative(G, out=G)  # G is a fresh array of total_gradient: negated in place
    for j in range(N - 1, 0, -1):  # 0-based layer j ↔ W_{j+1}; pre[j] = W_{j:1}
        np.matmul(B, pre[j].T, out=out[j])
        if j > 1:
            B = factors[j].T @ B
        else:
            np.matmul(factors[1].T, B, out=out[0])


class FactorPacker:
    """Packs factors [W_1..W_N] (shapes d_j×d_{j−1}) into one flat state vector and back."""

    def __init__(self, dims: Sequence[int]):
        self.dims = [int(d) for d in dims]
        self.shapes = [(self.dims[j + 1], self.dims[j]) for j in range(len(self.dims) - 1)]
        sizes = [a * b for a, b in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    @property
    def size(self) -> int:
        """Length of the flat state."""
        return int(self.offsets[-1])

    def pack(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        """Concatenate the row-major ravel of each factor."""
        return np.concatenate([np.asarray(F, dtype=float).ravel() for F in factors])

    def unpack(self, y: np.ndarray) -> list[np.ndarray]:
        """Views of the factors inside ``y``."""
        return [y[self.offsets[j]:self.offsets[j + 1]].reshape(shape) for j, shape in enumerate(self.shapes)]
