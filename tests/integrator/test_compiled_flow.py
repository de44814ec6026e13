"""The compiled (numba) layer-wise gradient flow: its vector field against the Python field and torch
autograd, its DOP853 loop against scipy's DOP853 (same steps, same evaluations, same states to the
tolerance), the engine choice, and budgets / divergence / non-finite behaviour against the scipy path."""

import numpy as np
import pytest
import torch

from flowsim import LayerwiseFlow, init_factors, make_penalty, simulate, synthetic_problem
from flowsim.errors import BadInputError
from flowsim.flows.gradient import FactorPacker
from flowsim.integrator import engine_for, integrate, log_time_grid
from flowsim.integrator.compiled import AUTO_MAX_STATE

pytest.importorskip("numba")

from flowsim.integrator.compiled.field import layerwise_field  # noqa: E402
from flowsim.integrator.compiled.solve import FieldArrays, solve_compiled  # noqa: E402

PENALTIES = [("none", 0.0), ("ratio", 0.3), ("nuclear", 0.05), ("schatten:1/2:2/3", 0.2)]


def _torch_velocity(factors, problem, penalty, lam):
    """−∇_{W_j}(ℓ + λR)(W_N⋯W_1) by torch autograd, R from the singular values (independent reference)."""
    ts = [torch.tensor(F, dtype=torch.float64, requires_grad=True) for F in factors]
    W = ts[0]
    for F in ts[1:]:
        W = F @ W
    M = torch.tensor(problem.mask, dtype=torch.float64)
    loss = problem.scale * torch.sum((M * (W - torch.tensor(problem.W_star))) ** 2) / problem.denominator
    if lam:
        s = torch.linalg.svdvals(W)
        if penalty == "ratio":
            loss = loss + lam * s.sum() / torch.sqrt((s**2).sum())
        elif penalty == "nuclear":
            loss = loss + lam * s.sum()
        else:  # schatten p = 1/2, q = 2/3
            loss = loss + lam * (s**0.5).sum() ** 2 / (s ** (2 / 3)).sum() ** 1.5
    loss.backward()
    return np.concatenate([-t.grad.numpy().ravel() for t in ts])


