"""Zhao22's printed formulas (Theorems 1–3, Eqs. 5–9), implemented literally (docs/math.md §5, §8.1).

These are the equations *as printed*, not the exact dynamics; :mod:`theory` compares them with the exact
counterparts (:func:`flowsim.flows.variance.variance_adapted_end_product_velocity`, the exact penalized
end-product velocity :func:`flowsim.flows.end_product_velocity` and
:func:`flowsim.flows.singular_value_velocity`) and reports the differences with numbers (``flowsim check``).

Conventions
-----------
* Kronecker products are never formed. (A ⊗ B)·vec(X) is evaluated as a matrix product:
  row-major vec (numpy ``ravel()``): (A ⊗ B) vec_r(Y) = vec_r(A Y Bᵀ), Y of shape (rows(A), rows(B));
  column-major vec (docs/math.md §1, Fortran order): (A ⊗ B) vec_c(Y) = vec_c(B Y Aᵀ), Y of shape (rows(B),
  rows(A)). Eq. 6's operator (WWᵀ)^a ⊗ (WᵀW)^b acts on a vector of length mn; under column-major vec that
  vector is reshaped to n×m, exactly as the printed Kronecker order demands (for m ≠ n this scrambles the
  entries of ∇ℓ — that is what the printed formula says under that convention).
* G_j = diag(vec S_j) multiplies vec(∇ℓ) entry by entry. It is dimensionally defined only when S_j has
  m·n entries; vec(S_j) is then unvec'ed to m×n in the same convention (the identity when S_j is m×n, e.g.
  every square problem with hidden width n, and every N = 1 network). Otherwise :class:`BadInputError`.
* Fractional powers (WWᵀ)^a use the full SVD with σ padded by zeros and 0⁰ = 1 (docs/math.md §1).
* S_j = ((∇_{W_j})^{⊙2} + s_j² + ε²)^{⊙−1/2}, s_j² = var(∇_{W_j}) from
  :func:`flowsim.flows.variance.variance_scaling` (ε documented there).
* The per-layer gradients of a pure end-product state come from the canonical balanced factorization with a
  fixed sign for each singular pair (:func:`signed_balanced_factors`): s_j² = var(∇_{W_j}) contains the
  squared *mean* of the entries, which changes when a pair (u_i, v_i) flips to (−u_i, −v_i), so without a
  sign rule the printed field is not a function of W alone (measured: up to 0.8 %).
* Theorem 3 (Eq. 9): S_j is computed from the ``layer_grads`` the caller passes. flowsim's choice is the
  layer gradients of the *total* objective ℓ + λR with the exact R — the gradient that Adam's second moment
  actually sees, and the S_j of the exact flow of docs/math.md §8.2. Passing the loss-only layer gradients
  gives the other reading (S_j from ℓ alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..errors import BadInputError
from .gradient import singular_value_projection
from .variance import VARIANCE_EPS, variance_scaling

CONVENTIONS = ("row-major", "col-major")


def _order(convention: str) -> Literal["C", "F"]:
    if convention == "row-major":
        return "C"
    if convention == "col-major":
        return "F"
    raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def vec(X: np.ndarray, convention: str = "col-major") -> np.ndarray:
    """vec(X) in the given convention: column-major stacks columns (docs/math.md
    §1), row-major stacks rows."""
    return np.asarray(X).ravel(order=_order(convention))


def unvec(x: np.ndarray, shape: tuple[int, int], convention: str = "col-major") -> np.ndarray:
    """The inverse of :func:`vec`: reshape a vector of length rows·cols into ``shape``."""
    return np.asarray(x).reshape(shape, order=_order(convention))


def kron_matvec(A: np.ndarray, B: np.ndarray, X: np.ndarray, convention: str = "col-major") -> np.ndarray:
    """unvec((A ⊗ B)·vec(X)) without forming A ⊗ B, in the shape of X.

    Row-major: (A ⊗ B) vec_r(Y) = vec_r(A Y Bᵀ) with Y = unvec_r(vec_r X) of shape (a, b);
    column-major: (A ⊗ B) vec_c(Y) = vec_c(B Y Aᵀ) with Y = unvec_c(vec_c X) of shape (b, a);
    a = rows(A), b = rows(B), a·b = X.size.
    """
    a, b = A.shape[0], B.shape[0]
    if a * b != X.size:
        raise ValueError(f"(A⊗B) has {a * b} columns but vec(X) has {X.size} entries")
    if convention == "row-major":
        Y = unvec(vec(X, convention), (a, b), convention)
        Z = A @ Y @ B.T
    else:
        Y = unvec(vec(X, "col-major"), (b, a), "col-major")
        Z = B @ Y @ A.T
    return unvec(vec(Z, convention), X.shape, convention)


def signed_svd(
    W: np.ndarray, svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD W = U diag(s) Vᵀ with a deterministic sign for each singular pair: the entry of largest
    magnitude of every right singular vector v_i is positive (the first such entry on ties), and u_i follows.

    ``svd`` is a precomputed (U, s, Vᵀ) of W to normalize (any signs); by default np.linalg.svd(W).
    """
    U, s, Vt = np.linalg.svd(np.asarray(W, dtype=float), full_matrices=False) if svd is None else svd
    rows = np.arange(Vt.shape[0])
    flip = np.where(Vt[rows, np.argmax(np.abs(Vt), axis=1)] < 0, -1.0, 1.0)
    return U * flip, s, Vt * flip[:, None]


