"""The refits without the penalty (flowsim.validation.refit): the rank refit against the ground truth, against
the first-order conditions of its least-squares problem, and against scipy's least_squares on the factors
(a second formulation of the same problem)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import least_squares

from flowsim.problems import CompletionProblem, synthetic_problem
from flowsim.validation.refit import identifiable_rank_cap, rank_refit, subspace_refit
from flowsim.validation.reproduce_jobs import summarize_seeds


def _tilted(p: CompletionProblem, r: int, angle: float, seed: int) -> np.ndarray:
    """W* with both singular subspaces rotated by about ``angle`` and its singular values distorted by a
    few per cent: the kind of bias a spectral penalty leaves (docs/math.md §13.1)."""
    rng = np.random.default_rng(seed)
    U, s, Vt = np.linalg.svd(p.W_star)
    m, n = p.shape
    Ut = np.linalg.qr(U[:, :r] + angle * rng.standard_normal((m, r)))[0]
    Vtt = np.linalg.qr(Vt[:r].T + angle * rng.standard_normal((n, r)))[0]
    Ut *= np.sign(np.sum(Ut * U[:, :r], axis=0))  # keep the orientation of each pair
    Vtt *= np.sign(np.sum(Vtt * Vt[:r].T, axis=0))
    return Ut @ np.diag(s[:r] * (1 + 0.05 * np.linspace(1, -1, r))) @ Vtt.T


def test_rank_refit_recovers_w_star_where_the_subspace_refit_keeps_the_tilt():
    p = synthetic_problem(12, 12, 2, 90, 4)
    W = _tilted(p, 2, 0.05, 0)
    res = rank_refit(W, p)
    sub, r_sub = subspace_refit(W, p)
    assert res.rank == r_sub == 2 and res.converged
    err0, err_sub, err_rank = p.test_errors(W)[0], p.test_errors(sub)[0], p.test_errors(res.W)[0]
    assert err_rank < 1e-9                # the exact completion (W* is the unique rank-2 fit here)
    assert err_sub > 1e-3 and err0 > 1e-2  # the core refit cannot undo tilted subspaces
    assert res.train_rmse < 1e-9 * res.train_rmse_start


def test_rank_refit_is_a_stationary_point_that_matches_scipy_least_squares():
    """Noisy data (no exact rank-2 fit): the result satisfies the first-order conditions of
    min Σ_Ω ((X Yᵀ)_ij − M_ij)² — R V_r = 0 and Rᵀ U_r = 0 for the residual R = P_Ω(W − M) — and its
    residual equals the one scipy's trust-region least squares reaches on the factors from the same start."""
    p0 = synthetic_problem(8, 7, 2, 40, 2)
    rng = np.random.default_rng(5)
    p = CompletionProblem(p0.W_star + 0.05 * rng.standard_normal(p0.shape), p0.mask)
    W = _tilted(p0, 2, 0.02, 1)
    res = rank_refit(W, p, rank=2, tol=1e-15, max_sweeps=20000)
    R = np.where(p.mask, res.W - p.W_star, 0.0)
    U, _, Vt = np.linalg.svd(res.W)
    assert np.linalg.norm(R @ Vt[:2].T) < 1e-7 * np.linalg.norm(R)
    assert np.linalg.norm(R.T @ U[:, :2]) < 1e-7 * np.linalg.norm(R)
    rows, cols = np.nonzero(p.mask)
    Us, s, Vts = np.linalg.svd(W)
    x0 = np.concatenate([(Us[:, :2] * np.sqrt(s[:2])).ravel(), (Vts[:2].T * np.sqrt(s[:2])).ravel()])

    def resid(z: np.ndarray) -> np.ndarray:
        X, Y = z[:16].reshape(8, 2), z[16:].reshape(7, 2)
        return (X @ Y.T)[rows, cols] - p.W_star[rows, cols]

    ref = least_squares(resid, x0, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    ours = np.sqrt(np.mean(R[rows, cols] ** 2))
    assert ours == pytest.approx(np.sqrt(np.mean(ref.fun ** 2)), rel=1e-8)
    assert res.train_rmse == pytest.approx(ours, rel=1e-12)


def test_rank_refit_edge_cases():
    p = synthetic_problem(6, 6, 1, 12, 0)
    bad = rank_refit(np.full((6, 6), np.nan), p)
    assert bad.rank == 0 and np.all(np.isnan(bad.W)) and not bad.converged
    # rows with a single observation and a requested rank above the identifiable cap: finite, capped
    cap = identifiable_rank_cap(p)
    res = rank_refit(p.W_star + 0.1, p, rank=6)
    assert res.rank == cap and np.all(np.isfinite(res.W))
    assert res.train_rmse <= res.train_rmse_start + 1e-12


def test_summary_of_records_without_the_rank_refit_has_nan():
    seed = {"test_error": 0.1, "erank": 5.0, "refit_test_error": 0.09, "test_rmse": 0.2, "lr": 1e-3,
            "iterations": 10, "status": "budget"}
    old = summarize_seeds([seed])
    new = summarize_seeds([seed | {"rank_refit_test_error": 1e-9}, seed | {"rank_refit_test_error": 3e-9}])
    assert math.isnan(old["rank_refit_err_mean"])
    assert new["rank_refit_err_mean"] == pytest.approx(2e-9)
    assert (new["rank_refit_err_min"], new["rank_refit_err_max"]) == (1e-9, 3e-9)


def test_an_undetermined_or_exploding_refit_is_not_well_posed():
    """Where Ω does not determine a rank-r fit the least squares blows up off Ω (an independent measure: the
    test error, 1e2–1e6 here); the refit says so instead of passing for a completion."""
    rng = np.random.default_rng(0)
    for k, r, why in ((500, 1, "entries"), (1000, 2, "scale")):
        p = synthetic_problem(100, 100, 5, k, 0)
        res = rank_refit(p.W_star + 0.3 * rng.standard_normal((100, 100)), p, rank=r)
        assert not res.well_posed and why in res.note
        assert p.test_errors(res.W)[0] > 100
    p = synthetic_problem(100, 100, 5, 2000, 0)
    res = rank_refit(p.W_star + 0.3 * rng.standard_normal((100, 100)), p, rank=5)
    assert res.well_posed and res.note == "" and p.test_errors(res.W)[0] < 1e-9