@pytest.mark.parametrize("penalty,lam", PENALTIES)
@pytest.mark.parametrize("dims", [[5, 5], [4, 6, 3], [5, 3, 4, 6], [3, 4, 4, 2, 5]])
def test_compiled_field_matches_python_field_and_autograd(dims, penalty, lam):
    rng = np.random.default_rng(len(dims))
    factors = [rng.standard_normal((dims[j + 1], dims[j])) for j in range(len(dims) - 1)]
    problem = synthetic_problem(dims[-1], dims[0], rank=1, observed=dims[0] * dims[-1] // 2 + 1, seed=3)
    flow = LayerwiseFlow(problem, len(factors), make_penalty(penalty), lam)
    y = flow.initial_state(factors)
    out = np.empty_like(y)
    layerwise_field(y, out, *FieldArrays.build(problem, dims, flow.penalty, lam).args())
    np.testing.assert_allclose(out, flow(0.0, y), rtol=1e-12, atol=1e-13)
    if penalty.startswith("schatten") and min(dims) < min(dims[0], dims[-1]):
        return  # rank-deficient W: at σ = 0 the Schatten gradient is flowsim's floor convention
    np.testing.assert_allclose(out, _torch_velocity(factors, problem, penalty, lam), rtol=1e-9, atol=1e-11)


def _setup(depth=3, size=8, penalty="none", lam=0.0, init="gaussian", scale=1e-2):
    problem = synthetic_problem(size, size, rank=2, observed=size * size // 2, seed=1)
    factors = init_factors(init, problem.shape, depth, scale, seed=1)
    return problem, factors, make_penalty(penalty), lam


@pytest.mark.parametrize("penalty,lam,t_end",
                         [("none", 0.0, 1e3), ("ratio", 0.1, 1.0), ("nuclear", 0.05, 1.0)])
def test_compiled_dop853_takes_scipys_steps(penalty, lam, t_end):
    # a penalized flow from a tiny W is stiff (the ratio gradient grows like 1/‖W‖_F): start at scale 0.3
    problem, factors, pen, lam = _setup(penalty=penalty, lam=lam, scale=0.3 if lam else 1e-2)
    flow = LayerwiseFlow(problem, 3, pen, lam, engine="scipy")
    y0 = flow.initial_state(factors)
    grid = log_time_grid(t_end, 40)
    ref = integrate(flow, y0, grid)
    got = solve_compiled(FieldArrays.build(problem, flow.packer.dims, pen, lam), y0, grid)
    assert got.status == ref.status == "ok" and got.message == ref.message
    assert (got.nsteps, got.nfev) == (ref.nsteps, ref.nfev)  # same step-size control and dense output
    np.testing.assert_array_equal(got.t, ref.t)
    scale = np.max(np.abs(ref.y), axis=1, keepdims=True)
    assert np.max(np.abs(got.y - ref.y) / scale) < 1e-9


@pytest.mark.slow
def test_simulate_engines_agree_and_record_the_engine():
    problem, factors, _, _ = _setup(size=10)
    trajs = {e: simulate(LayerwiseFlow(problem, 3, engine=e), factors, 1e4, n_save=50)
             for e in ("scipy", "numba", "auto")}
    assert trajs["scipy"].stats["engine"] == "scipy"
    assert trajs["numba"].stats["engine"] == trajs["auto"].stats["engine"] == "numba"
    np.testing.assert_array_equal(trajs["numba"].sigma, trajs["auto"].sigma)
    np.testing.assert_allclose(trajs["numba"].sigma, trajs["scipy"].sigma, rtol=1e-7, atol=1e-10)
    assert trajs["numba"].stats["nfev"] == trajs["scipy"].stats["nfev"]


def test_auto_engine_rule(monkeypatch):
    import flowsim.integrator.dispatch as dispatch

    problem, factors, _, _ = _setup()
    flow = LayerwiseFlow(problem, 3)
    y0 = flow.initial_state(factors)
    monkeypatch.setattr(dispatch, "AUTO_PICKS_NUMBA", False)
    assert engine_for(flow, y0.size) == "scipy"  # the switch
    monkeypatch.setattr(dispatch, "AUTO_PICKS_NUMBA", True)
    assert engine_for(flow, y0.size) == "numba"
    assert engine_for(flow, AUTO_MAX_STATE + 1) == "scipy"
    assert engine_for(flow, y0.size, "RK45") == "scipy"
    assert engine_for(flow, y0.size, events=[lambda t, y: 1.0]) == "scipy"
    assert engine_for(flow, y0.size, events=None) == "numba"
    forced = LayerwiseFlow(problem, 3, engine="numba")
    forced.initial_state(factors)
    with pytest.raises(BadInputError):
        engine_for(forced, y0.size, "RK45")
    with pytest.raises(BadInputError):
        LayerwiseFlow(problem, 3, engine="gpu")
    monkeypatch.setattr(LayerwiseFlow, "__call__", lambda self, t, y: -y)  # a replaced field: not compiled
    assert engine_for(flow, y0.size) == "scipy"


def _both(problem, factors, pen, lam, grid, **kw):
    flow = LayerwiseFlow(problem, len(factors), pen, lam, engine="scipy")
    y0 = flow.initial_state(factors)
    return (integrate(flow, y0, grid, **kw),
            solve_compiled(FieldArrays.build(problem, flow.packer.dims, pen, lam), y0, grid, **kw))


def test_step_budget_and_blowup_match_scipy_path():
    problem, factors, pen, lam = _setup()
    grid = log_time_grid(1e4, 60)
    ref, got = _both(problem, factors, pen, lam, grid, max_steps=50)
    assert got.status == ref.status == "failed" and got.message == ref.message
    assert len(got.t) == len(ref.t) and got.nsteps == 50
    ref, got = _both(problem, factors, pen, lam, grid, blowup=0.5)  # the factors grow past 0.5
    assert got.status == ref.status == "diverged" and got.message == ref.message
    assert len(got.t) == len(ref.t) > 1
    np.testing.assert_allclose(got.y, ref.y, rtol=1e-8, atol=1e-12)


def test_wall_time_budget_stops_with_partial_results():
    problem, factors, pen, lam = _setup()
    flow = LayerwiseFlow(problem, 3)
    y0 = flow.initial_state(factors)
    res = solve_compiled(FieldArrays.build(problem, flow.packer.dims, pen, lam), y0, log_time_grid(1e6, 100),
                         max_wall_time=0.0, chunk_steps=5)
    assert res.status == "failed" and "wall-time budget of 0 s exhausted" in res.message
    assert res.nsteps == 5 and len(res.t) >= 1


def test_non_finite_velocity_and_state():
    problem, factors, pen, lam = _setup()
    flow = LayerwiseFlow(problem, 3)
    y0 = flow.initial_state(factors)
    field = FieldArrays.build(problem, flow.packer.dims, pen, lam)
    bad = FieldArrays(field.dims, field.offs, np.full_like(field.weight, np.inf), field.w_star, field.pen)
    res = solve_compiled(bad, y0, log_time_grid(10.0, 5))
    assert res.status == "diverged" and res.message == "the velocity is not finite at the initial time t=0"
    assert len(res.t) == 1
    y_nan = y0.copy()
    y_nan[0] = np.nan
    res = solve_compiled(field, y_nan, log_time_grid(10.0, 5))
    assert res.status == "diverged" and "initial state is not finite" in res.message


def test_bad_tolerance_is_bad_input():
    problem, factors, pen, lam = _setup()
    flow = LayerwiseFlow(problem, 3)
    y0 = flow.initial_state(factors)
    with pytest.raises(BadInputError, match="--rtol"):
        solve_compiled(FieldArrays.build(problem, flow.packer.dims, pen, lam), y0, log_time_grid(1.0, 3),
                       rtol=-1.0)


def test_field_arrays_offsets_match_factor_packer():
    dims = [4, 6, 3, 5]
    fa = FieldArrays.build(synthetic_problem(5, 4, rank=1, observed=10, seed=0), dims, None, 0.0)
    np.testing.assert_array_equal(fa.offs, FactorPacker(dims).offsets)


def test_compiled_and_scipy_differ_only_by_amplified_round_off():
    """Decoupled modes at depth 5 (a sharp transition): the compiled engine's saved states differ from
    scipy's by no more than a 1e-15 relative perturbation of y0 moves scipy's own (same steps, same nfev)."""
    from flowsim import canonical_balanced_factors, full_observation_problem

    problem = full_observation_problem(np.diag([3.0, 1.5, 0.7]))
    factors = canonical_balanced_factors(np.diag([1.0, 0.6, 0.45]), 5)
    flow = LayerwiseFlow(problem, 5, engine="scipy")
    y0 = flow.initial_state(factors)
    grid = log_time_grid(3.0, 25, 0.05)
    kw = dict(rtol=1e-10, atol=1e-12)
    ref = integrate(flow, y0, grid, **kw)
    y0_perturbed = y0 * (1 + 1e-15 * np.random.default_rng(0).standard_normal(y0.size))
    perturbed = integrate(flow, y0_perturbed, grid, **kw)
    got = solve_compiled(FieldArrays.build(problem, flow.packer.dims, flow.penalty, 0.0), y0, grid, **kw)
    assert (got.nsteps, got.nfev) == (ref.nsteps, ref.nfev) == (perturbed.nsteps, perturbed.nfev)
    sensitivity = np.max(np.abs(perturbed.y - ref.y), axis=1)
    gap = np.max(np.abs(got.y - ref.y), axis=1)
    assert sensitivity.max() > 1e-10  # the transition does amplify round-off at the saved times
    assert np.all(gap <= 10 * sensitivity + 1e-14)
