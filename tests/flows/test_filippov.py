"""Depth-1 nuclear-type penalties as Filippov (minimal-norm-subgradient) flows: the field against its
definition, closed forms on orthogonally invariant problems, and the η → 0 limit of proximal GD."""

import json

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.stats import ortho_group

from flowsim import make_penalty
from flowsim.flows import make_flow
from flowsim.flows.auto import AutoGradientFlow
from flowsim.flows.filippov import FilippovSpectralFlow, filippov_velocity, spectral_soft_threshold
from flowsim.flows.proximal import proximal_gradient_run
from flowsim.initializations import init_factors
from flowsim.problems import full_observation_problem, synthetic_problem
from flowsim.simulate import simulate


def _rotated(diagonal, Q1, Q2):
    return Q1 @ np.diag(diagonal) @ Q2.T


def _spectral_ball(rng, shape, radius=1.0):
    Z = rng.standard_normal(shape)
    return radius * rng.uniform(0, 1) * Z / np.linalg.norm(Z, 2)


def test_soft_threshold_is_the_minimal_norm_point_of_the_shifted_ball():
    rng = np.random.default_rng(0)
    N = rng.standard_normal((5, 4))
    tau = 0.6 * np.linalg.norm(N, 2)
    S = spectral_soft_threshold(N, tau)
    assert np.linalg.norm((N - S) / tau, 2) <= 1 + 1e-12  # S = N − τZ with ‖Z‖₂ ≤ 1
    best = min(np.linalg.norm(N - tau * _spectral_ball(rng, N.shape)) for _ in range(2000))
    assert np.linalg.norm(S) <= best
    assert not np.any(spectral_soft_threshold(N, 1.01 * np.linalg.norm(N, 2)))
    assert not np.any(spectral_soft_threshold(N, np.inf))


@pytest.mark.parametrize("spec", ["nuclear", "ratio", "schatten:1:3"])
def test_velocity_is_the_minimal_norm_subgradient(spec):
    """−Ẇ ∈ ∂(ℓ + λR)(W) at a rank-2 W, and no other element of ∂ sampled is shorter."""
    rng = np.random.default_rng(1)
    problem = synthetic_problem(6, 5, rank=2, observed=20, seed=1)
    W = rng.standard_normal((6, 2)) @ rng.standard_normal((2, 5))
    pen, lam = make_penalty(spec), 0.05
    xi = -filippov_velocity(W, problem, pen, lam, rank=2)
    U, s, Vt = np.linalg.svd(W)
    Ur, Vr, U0, V0 = U[:, :2], Vt[:2].T, U[:, 2:], Vt[2:].T
    smooth = problem.grad(W) + lam * (Ur * pen.active_spectral_grad(s[:2])) @ Vr.T
    tau = lam * pen.null_threshold(s[:2])
    Z = U0.T @ (xi - smooth) @ V0 / tau
    assert np.allclose(U0 @ U0.T @ (xi - smooth) @ V0 @ V0.T, xi - smooth, atol=1e-14)
    assert np.linalg.norm(Z, 2) <= 1 + 1e-12
    others = [np.linalg.norm(smooth + tau * U0 @ _spectral_ball(rng, (4, 3)) @ V0.T) for _ in range(2000)]
    assert np.linalg.norm(xi) <= min(others)


def test_nuclear_singular_values_reach_zero_and_slide_as_the_closed_form():
    """½‖W − W*‖², W* = Q₁ diag(3, 0.4, 0) Q₂ᵀ: σ_i(t) = (s_i − λ) + (σ_i(0) − s_i + λ)e^{−t} until 0, then
    0 for good (|s_i| < λ): events at ln(1.5) and ln(8/3) for λ = 1."""
    Q1, Q2 = ortho_group.rvs(3, random_state=2), ortho_group.rvs(3, random_state=3)
    problem = full_observation_problem(_rotated([3.0, 0.4, 0.0], Q1, Q2))
    flow = make_flow("gf", problem, 1, make_penalty("nuclear"), 1.0)
    assert isinstance(flow, FilippovSpectralFlow)
    t = np.linspace(0, 3, 31)
    traj = simulate(flow, [_rotated([1.0, 1.0, 0.5], Q1, Q2)], t_eval=t, rtol=1e-10, atol=1e-12)
    assert traj.status == "ok"
    zero_times = [e["t"] for e in traj.stats["events"] if e["kind"] == "sigma_to_zero"]
    assert zero_times == pytest.approx([np.log(1.5), np.log(8 / 3)], abs=1e-6)
    expected = np.maximum(np.array([2.0, -0.6, -1.0]) + np.array([-1.0, 1.6, 1.5]) * np.exp(-t)[:, None], 0)
    assert np.allclose(traj.sigma, expected, atol=2e-6)
    assert np.all(traj.sigma[t > 1.0, 1:] == pytest.approx(0, abs=1e-14))
    assert traj.stats["rank_final"] == 1


