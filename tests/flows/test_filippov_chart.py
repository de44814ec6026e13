"""The sliding segments of the depth-1 Filippov flow in the factored chart W = USVᵀ of the rank-r manifold
(``FixedRankChart``, docs/math.md "Non-smooth penalties at depth 1"): its field against the full-W field, a
closed-form leave through the chart, and a 30×30 run against the full-W path and proximal GD."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.stats import ortho_group

import flowsim.flows.filippov as filippov
from flowsim import make_penalty
from flowsim.flows import make_flow
from flowsim.flows.filippov import FilippovSpectralFlow, FixedRankChart, filippov_velocity
from flowsim.flows.proximal import proximal_gradient_run
from flowsim.initializations import init_factors
from flowsim.problems import full_observation_problem, synthetic_problem
from flowsim.simulate import simulate


@pytest.mark.parametrize("spec", ["nuclear", "ratio", "schatten:1:3", "schatten:1/2:2/3"])
def test_chart_velocity_is_the_sliding_filippov_velocity(spec):
    """d/dt (USVᵀ) along the chart field equals filippov_velocity at a rank-4 W whose null block slides."""
    problem = synthetic_problem(40, 30, rank=3, observed=500, seed=1)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((40, 4)) @ rng.standard_normal((4, 30))
    flow = FilippovSpectralFlow(problem, make_penalty(spec), 50.0)
    flow.rank = 4
    chart = FixedRankChart(flow, W)
    assert chart.null_gradient_excess(chart.z0) < 0
    assert chart.null_gradient_excess(chart.z0) == pytest.approx(flow.null_gradient_excess(W.ravel()))
    assert np.allclose(chart.decode(chart.z0), W.ravel(), atol=1e-12)
    dz, eps = chart(0.0, chart.z0), 1e-6
    v_chart = (chart.decode(chart.z0 + eps * dz) - chart.decode(chart.z0 - eps * dz)) / (2 * eps)
    v_full = filippov_velocity(W, problem, flow.penalty, flow.lam, 4).ravel()
    assert np.max(np.abs(v_chart - v_full)) < 1e-7 * np.max(np.abs(v_full))


@pytest.mark.slow
def test_ratio_leave_event_in_the_chart_matches_the_closed_form():
    """30×30, ½-type loss on all entries, W* = Q₁ diag(3, 0.4, 0, …) Q₂ᵀ, W(0) = Q₁ diag(0.1, 0, …) Q₂ᵀ,
    ratio λ = 1 (the 2×2 closed form of test_filippov.py, embedded): σ₁ = 3 − 2.9e^{−t} slides at rank 1 in
    the chart until the null block leaves at t* = ln 5.8; then both σ follow the two-scalar ODE."""
    Q1, Q2 = ortho_group.rvs(30, random_state=4), ortho_group.rvs(30, random_state=5)
    s_star = np.zeros(30)
    s_star[:2] = [3.0, 0.4]
    s0 = np.zeros(30)
    s0[0] = 0.1
    # the "sum" loss with c = ½ on every entry is ½‖W − W*‖_F²
    problem = full_observation_problem(Q1 @ np.diag(s_star) @ Q2.T)
    problem = type(problem)(problem.W_star, problem.mask, reduction="sum", scale=0.5)
    flow = make_flow("gf", problem, 1, make_penalty("ratio"), 1.0)
    t = np.linspace(0, 4, 41)
    traj = simulate(flow, [Q1 @ np.diag(s0) @ Q2.T], t_eval=t, rtol=1e-10, atol=1e-12)
    assert traj.status == "ok" and traj.stats["segment_counts"]["chart"] >= 1
    t_star = np.log(5.8)
    kinds = [(e["kind"], e["t"]) for e in traj.stats["events"]]
    assert kinds[0][0] == "leaves_zero" and kinds[0][1] == pytest.approx(t_star, abs=1e-6)
    assert kinds[-1][0] == "rank_up" and traj.stats["rank_final"] == 2
    assert np.allclose(traj.sigma[t < t_star, 0], 3 - 2.9 * np.exp(-t[t < t_star]), atol=1e-7)
    assert np.all(traj.sigma[t < t_star, 1:] < 1e-13)

    def rhs(_, sig):
        fro, nuc = np.linalg.norm(sig), np.sum(sig)
        return s_star[:2] - sig - (1 / fro - nuc * sig / fro**3)

    ref = solve_ivp(rhs, (t_star, 4.0), [3 - 0.5, 0.0], t_eval=t[t > t_star], rtol=1e-12, atol=1e-14)
    assert np.allclose(traj.sigma[t > t_star, :2], ref.y.T, atol=1e-5)


@pytest.mark.slow
def test_mid_size_run_through_the_chart_against_full_segments_and_proximal_gd(monkeypatch):
    """30×30, rank 2, 300 observed, ratio λ = 20, T = 2: 27 singular values reach 0 and the last segments
    (rank ≤ 7) run in the chart. σ(T) equals the full-W path to 1e-9·σ₁ and proximal GD's Richardson
    extrapolation (η = 4e-4, 2e-4) to 5e-6·σ₁ (the default zero level's second-order error included);
    proximal GD itself converges at order 1."""
    problem = synthetic_problem(30, 30, rank=2, observed=300, seed=4)
    W0 = init_factors("gaussian", problem.shape, 1, 1.0, seed=4)
    pen, lam, T = make_penalty("ratio"), 20.0, 2.0
    times = np.array([0.0, 0.5, 1.0, T])
    traj = simulate(make_flow("gf", problem, 1, pen, lam), W0, t_eval=times)
    assert traj.status == "ok" and traj.stats["segment_counts"]["chart"] >= 3
    assert traj.stats["rank_final"] == 3 and traj.stats["event_counts"]["sigma_to_zero"] == 27
    monkeypatch.setattr(filippov, "CHART_MIN_SIZE", 10**6)
    full = simulate(make_flow("gf", problem, 1, pen, lam), W0, t_eval=times)
    assert full.stats["segment_counts"]["chart"] == 0
    s = traj.sigma[-1]
    assert np.max(np.abs(full.sigma - traj.sigma)) < 1e-9 * s[0]
    gd = [np.linalg.svd(proximal_gradient_run(problem, W0[0], pen, lam, lr, [T])[1][-1], compute_uv=False)
          for lr in (4e-4, 2e-4)]
    err = [np.max(np.abs(g - s)) / s[0] for g in gd]
    assert err[1] < 0.6 * err[0]
    assert np.max(np.abs(2 * gd[1] - gd[0] - s)) / s[0] < 5e-6
    assert np.all(gd[1][s == 0] < 1e-12)
