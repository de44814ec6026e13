"""docs/math.md §2: problem generation, loss and gradient, metrics."""

import numpy as np
import pytest

from flowsim import effective_rank, matrix_metrics, problem_from_files, synthetic_problem
from flowsim.errors import BadInputError


def test_synthetic_problem_matches_spec():
    p = synthetic_problem(40, 30, rank=3, observed=500, seed=4)
    assert p.shape == (40, 30)
    assert np.linalg.norm(p.W_star) == pytest.approx(np.sqrt(40 * 30), rel=1e-12)
    s = np.linalg.svd(p.W_star, compute_uv=False)
    assert s[2] > 1e-6 * s[0] and s[3] < 1e-10 * s[0]  # rank exactly 3
    assert p.n_observed == 500
    q = synthetic_problem(40, 30, rank=3, observed=500, seed=4)
    assert np.array_equal(p.W_star, q.W_star) and np.array_equal(p.mask, q.mask)
    r = synthetic_problem(40, 30, rank=3, observed=500, seed=5)
    assert not np.array_equal(p.mask, r.mask)


@pytest.mark.parametrize("reduction,scale", [("mean", 1.0), ("sum", 0.5), ("sum", 2.0)])
def test_loss_gradient_matches_central_differences(reduction, scale):
    p = synthetic_problem(6, 5, rank=2, observed=12, seed=0, reduction=reduction, scale=scale)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 5))
    D = rng.standard_normal((6, 5))
    h = 1e-6
    fd = (p.loss(W + h * D) - p.loss(W - h * D)) / (2 * h)
    assert fd == pytest.approx(np.sum(p.grad(W) * D), rel=1e-7)
    # explicit formula of docs/math.md §2
    denom = 12 if reduction == "mean" else 1
    assert p.loss(W) == pytest.approx(scale * np.sum((W - p.W_star)[p.mask] ** 2) / denom, rel=1e-13)


def test_metrics_and_effective_rank(square_problem):
    assert effective_rank(np.array([1.0, 1.0, 1.0, 0.0])) == pytest.approx(3.0)
    assert effective_rank(np.array([5.0, 0.0])) == pytest.approx(1.0)
    p = square_problem
    m = matrix_metrics(p.W_star, p)
    assert m["loss"] == 0 and m["test_error"] == 0 and m["test_rmse"] == 0
    m0 = matrix_metrics(np.zeros((8, 8)), p)
    assert m0["test_error"] == pytest.approx(1.0)
    W = np.diag([3.0, -2.0, 1.0, 0, 0, 0, 0, 0])
    m = matrix_metrics(W, p)
    assert m["norm_nuc"] == pytest.approx(6) and m["norm_spec"] == pytest.approx(3)
    assert m["norm_fro"] == pytest.approx(np.sqrt(14)) and m["det"] == pytest.approx(0)


def test_user_files(tmp_path):
    W = np.arange(12.0).reshape(3, 4)
    M = np.zeros((3, 4), dtype=bool)
    M[0, 1] = M[2, 3] = True
    np.save(tmp_path / "w.npy", W)
    np.save(tmp_path / "m.npy", M)
    p = problem_from_files(tmp_path / "w.npy", tmp_path / "m.npy")
    assert p.n_observed == 2 and p.shape == (3, 4)
    np.save(tmp_path / "bad.npy", np.zeros((2, 2), dtype=bool))
    with pytest.raises(BadInputError, match="shape"):
        problem_from_files(tmp_path / "w.npy", tmp_path / "bad.npy")
    np.save(tmp_path / "nan.npy", np.full((3, 4), np.nan))
    with pytest.raises(BadInputError, match="NaN"):
        problem_from_files(tmp_path / "nan.npy")
    np.save(tmp_path / "empty.npy", np.zeros((3, 4), dtype=bool))
    with pytest.raises(BadInputError, match="no observed"):
        problem_from_files(tmp_path / "w.npy", tmp_path / "empty.npy")
    with pytest.raises(BadInputError, match="not found"):
        problem_from_files(tmp_path / "missing.npy")