def test_ratio_zero_singular_value_leaves_when_the_threshold_drops_below_the_gradient():
    """½‖W − W*‖², W* ~ diag(3, 0.4), W(0) ~ diag(0.1, 0), ratio λ = 1. At rank 1 R ≡ 1, so
    σ₁ = 3 − 2.9e^{−t}; the null block stays while 0.4 ≤ τ = 1/σ₁, i.e. until t* = ln 5.8; afterwards both
    σ follow σ̇_i = s_i − σ_i − (1/‖σ‖₂ − ‖σ‖₁σ_i/‖σ‖₂³) (reference: solve_ivp on the two scalars)."""
    Q1, Q2 = ortho_group.rvs(2, random_state=4), ortho_group.rvs(2, random_state=5)
    s_star = np.array([3.0, 0.4])
    problem = full_observation_problem(_rotated(s_star, Q1, Q2))
    t = np.linspace(0, 4, 41)
    flow = make_flow("gf", problem, 1, make_penalty("ratio"), 1.0)
    traj = simulate(flow, [_rotated([0.1, 0.0], Q1, Q2)], t_eval=t, rtol=1e-10, atol=1e-12)
    assert traj.status == "ok"
    t_star = np.log(5.8)
    kinds = [(e["kind"], e["t"]) for e in traj.stats["events"]]
    assert kinds[0][0] == "leaves_zero" and kinds[0][1] == pytest.approx(t_star, abs=1e-6)
    assert kinds[1][0] == "rank_up" and traj.stats["rank_final"] == 2

    def rhs(_, sig):
        fro, nuc = np.linalg.norm(sig), np.sum(sig)
        return s_star - sig - (1 / fro - nuc * sig / fro**3)

    ref = solve_ivp(rhs, (t_star, 4.0), [3 - 0.5, 0.0], t_eval=t[t > t_star], rtol=1e-12, atol=1e-14)
    assert np.allclose(traj.sigma[t > t_star], ref.y.T, atol=1e-5)
    assert np.all(traj.sigma[t < t_star - 1e-3, 1] < 1e-14)  # exactly 0 up to the rotation's round-off
    assert np.allclose(traj.sigma[t < t_star, 0], 3 - 2.9 * np.exp(-t[t < t_star]), atol=1e-7)


def test_schatten_below_one_keeps_a_zero_singular_value_whatever_the_gradient():
    """p = ½ < q: the one-sided slope of R at σ = 0 is infinite (threshold +inf), so with W* ~ diag(3, 2) the
    zero σ₂ never leaves and σ₁ = 3 − 2e^{−t} (R ≡ 1 at rank 1); with p = 1 (schatten:1:2, the ratio) it
    leaves."""
    Q1, Q2 = ortho_group.rvs(2, random_state=6), ortho_group.rvs(2, random_state=7)
    problem = full_observation_problem(_rotated([3.0, 2.0], Q1, Q2))
    W0 = [_rotated([1.0, 0.0], Q1, Q2)]
    t = np.linspace(0, 3, 13)
    pen = make_penalty("schatten:1/2:2/3")
    assert pen.null_threshold(np.array([1.0])) == np.inf
    traj = simulate(make_flow("gf", problem, 1, pen, 0.1), W0, t_eval=t, rtol=1e-10, atol=1e-12)
    assert traj.status == "ok" and traj.stats["event_counts"]["rank_up"] == 0
    assert np.all(traj.sigma[:, 1] < 1e-14)
    assert np.allclose(traj.sigma[:, 0], 3 - 2 * np.exp(-t), atol=1e-8)
    ratio = simulate(make_flow("gf", problem, 1, make_penalty("schatten:1:2"), 0.1), W0, t_eval=t)
    assert ratio.stats["event_counts"]["rank_up"] == 1 and ratio.sigma[-1, 1] > 1.0


@pytest.mark.parametrize("spec, lam, tol", [("ratio", 2.0, 1e-8), ("nuclear", 0.3, 1e-8),
                                            ("schatten:1:3", 2.0, 1e-8), ("schatten:1/2:2/3", 2.0, 2e-6)])
@pytest.mark.slow
def test_flow_is_the_small_step_limit_of_proximal_gradient_descent(spec, lam, tol, square_problem):
    """8×8, rank 2, 30 observed, σ reaching 0 before T = 0.5: proximal GD at η and η/2 converges to the flow
    at order 1 (error halves) and its Richardson extrapolation 2W(η/2) − W(η) equals the flow's σ(T). For
    p < 1 σ arrives at 0 with infinite speed (σ ~ (t* − t)^{1/(2−p)}), so GD converges at a lower order
    there and the extrapolation is looser."""
    problem = square_problem
    W0 = init_factors("gaussian", problem.shape, 1, 1.0, seed=1)
    pen = make_penalty(spec)
    gd = [np.linalg.svd(proximal_gradient_run(problem, W0[0], pen, lam, lr, [0.5])[1][-1], compute_uv=False)
          for lr in (2e-4, 1e-4)]
    # a low zero level for the exact limit; the default level's second-order error stays below 1e-6·σ₁
    for flow, limit_tol in ((FilippovSpectralFlow(problem, pen, lam, zero_tol=1e-6), tol),
                            (make_flow("gf", problem, 1, pen, lam), max(tol, 1e-6))):
        traj = simulate(flow, W0, t_eval=np.array([0.0, 0.5]), rtol=1e-10, atol=1e-12)
        assert traj.status == "ok" and traj.stats["event_counts"]["sigma_to_zero"] >= 1
        s = traj.sigma[-1]
        err = [np.max(np.abs(g - s)) / s[0] for g in gd]
        assert err[1] < 0.6 * err[0]
        assert np.max(np.abs(2 * gd[1] - gd[0] - s)) / s[0] < limit_tol
        assert np.all(gd[1][s == 0] < 1e-12)  # GD's prox keeps the same singular values at 0