def signed_balanced_factors(
    W: np.ndarray, depth: int, svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
) -> list[np.ndarray]:
    """The canonical balanced factorization of W (ACH18 balancedness W_{j+1}ᵀW_{j+1} = W_jW_jᵀ) on the
    sign-fixed SVD of :func:`signed_svd`, so that it is a function of W alone (for distinct σ_i):

        W_1 = Σ^{1/N}Vᵀ,  W_j = Σ^{1/N} (1 < j < N),  W_N = UΣ^{1/N};  N = 1 gives W_1 = W.
    """
    if depth == 1:
        return [np.array(W, dtype=float)]
    U, s, Vt = signed_svd(W, svd)
    root = s ** (1.0 / depth)
    return [root[:, None] * Vt, *[np.diag(root) for _ in range(depth - 2)], U * root]


def _gram_powers(W: np.ndarray, depth: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """[(WWᵀ)^{k/N}] and [(WᵀW)^{k/N}] for k = 0..N−1 (full SVD, σ padded by
    zeros, 0⁰ = 1; docs/math.md §1)."""
    m, n = W.shape
    U, s, Vt = np.linalg.svd(W, full_matrices=True)
    a = np.zeros(m)
    b = np.zeros(n)
    a[: s.size] = s ** (2.0 / depth)
    b[: s.size] = s ** (2.0 / depth)
    left, right = [], []
    for k in range(depth):
        left.append((U * a**k) @ U.T)  # a**0 == 1 even where a == 0
        right.append((Vt.T * b**k) @ Vt)
    return left, right


def _scaling_as_loss_shape(S: np.ndarray, shape: tuple[int, int], convention: str, j: int) -> np.ndarray:
    """G_j = diag(vec S_j) acting on vec(∇ℓ): S_j unvec'ed to m×n in the same convention."""
    if S.shape == tuple(shape):
        return S
    if S.size != shape[0] * shape[1]:
        raise BadInputError(
            f"Zhao22 Eq. 6 as printed is undefined here: G_{j} = diag(vec S_{j}) has {S.size} entries "
            f"(layer {j} is {S.shape[0]}x{S.shape[1]}) but vec(∇ℓ) has {shape[0] * shape[1]} "
            f"(W is {shape[0]}x{shape[1]}); it needs every layer to have m·n entries (e.g. square W)")
    return unvec(vec(S, convention), shape, convention)


def theorem1_velocity(
    W: np.ndarray, loss_grad: np.ndarray, layer_grads: Sequence[np.ndarray], depth: int,
    convention: str = "row-major", eps: float = VARIANCE_EPS,
) -> np.ndarray:
    """Zhao22 Theorem 1, Eq. 6 as printed (docs/math.md §8.1):

        vec(Ẇ) = −P_{W,G} vec(∇ℓ),   P_{W,G} = Σ_{j=1}^{N} ((WWᵀ)^{(j−1)/N} ⊗ (WᵀW)^{(N−j)/N}) G_j,
        G_j = diag(vec S_j),  S_j = ((∇_{W_j}ℓ)^{⊙2} + s_j²)^{⊙−1/2},  s_j² = var(∇_{W_j}ℓ).

    ``layer_grads`` are the N layer gradients ∇_{W_j} (j = 1..N) that define S_j; ``convention`` is the vec
    convention (``row-major``: with G_j = I this is Eq. 4; ``col-major``: the docs/math.md §1 convention,
    under which the printed Kronecker order is reversed). Returns Ẇ (m×n). No Kronecker product is formed.
    """
    W = np.asarray(W, dtype=float)
    loss_grad = np.asarray(loss_grad, dtype=float)
    if len(layer_grads) != depth:
        raise ValueError(f"expected {depth} layer gradients, got {len(layer_grads)}")
    _order(convention)
    left, right = _gram_powers(W, depth)
    out = np.zeros_like(W)
    for j in range(1, depth + 1):
        S = _scaling_as_loss_shape(variance_scaling(layer_grads[j - 1], eps), W.shape, convention, j)
        out += kron_matvec(left[j - 1], right[depth - j], S * loss_grad, convention)
    return -out


def theorem1_singular_value_velocity(
    W: np.ndarray, loss_grad: np.ndarray, layer_grads: Sequence[np.ndarray], depth: int,
    convention: str = "row-major", eps: float = VARIANCE_EPS, pairing: str = "printed",
) -> np.ndarray:
    """Zhao22 Theorem 1, Eq. 5 as printed (docs/math.md §8.1): σ̇_i = −vec(v_i u_iᵀ)ᵀ P_{W,G} vec(∇ℓ).

    ``pairing="printed"`` pairs vec(v_i u_iᵀ) (an n×m matrix) with vec(Ẇ) of Eq. 6 in the same vec
    convention, literally; for square W this is v_iᵀẆu_i. ``pairing="uv"`` uses vec(u_i v_iᵀ) instead,
    i.e. u_iᵀẆv_i (the projection that the exact σ̇_i = u_iᵀẆv_i calls for). Returns σ̇ (min(m, n),).
    """
    if pairing not in ("printed", "uv"):
        raise ValueError(f"pairing must be 'printed' or 'uv', got {pairing!r}")
    Wdot = theorem1_velocity(W, loss_grad, layer_grads, depth, convention, eps)
    U, s, Vt = np.linalg.svd(np.asarray(W, dtype=float), full_matrices=False)
    wv = vec(Wdot, convention)
    out = np.empty(s.size)
    for i in range(s.size):
        M = np.outer(Vt[i], U[:, i]) if pairing == "printed" else np.outer(U[:, i], Vt[i])
        out[i] = float(vec(M, convention) @ wv)
    return out


def printed_penalty_term(W: np.ndarray) -> np.ndarray:
    """The λ-term of Zhao22 Eq. 8 as printed (docs/math.md §5):

        (UVᵀ − UΣ̃Vᵀ)/‖W‖_F²,   Σ̃ = (‖W‖_*/‖W‖_F) Σ,   i.e.  UVᵀ/‖W‖_F² − ‖W‖_* W/‖W‖_F³.

    The exact gradient of R = ‖W‖_*/‖W‖_F is UVᵀ/‖W‖_F − ‖W‖_* W/‖W‖_F³: the printed first term carries an
    extra factor 1/‖W‖_F. UVᵀ runs over σ_i > max(m, n)·ε_mach·σ_1 (as
    :class:`flowsim.penalties.RatioPenalty`).
    Zero at W = 0.
    """
    W = np.asarray(W, dtype=float)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    fro = float(np.sqrt(np.sum(s**2)))
    if fro == 0.0:
        return np.zeros_like(W)
    nuc = float(np.sum(s))
    support = (s > max(W.shape) * np.finfo(float).eps * s[0]).astype(float)
    UVt = (U * support) @ Vt
    return (UVt - (nuc / fro) * W) / fro**2


def eq3_singular_value_velocity(W: np.ndarray, loss_grad: np.ndarray, depth: int) -> np.ndarray:
    """Zhao22 Eq. 3 (ACHL19 Thm. 3): σ̇_r = −N (σ_r²)^{(N−1)/N} u_rᵀ ∇ℓ(W) v_r, r = 1..min(m, n)."""
    U, s, Vt = np.linalg.svd(np.asarray(W, dtype=float), full_matrices=False)
    proj = singular_value_projection(loss_grad, U, Vt)
    return -depth * (s**2) ** ((depth - 1) / depth) * proj


def eq7_singular_value_velocity(W: np.ndarray, loss_grad: np.ndarray, depth: int, lam: float) -> np.ndarray:
    """Zhao22 Theorem 2, Eq. 7 as printed (docs/math.md §5):

        σ̇_r = σ̇_r^{GF} − (λN/‖W‖_F²)(1 − ‖W‖_*/‖W‖_F) σ_r^{(3N−2)/2},

    with σ̇_r^{GF} the penalty-free velocity of Eq. 3. (The exact projection of the penalized flow is
    −Nσ_r^{2−2/N}(u_rᵀ∇ℓv_r + λ(1/‖W‖_F − ‖W‖_*σ_r/‖W‖_F³)).)
    """
    s = np.linalg.svd(np.asarray(W, dtype=float), compute_uv=False)
    fro = float(np.sqrt(np.sum(s**2)))
    nuc = float(np.sum(s))
    gf = eq3_singular_value_velocity(W, loss_grad, depth)
    if lam == 0.0:
        return gf
    return gf - (lam * depth / fro**2) * (1.0 - nuc / fro) * s ** ((3 * depth - 2) / 2)


def eq8_velocity(W: np.ndarray, loss_grad: np.ndarray, depth: int, lam: float) -> np.ndarray:
    """Zhao22 Theorem 2, Eq. 8 as printed (docs/math.md §5):

        vec(Ẇ) = −P_W (vec ∇ℓ + λ vec(UVᵀ − UΣ̃Vᵀ)/‖W‖_F²),  Σ̃ = (‖W‖_*/‖W‖_F)Σ,

    with P_W of Eq. 4 applied in the SVD basis (:func:`flowsim.flows.apply_end_product_preconditioner`).
    """
    from .gradient import apply_end_product_preconditioner

    X = np.asarray(loss_grad, dtype=float)
    if lam != 0.0:
        X = X + lam * printed_penalty_term(W)
    return -apply_end_product_preconditioner(np.asarray(W, dtype=float), X, depth)


def theorem3_velocity(
    W: np.ndarray,
    loss_grad: np.ndarray,
    layer_grads: Sequence[np.ndarray],
    depth: int,
    lam: float,
    convention: str = "row-major",
    eps: float = VARIANCE_EPS,
) -> np.ndarray:
    """Zhao22 Theorem 3, Eq. 9 as printed (docs/math.md §8.1): Eq. 6 with ∇ℓ replaced by ∇ℓ + λ·(the
    printed penalty term of Eq. 8),

        vec(Ẇ) = −P_{W,G} (vec ∇ℓ + λ vec(UVᵀ − UΣ̃Vᵀ)/‖W‖_F²).

    S_j comes from ``layer_grads``; flowsim passes ∇_{W_j}(ℓ + λR) with the exact R (see module docstring).
    """
    X = np.asarray(loss_grad, dtype=float)
    if lam != 0.0:
        X = X + lam * printed_penalty_term(W)
    return theorem1_velocity(W, X, layer_grads, depth, convention, eps)


__all__ = [
    "CONVENTIONS", "eq3_singular_value_velocity",
    "eq7_singular_value_velocity", "eq8_velocity",
    "kron_matvec", "printed_penalty_term", "theorem1_singular_value_velocity", "theorem1_velocity",
    "theorem3_velocity", "unvec", "vec",
]
