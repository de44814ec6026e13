"""Matrix-completion baselines for the sample-size study (Zhao22 Fig. 4 protocol, docs/math.md §13).

* :func:`soft_impute` — SoftImpute (Mazumder, Hastie, Tibshirani, *Spectral regularization algorithms for
  learning large incomplete matrices*, JMLR 2010, Algorithm 1): for the nuclear-norm regularized problem

      minimize_Z  ½‖P_Ω(X − Z)‖_F² + λ‖Z‖_*                                   (MHT10 Eq. 10)

  iterate  Z ← S_λ(P_Ω(X) + P_Ω⊥(Z))  with the singular-value soft-thresholding operator
  S_λ(W) = U diag((σ_i − λ)_+) Vᵀ (MHT10 Eq. 11), until ‖Z_new − Z_old‖_F²/‖Z_old‖_F² < tol
  (MHT10 Algorithm 1, step 2(a)ii). :func:`soft_impute_path` runs it along a decreasing grid of λ with warm
  starts (MHT10 Algorithm 1, step 2); :func:`soft_impute_cv` picks λ on a held-out part of Ω and refits on
  all of Ω.
* :func:`min_nuclear_norm` — the minimum-nuclear-norm completion  min ‖Z‖_* s.t. Z_ij = X_ij on Ω (CR09),
  solved by ADMM (:func:`min_nuclear_norm_admm`, the default: one SVD per iteration) or with cvxpy and SCS,
  as in the public code of ACHL19/Zhao22 (``solver="SCS"``, optional extra ``flowsim[baselines]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flowsim.errors import BadInputError


@dataclass
class CompletionResult:
    """A baseline's completed matrix ``Z`` with its parameters and solver statistics."""

    Z: np.ndarray
    method: str
    params: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def _check(X: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    mask = np.asarray(mask, dtype=bool)
    if X.ndim != 2 or mask.shape != X.shape:
        raise BadInputError(f"X and mask must be 2-D of one shape, got {X.shape} and {mask.shape}")
    if not mask.any():
        raise BadInputError("the mask has no observed entry")
    if not np.all(np.isfinite(X[mask])):
        raise BadInputError("observed entries must be finite")
    return np.where(mask, X, 0.0), mask


def svd_soft_threshold(W: np.ndarray, lam: float) -> tuple[np.ndarray, int]:
    """S_λ(W) = U diag((σ_i − λ)_+) Vᵀ (MHT10 Eq. 11); returns (S_λ(W), rank of the result)."""
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    s = np.maximum(s - lam, 0.0)
    r = int(np.count_nonzero(s))
    return (U[:, :r] * s[:r]) @ Vt[:r], r


def soft_impute_objective(Z: np.ndarray, X: np.ndarray, mask: np.ndarray, lam: float) -> float:
    """½‖P_Ω(X − Z)‖_F² + λ‖Z‖_* (MHT10 Eq. 10)."""
    R = np.where(mask, X - Z, 0.0)
    return float(0.5 * np.vdot(R, R) + lam * np.linalg.svd(Z, compute_uv=False).sum())


def soft_impute(
    X: np.ndarray,
    mask: np.ndarray,
    lam: float,
    *,
    Z0: np.ndarray | None = None,
    tol: float = 1e-9,
    max_iter: int = 10_000,
) -> CompletionResult:
    """SoftImpute at one λ (MHT10 Algorithm 1, inner loop): Z ← S_λ(P_Ω(X) + P_Ω⊥(Z)) from ``Z0``
    (default 0) until ‖Z_new − Z_old‖_F²/‖Z_old‖_F² < ``tol`` or ``max_iter`` iterations."""
    Xo, mask = _check(X, mask)
    if not (np.isfinite(lam) and lam >= 0):
        raise BadInputError(f"λ must be finite and ≥ 0, got {lam!r}")
    Z = np.zeros_like(Xo) if Z0 is None else np.array(Z0, dtype=float)
    rank, change, iterations = 0, np.inf, 0
    while iterations < max_iter:
        iterations += 1
        Z_new, rank = svd_soft_threshold(np.where(mask, Xo, Z), lam)
        den = float(np.vdot(Z, Z))
        diff = float(np.vdot(Z_new - Z, Z_new - Z))
        change = diff / den if den > 0 else (0.0 if not Z_new.any() else np.inf)
        Z = Z_new
        if change < tol:
            break
    stats = {"iterations": iterations, "rank": rank, "last_change": change, "converged": change < tol}
    return CompletionResult(Z, "softimpute", {"lam": float(lam), "tol": tol}, stats)


def soft_impute_path(
    X: np.ndarray,
    mask: np.ndarray,
    lams: np.ndarray | list[float],
    *,
    tol: float = 1e-9,
    max_iter: int = 10_000,
) -> list[CompletionResult]:
    """SoftImpute along a decreasing grid of λ with warm starts (MHT10 Algorithm 1, step 2)."""
    lams = sorted((float(v) for v in lams), reverse=True)
    out, Z = [], None
    for lam in lams:
        res = soft_impute(X, mask, lam, Z0=Z, tol=tol, max_iter=max_iter)
        out.append(res)
        Z = res.Z
    return out


def default_lambda_grid(X: np.ndarray, mask: np.ndarray, n: int = 20, ratio: float = 1e-4) -> np.ndarray:
    """n log-spaced λ from λ_max = σ_1(P_Ω(X)) (where S_λ gives 0) down to ratio·λ_max (MHT10 Sec. 5)."""
    Xo, mask = _check(X, mask)
    lam_max = float(np.linalg.norm(Xo, 2))
    return np.geomspace(lam_max, lam_max * ratio, n)


def soft_impute_cv(
    X: np.ndarray,
    mask: np.ndarray,
    *,
    holdout: float = 0.1,
    seed: int = 0,
    n_lams: int = 20,
    ratio: float = 1e-4,
    tol: float = 1e-7,
    max_iter: int = 2_000,
) -> CompletionResult:
    """SoftImpute with λ chosen on held-out observed entries: a fraction ``holdout`` of Ω is hidden, the
    path of :func:`default_lambda_grid` is fitted on the rest, the λ with the smallest held-out RMSE is
    kept, and the path is refitted on all of Ω down to that λ (warm starts)."""
    Xo, mask = _check(X, mask)
    rng = np.random.default_rng(seed)
    obs = np.flatnonzero(mask)
    n_hold = int(round(holdout * obs.size))
    if n_hold < 1 or n_hold >= obs.size:
        raise BadInputError(f"holdout fraction {holdout} leaves no training or no validation entry")
    hold = rng.choice(obs, size=n_hold, replace=False)
    train_mask = mask.copy()
    train_mask.flat[hold] = False
    lams = default_lambda_grid(Xo, mask, n_lams, ratio)
    path = soft_impute_path(Xo, train_mask, lams, tol=tol, max_iter=max_iter)
    val = [float(np.sqrt(np.mean((r.Z.flat[hold] - Xo.flat[hold]) ** 2))) for r in path]
    best = int(np.argmin(val))
    final = soft_impute_path(Xo, mask, lams[: best + 1], tol=tol, max_iter=max_iter)[-1]
    final.method = "softimpute-cv"
    final.params.update(holdout=holdout, seed=seed, lam_grid=[float(v) for v in lams], chosen=best)
    final.stats.update(validation_rmse=val)
    return final


def min_nuclear_norm_admm(
    X: np.ndarray, mask: np.ndarray, *, eps: float = 1e-8, max_iters: int = 20_000, rho: float | None = None,
) -> CompletionResult:
    """The minimum-nuclear-norm completion (CR09)  argmin ‖Z‖_* s.t. P_Ω(Z) = P_Ω(X)  by ADMM (BPCPE11 §3.1,
    scaled form) on the splitting  min ‖Z‖_* + ι(W) s.t. Z = W,  ι the indicator of {P_Ω(W) = P_Ω(X)}:

        Z ← S_{1/ρ}(W − U),    W ← Z + U with W_Ω = X_Ω,    U ← U + Z − W,

    S the singular-value soft-thresholding of :func:`svd_soft_threshold`; ρ is balanced against the residuals
    (BPCPE11 §3.4.1: ×2 or ÷2 when one is 10× the other). Stops when the primal residual ‖Z − W‖_F and the
    dual residual ρ‖W − W_prev‖_F are both ≤ ``eps`` · max(‖X_Ω‖_F, 1). Returns W (feasible exactly)."""
    Xo, mask = _check(X, mask)
    scale = max(float(np.linalg.norm(Xo)), 1.0)
    rho = float(rho) if rho is not None else 10.0 / max(float(np.linalg.norm(Xo, 2)), 1e-300)
    W, U = Xo.copy(), np.zeros_like(Xo)
    status, it, prim, dual = "max_iters", 0, np.inf, np.inf
    while it < max_iters:
        it += 1
        Z, _ = svd_soft_threshold(W - U, 1.0 / rho)
        W_prev = W
        W = np.where(mask, Xo, Z + U)
        U = U + Z - W
        prim, dual = float(np.linalg.norm(Z - W)), rho * float(np.linalg.norm(W - W_prev))
        if prim <= eps * scale and dual <= eps * scale:
            status = "optimal"
            break
        if prim > 10 * dual:
            rho, U = 2 * rho, U / 2
        elif dual > 10 * prim:
            rho, U = rho / 2, U * 2
    stats = {"status": status, "objective": float(np.linalg.svd(W, compute_uv=False).sum()), "solver": "admm",
             "iterations": it, "primal_residual": prim, "dual_residual": dual, "rho_final": rho}
    return CompletionResult(W, "min-nuclear-norm", {"eps": eps}, stats)


def min_nuclear_norm(
    X: np.ndarray, mask: np.ndarray, *, solver: str = "admm", eps: float | None = None,
    max_iters: int = 20_000, verbose: bool = False,
) -> CompletionResult:
    """The minimum-nuclear-norm completion  argmin ‖Z‖_* s.t. Z_ij = X_ij for (i, j) ∈ Ω: by ADMM
    (:func:`min_nuclear_norm_admm`, ``eps`` default 1e-7) or with cvxpy (``solver="SCS"`` as in the papers'
    public code, ``eps`` default 1e-6, or another cvxpy solver; needs ``pip install
    'flowsim[baselines]'``)."""
    if solver.lower() == "admm":
        return min_nuclear_norm_admm(X, mask, eps=1e-7 if eps is None else eps, max_iters=max_iters)
    eps = 1e-6 if eps is None else eps
    try:
        import cvxpy as cp
    except ImportError:
        raise BadInputError(
            "the nuclear-norm baseline needs cvxpy: pip install 'flowsim[baselines]'") from None
    Xo, mask = _check(X, mask)
    rows, cols = np.nonzero(mask)
    Z = cp.Variable(Xo.shape)
    problem = cp.Problem(cp.Minimize(cp.normNuc(Z)), [Z[rows, cols] == Xo[rows, cols]])
    kwargs = {"eps": eps, "max_iters": max_iters} if solver == "SCS" else {}
    problem.solve(solver=solver, verbose=verbose, **kwargs)
    if Z.value is None:
        raise RuntimeError(f"cvxpy/{solver} found no solution (status {problem.status})")
    stats = {"status": problem.status, "objective": float(problem.value), "solver": solver,
             "solve_time_s": getattr(problem.solver_stats, "solve_time", None),
             "iterations": getattr(problem.solver_stats, "num_iters", None)}
    return CompletionResult(np.asarray(Z.value, dtype=float), "min-nuclear-norm", {"eps": eps}, stats)
