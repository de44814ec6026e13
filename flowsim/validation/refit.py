"""Refits of a learned end product W on the observed entries, without the penalty (docs/math.md §13.1).

A penalized run ends at a minimizer of ℓ(W) + λR(W), not at W*: at a stationary point
(2/|Ω|) P_Ω(W − W*) = −λ∇R(W), so the fit is off by O(λ) (the "λ-floor"). Two refits keep what the run
learned — its rank r and its singular subspaces — and drop the penalty:

* :func:`subspace_refit` — OptSpace's S-step (KMO10): keep U_r, V_r and refit the r×r core,

      S* = argmin_S Σ_{(i,j)∈Ω} ((U_r S V_rᵀ)_ij − M_ij)²,            W = U_r S* V_rᵀ;

  it removes the shrinkage of the singular values but keeps the subspaces, tilted by the penalty.
* :func:`rank_refit` — the rank-r least-squares fit with both factors free (alternating minimization,
  JNS13; the OptSpace manifold step in KMO10 solves the same problem),

      (X*, Y*) = argmin_{X ∈ R^{m×r}, Y ∈ R^{n×r}} Σ_{(i,j)∈Ω} ((X Yᵀ)_ij − M_ij)²,   W = X* Y*ᵀ,

  started from the learned factors, so it also corrects the subspaces.

M_Ω are the observed entries (``problem.W_star`` on ``problem.mask``); r defaults to :func:`gap_rank` of the
learned spectrum, capped at the degrees of freedom the data can fix, r(m + n − r) ≤ |Ω|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowsim.problems import CompletionProblem


def gap_rank(s: np.ndarray, max_rank: int | None = None, floor: float = 1e-10) -> int:
    """The rank r ≤ ``max_rank`` at the largest ratio gap σ_r / max(σ_{r+1}, floor·σ_1) of the singular
    values (σ below floor·σ_1 count as numerical zeros)."""
    s = np.asarray(s, dtype=float)
    top = len(s) - 1 if max_rank is None else min(int(max_rank), len(s) - 1)
    if top < 1 or s[0] <= 0:
        return 1
    ratios = s[:top] / np.maximum(s[1:top + 1], floor * s[0])
    return int(np.argmax(ratios)) + 1


def identifiable_rank_cap(problem: CompletionProblem) -> int:
    """The largest r with r(m + n − r) ≤ max(|Ω|, m + n − 1): the ranks whose degrees of freedom |Ω|
    observed entries can fix."""
    m, n = problem.shape
    return max(r for r in range(1, min(m, n) + 1) if r * (m + n - r) <= max(problem.n_observed, m + n - 1))


def fewest_entries_per_line(mask: np.ndarray) -> int:
    """The fewest observed entries in any row or column of Ω (a rank-r refit needs ≥ r in each)."""
    return min(int(mask.sum(axis=1).min()), int(mask.sum(axis=0).min()))


def _refit_rank(s: np.ndarray, problem: CompletionProblem, rank: int | None) -> int:
    cap = identifiable_rank_cap(problem)
    return min(gap_rank(s, cap) if rank is None else int(rank), cap)


def subspace_refit(
    W: np.ndarray, problem: CompletionProblem, rank: int | None = None
) -> tuple[np.ndarray, int]:
    """OptSpace's S-step (KMO10): with U_r, V_r the top-r singular vectors of W,

        S* = argmin_S Σ_{(i,j)∈Ω} ((U_r S V_rᵀ)_ij − W*_ij)²,   W_refit = U_r S* V_rᵀ,

    a linear least-squares problem in the r² entries of S (rows u_iᵀ ⊗ v_jᵀ). ``rank`` defaults to
    :func:`gap_rank`, capped so that r(m + n − r) ≤ |Ω| (the degrees of freedom the data can fix)."""
    if not np.all(np.isfinite(W)):
        return np.full_like(W, np.nan), 0
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    r = _refit_rank(s, problem, rank)
    rows, cols = np.nonzero(problem.mask)
    A = (U[rows, :r][:, :, None] * Vt[:r, cols].T[:, None, :]).reshape(rows.size, r * r)
    S = np.linalg.lstsq(A, problem.W_star[rows, cols], rcond=None)[0].reshape(r, r)
    return U[:, :r] @ S @ Vt[:r], r


#: a refit larger than this many times the data's scale ‖P_Ω(M)‖_F·√(mn/|Ω|) (the estimate of ‖W*‖_F from
#: the observed entries) is an ill-posed least-squares fit, not a completion
ILL_POSED_NORM_FACTOR = 10.0


@dataclass(frozen=True)
class RankRefit:
    """The result of :func:`rank_refit`: the refitted W, its rank, the sweeps done, the root-mean-square
    residual on Ω before and after, whether the stopping tolerance was met, and whether the refit is well
    posed (``note`` says why not): every row and column of Ω holds at least r entries (else a row of a
    factor is not determined) and ‖W‖_F ≤ ``ILL_POSED_NORM_FACTOR`` × the data's scale (else some row's least
    squares rests on a few nearly dependent entries and blows up off Ω)."""

    W: np.ndarray
    rank: int
    sweeps: int
    train_rmse_start: float
    train_rmse: float
    converged: bool
    well_posed: bool = True
    note: str = ""


def _row_least_squares(mask: np.ndarray, target: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Row i of the result: argmin_x Σ_{j: mask_ij} (x·other_j − target_ij)², the minimum-norm solution of
    the normal equations (Σ_j mask_ij o_j o_jᵀ) x = Σ_j mask_ij target_ij o_j (pseudo-inverse, so rows with
    fewer than r observations are handled)."""
    gram = np.einsum("ij,jk,jl->ikl", mask, other, other)
    rhs = (mask * target) @ other
    return np.einsum("ikl,il->ik", np.linalg.pinv(gram, hermitian=True), rhs)


