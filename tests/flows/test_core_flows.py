"""docs/math.md §4–§6: the end-product flow against the layer-wise flow, Eq. 3 against finite differences of a
trajectory, and conservation of balancedness."""

import numpy as np
import pytest

from flowsim import (
    EndProductFlow,
    LayerwiseFlow,
    balancedness_residuals,
    full_observation_problem,
    init_factors,
    make_penalty,
    simulate,
    singular_value_velocity,
    synthetic_problem,
)
from flowsim.integrator import integrate

TIGHT = {"rtol": 1e-12, "atol": 1e-14}


@pytest.mark.parametrize("shape", [(6, 6), (5, 7)])
@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("penalty,lam", [("none", 0.0), ("ratio", 0.05)])
def test_end_product_flow_equals_layerwise_flow_from_balanced_factors(shape, depth, penalty, lam):
    m, n = shape
    problem = synthetic_problem(m, n, rank=2, observed=int(0.6 * m * n), seed=depth)
    factors = init_factors("balanced-gaussian", shape, depth, scale=0.5, seed=7)
    pen = make_penalty(penalty)
    t_end = 40.0
    ep = simulate(EndProductFlow(problem, depth, pen, lam), factors, t_end, n_save=30, t_min=0.1, **TIGHT,
                  save_matrices=True, progress=False)
    lw = simulate(LayerwiseFlow(problem, depth, pen, lam), factors, t_end, n_save=30, t_min=0.1, **TIGHT,
                  save_matrices=True, progress=False)
    assert ep.status == lw.status == "ok"
    rel = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(ep.W, lw.W)]
    assert max(rel) <= 1e-7, max(rel)
    # the dynamics did something: the loss fell by at least a factor 10
    assert lw.loss[-1] < 0.1 * lw.loss[0]


# N = 1 with nuclear/ratio penalties is non-smooth where a σ_i reaches 0 (the subgradient UVᵀ jumps), so the
# penalized cases use N ≥ 2, where σ_i never reaches 0.
@pytest.mark.parametrize("depth,penalty,lam", [(1, "none", 0.0), (2, "none", 0.0), (3, "none", 0.0),
                                               (2, "ratio", 0.02), (3, "ratio", 0.02), (3, "nuclear", 0.01)])
def test_singular_value_velocity_matches_finite_differences(depth, penalty, lam):
    problem = synthetic_problem(6, 5, rank=2, observed=20, seed=3)
    factors = init_factors("balanced-gaussian", problem.shape, depth, scale=0.8, seed=1)
    pen = make_penalty(penalty)
    flow = EndProductFlow(problem, depth, pen, lam)
    h = 1e-4
    centers = np.array([2.0, 8.0, 20.0])
    grid = np.sort(np.concatenate([[0.0], centers - h, centers, centers + h]))
    res = integrate(flow, flow.initial_state(factors), grid, **TIGHT)
    assert res.status == "ok"
    svals = [np.linalg.svd(flow.end_product(y), compute_uv=False) for y in res.y]
    for c in centers:
        i = int(np.argmin(np.abs(res.t - c)))
        fd = (svals[i + 1] - svals[i - 1]) / (2 * h)
        rhs = singular_value_velocity(flow.end_product(res.y[i]), problem, depth, pen, lam)
        scale = np.max(np.abs(rhs))
        assert scale > 1e-6  # the singular values are moving
        assert np.max(np.abs(fd - rhs)) <= 1e-6 * scale + 1e-10, (c, fd, rhs)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_layerwise_flow_conserves_balancedness(depth):
    problem = synthetic_problem(5, 6, rank=2, observed=18, seed=0)
    factors = init_factors("gaussian", problem.shape, depth, scale=1.0, seed=2, width=4)
    flow = LayerwiseFlow(problem, depth)
    res = integrate(flow, flow.initial_state(factors), np.array([0.0, 5.0, 20.0, 60.0]), **TIGHT)
    D0 = balancedness_residuals(factors)
    assert np.linalg.norm(D0) > 0.1  # not balanced: the conserved quantity is nontrivial
    moved = 0.0
    for y in res.y[1:]:
        fs = flow.layer_factors(y)
        moved = max(moved, max(np.linalg.norm(a - b) for a, b in zip(fs, factors)))
        assert np.max(np.abs(balancedness_residuals(fs) - D0)) <= 1e-9
    assert moved > 0.1


def test_balanced_initializations_are_balanced_and_scaled():
    for kind in ("identity", "balanced-gaussian"):
        f = init_factors(kind, (30, 30), 3, scale=1e-3, seed=0)
        D = balancedness_residuals(f)
        assert np.max(np.abs(D)) <= 1e-14
    f = init_factors("gaussian", (100, 100), 3, scale=1e-3, seed=0)
    W = f[2] @ f[1] @ f[0]
    assert np.linalg.norm(W) == pytest.approx(1e-3 * 10, rel=0.1)  # ACHL19: ‖W‖_F ≈ α√n
    f = init_factors("balanced-gaussian", (100, 100), 3, scale=1e-3, seed=0)
    assert np.linalg.norm(f[2] @ f[1] @ f[0]) == pytest.approx(1e-3 * 10, rel=0.05)


def test_metrics_along_equals_per_snapshot_metrics(monkeypatch):
    """The batched metrics of a trajectory against :func:`matrix_metrics` one snapshot at a time, in one
    block and in blocks of two snapshots."""
    from flowsim import metrics
    from flowsim.metrics import matrix_metrics, metrics_along

    rng = np.random.default_rng(0)
    for problem in (synthetic_problem(7, 5, rank=2, observed=20, seed=1),
                    full_observation_problem(rng.standard_normal((4, 4)))):
        Ws = [rng.standard_normal(problem.shape) * (i + 1) for i in range(5)] + [np.zeros(problem.shape)]
        along = metrics_along(Ws, problem)
        assert along["sigma"].shape == (6, min(problem.shape))
        for i, W in enumerate(Ws):
            for key, value in matrix_metrics(W, problem).items():
                np.testing.assert_allclose(along[key][i], value, rtol=1e-13, atol=1e-15, err_msg=key)
        assert set(along) == set(matrix_metrics(Ws[0], problem)) | {"sigma"}
        with monkeypatch.context() as mp:
            mp.setattr(metrics, "METRICS_BLOCK_ENTRIES", 2 * Ws[0].size)
            blocked = metrics_along(Ws, problem)
        for key in along:
            np.testing.assert_array_equal(blocked[key], along[key])