def test_auto_model_picks_the_filippov_flow_at_depth_one_only():
    problem = synthetic_problem(6, 6, rank=2, observed=20, seed=0)
    auto = make_flow("gf", problem, 1, make_penalty("ratio"), 0.5, model="auto")
    assert isinstance(auto, AutoGradientFlow)
    auto.initial_state(init_factors("gaussian", problem.shape, 1, 1.0, seed=0))
    assert auto.formulation == "filippov" and auto.describe()["formulation"] == "filippov"
    deep = make_flow("gf", problem, 2, make_penalty("ratio"), 0.5, model="auto")
    deep.initial_state(init_factors("balanced-gaussian", problem.shape, 2, 1.0, seed=0))
    assert deep.formulation == "end-product"
    smooth = make_flow("gf", problem, 1, make_penalty("schatten:2:3"), 0.5, model="end-product")
    assert not isinstance(smooth, FilippovSpectralFlow)
    assert not isinstance(make_flow("gf", problem, 1, make_penalty("ratio"), 0.0), FilippovSpectralFlow)


def test_cli_run_reaches_t_end_and_records_its_events(tmp_path, capsys):
    from tests.conftest import run_cli_inprocess

    out = tmp_path / "run"
    res = run_cli_inprocess(["simulate", "--size", 12, "--rank", 2, "--observed", 70, "--depth", 1,
                             "--init", "gaussian", "--init-scale", 1, "--seed", 3, "--penalty", "ratio",
                             "--lam", 2, "--t-end", 4, "--n-save", 30, "--quiet", "--no-plot",
                             "--out", out], capsys)
    assert res.code == 0, res.err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "ok" and info["stats"]["formulation"] == "filippov"
    counts = info["stats"]["event_counts"]
    assert counts["sigma_to_zero"] == 8 and info["stats"]["rank_final"] == 4
    zero = [e for e in info["stats"]["events"] if e["kind"] == "sigma_to_zero"]
    assert [e["index"] for e in zero] == list(range(11, 3, -1))
    assert all(0 < e["t"] < 4 for e in zero) and zero == sorted(zero, key=lambda e: e["t"])
    with np.load(out / "trajectory.npz") as z:
        assert z["t"][-1] == 4.0 and np.all(z["sigma"][-1, 4:] < 1e-12)


def test_nuclear_flow_from_zero_grows_every_direction_above_the_threshold_at_once():
    """W(0) = 0, ½‖W − W*‖², W* ~ diag(3, 0.4, 0.05), λ = 0.2: σ_i(t) = max(s_i − λ, 0)(1 − e^{−t}); the two
    directions with s_i > λ leave 0 together and the third stays."""
    Q1, Q2 = ortho_group.rvs(3, random_state=8), ortho_group.rvs(3, random_state=9)
    s_star = np.array([3.0, 0.4, 0.05])
    problem = full_observation_problem(_rotated(s_star, Q1, Q2))
    t = np.linspace(0, 2, 21)
    traj = simulate(make_flow("gf", problem, 1, make_penalty("nuclear"), 0.2), [np.zeros((3, 3))], t_eval=t,
                    rtol=1e-10, atol=1e-12)
    assert traj.status == "ok" and traj.stats["rank_final"] == 2
    assert traj.stats["event_counts"]["rank_up"] == 2
    expected = np.maximum(s_star - 0.2, 0) * (1 - np.exp(-t))[:, None]
    assert np.allclose(traj.sigma, expected, atol=1e-6)


def test_a_leaving_singular_value_is_one_event():
    """12×12, rank 2, 70 observed, ratio λ = 0.1: three zero singular values leave the null block before
    t = 20. Each leave is one ``leaves_zero`` event followed by its ``rank_up`` (the segment after the event
    starts unconstrained: at the located crossing the excess is round-off, and sliding again there would
    leave again at once, an empty segment and a duplicate event)."""
    problem = synthetic_problem(12, 12, 2, 70, 0)
    flow = make_flow("gf", problem, 1, make_penalty("ratio"), 0.1)
    traj = simulate(flow, init_factors("gaussian", (12, 12), 1, 1e-2, 0), t_eval=np.linspace(0, 20, 41))
    assert traj.status == "ok"
    kinds = [e["kind"] for e in traj.stats["events"]]
    leaves = [i for i, k in enumerate(kinds) if k == "leaves_zero"]
    assert len(leaves) == traj.stats["event_counts"]["leaves_zero"] == 3
    assert all(kinds[i + 1] == "rank_up" for i in leaves)