def rank_refit(
    W: np.ndarray,
    problem: CompletionProblem,
    rank: int | None = None,
    *,
    max_sweeps: int = 2000,
    tol: float = 1e-13,
) -> RankRefit:
    """The rank-r least-squares refit without the penalty (alternating minimization, JNS13):

        X ← argmin_X Σ_Ω ((X Yᵀ)_ij − M_ij)²,   Y ← argmin_Y Σ_Ω ((X Yᵀ)_ij − M_ij)²,

    each a set of independent r-dimensional least-squares problems (one per row of X, one per row of Y),
    started from X = U_r S_r^{1/2}, Y = V_r S_r^{1/2} of the learned W. A sweep never increases the residual;
    the sweeps stop when the relative change of W in one sweep is ≤ ``tol`` or after ``max_sweeps``. Whether
    the result is a completion or an ill-posed fit is in ``well_posed`` (:class:`RankRefit`)."""
    if not np.all(np.isfinite(W)):
        return RankRefit(np.full_like(W, np.nan), 0, 0, float("nan"), float("nan"), False)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    r = _refit_rank(s, problem, rank)
    mask = problem.mask.astype(float)
    target = np.where(problem.mask, problem.W_star, 0.0)
    k = max(problem.n_observed, 1)

    def rmse(Z: np.ndarray) -> float:
        return float(np.sqrt(np.sum(mask * (Z - target) ** 2) / k))

    root = np.sqrt(s[:r])
    X, Y = U[:, :r] * root, Vt[:r].T * root
    W_prev = X @ Y.T
    start = rmse(W_prev)
    converged, sweeps = False, 0
    while not converged and sweeps < max_sweeps:
        X = _row_least_squares(mask, target, Y)
        Y = _row_least_squares(mask.T, target.T, X)
        W_new = X @ Y.T
        converged = bool(np.linalg.norm(W_new - W_prev) <= tol * max(float(np.linalg.norm(W_new)), 1e-300))
        W_prev, sweeps = W_new, sweeps + 1
    few = fewest_entries_per_line(problem.mask)
    scale = float(np.linalg.norm(target)) * np.sqrt(mask.size / k)
    note = ""
    if few < r:
        note = f"a row or column of Ω has {few} < r = {r} entries"
    elif not np.isfinite(W_prev).all() or np.linalg.norm(W_prev) > ILL_POSED_NORM_FACTOR * scale:
        note = (f"‖W‖_F = {np.linalg.norm(W_prev):.3g} > {ILL_POSED_NORM_FACTOR:g} × the data's scale "
                f"{scale:.3g}")
    return RankRefit(W_prev, r, sweeps, start, rmse(W_prev), converged, not note, note)
