"""Baselines of the sample-size study: SoftImpute (MHT10) and the minimum-nuclear-norm completion."""

from __future__ import annotations

import numpy as np
import pytest

from flowsim import synthetic_problem
from flowsim.validation.baselines import (
    min_nuclear_norm,
    soft_impute,
    soft_impute_cv,
    soft_impute_objective,
    soft_impute_path,
    svd_soft_threshold,
)


def _problem(m=20, n=20, rank=2, observed=300, seed=0):
    return synthetic_problem(m, n, rank, observed, seed)


def test_soft_threshold_closed_form():
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    V, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    s = np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    W = U[:, :5] @ np.diag(s) @ V.T
    S, r = svd_soft_threshold(W, 0.8)
    assert r == 3
    np.testing.assert_allclose(S, U[:, :5] @ np.diag([4.2, 2.2, 0.2, 0, 0]) @ V.T, atol=1e-12)


def test_soft_impute_recovers_exact_low_rank():
    p = _problem()
    lam_max = np.linalg.norm(np.where(p.mask, p.W_star, 0), 2)
    path = soft_impute_path(p.W_star, p.mask, np.geomspace(lam_max, lam_max * 1e-6, 25), tol=1e-12,
                            max_iter=20_000)
    rel, _ = p.test_errors(path[-1].Z)
    assert rel < 1e-3
    assert path[-1].stats["rank"] >= 2
    s = np.linalg.svd(path[-1].Z, compute_uv=False)
    assert s[2] / s[0] < 1e-4  # numerically rank 2


def test_soft_impute_cv_recovers_exact_low_rank():
    p = _problem()
    res = soft_impute_cv(p.W_star, p.mask, seed=0, n_lams=15, ratio=1e-5, tol=1e-10, max_iter=5000)
    rel, _ = p.test_errors(res.Z)
    assert rel < 1e-2


@pytest.mark.slow
def test_soft_impute_matches_cvxpy_on_the_regularized_problem():
    cp = pytest.importorskip("cvxpy")
    p = _problem(m=10, n=8, rank=2, observed=50, seed=1)
    lam = 0.5
    res = soft_impute(p.W_star, p.mask, lam, tol=1e-14, max_iter=50_000)
    Z = cp.Variable(p.shape)
    X = np.where(p.mask, p.W_star, 0)
    obj = 0.5 * cp.sum_squares(cp.multiply(p.mask.astype(float), Z - X)) + lam * cp.normNuc(Z)
    cp.Problem(cp.Minimize(obj)).solve(solver="SCS", eps=1e-9, max_iters=200_000)
    f_si = soft_impute_objective(res.Z, p.W_star, p.mask, lam)
    f_cvx = soft_impute_objective(Z.value, p.W_star, p.mask, lam)
    assert f_si <= f_cvx + 1e-5 * abs(f_cvx)
    np.testing.assert_allclose(res.Z, Z.value, atol=1e-3 * np.abs(res.Z).max())


@pytest.mark.slow
def test_min_nuclear_norm_recovers_exact_low_rank():
    pytest.importorskip("cvxpy")
    p = _problem()
    res = min_nuclear_norm(p.W_star, p.mask)
    rel, _ = p.test_errors(res.Z)
    assert res.stats["status"] in ("optimal", "optimal_inaccurate")
    assert rel < 1e-3
    np.testing.assert_allclose(res.Z[p.mask], p.W_star[p.mask], atol=1e-4)
    # the nuclear norm of the solution is no larger than that of the ground truth (which is feasible)
    nuc = np.linalg.svd(res.Z, compute_uv=False).sum()
    assert nuc <= np.linalg.svd(p.W_star, compute_uv=False).sum() + 1e-3


@pytest.mark.slow
def test_too_few_entries_do_not_recover():
    pytest.importorskip("cvxpy")
    p = _problem(observed=60)  # fewer entries than the 76 degrees of freedom of a 20×20 rank-2 matrix
    rel, _ = p.test_errors(min_nuclear_norm(p.W_star, p.mask, max_iters=3000).Z)
    assert rel > 0.1


def test_admm_min_nuclear_norm_matches_an_interior_point_solver():
    """ADMM against cvxpy/Clarabel on the same problem (12×12, rank 2, 70 observed): the same optimal value
    and the same minimizer; ADMM's result is feasible exactly."""
    cp = pytest.importorskip("cvxpy")
    p = synthetic_problem(12, 12, 2, 70, 1)
    res = min_nuclear_norm(p.W_star, p.mask, eps=1e-9, max_iters=50_000)
    rows, cols = np.nonzero(p.mask)
    Z = cp.Variable((12, 12))
    prob = cp.Problem(cp.Minimize(cp.normNuc(Z)), [Z[rows, cols] == p.W_star[rows, cols]])
    prob.solve(solver="CLARABEL")
    assert res.stats["solver"] == "admm"
    assert res.stats["objective"] == pytest.approx(prob.value, rel=1e-6)
    np.testing.assert_allclose(res.Z, Z.value, atol=1e-4 * np.abs(Z.value).max())
    assert np.array_equal(res.Z[p.mask], p.W_star[p.mask])


def test_admm_min_nuclear_norm_recovers_an_incoherent_low_rank_matrix():
    """Enough entries of a rank-1 30×30 matrix (CR09's regime): the completion is W* itself."""
    p = synthetic_problem(30, 30, 1, 400, 2)
    res = min_nuclear_norm(p.W_star, p.mask)
    assert res.stats["status"] == "optimal"
    assert p.test_errors(res.Z)[0] < 1e-5
