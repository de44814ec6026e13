"""The Adam-type layer flows at the kink of a nuclear-type penalty (σ_min(W) = 0): the moment-averaged
sliding rule of :mod:`flowsim.flows.adam_sliding`.

References: the two-point average over the chattering sign (a second formulation of the averaged moments),
the end-product velocity Σ_j W_{N:j+1}Ẇ_jW_{j−1:1} formed explicitly, and discrete Adam with fixed β at
tiny η (the limit the rule models).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowsim.factors import end_product
from flowsim.flows import make_flow
from flowsim.flows.adam_sliding import (
    DRIFT_RATE,
    NULL_TOL,
    RULE_DERIVATIVE,
    SlidingPieces,
    averaged_moments,
    kink_margin,
    moments_derivative,
    moments_mu_derivative,
    null_block,
    sign_rule,
    sliding_control,
    sliding_pieces,
    sliding_velocity,
    variance_rule,
)
from flowsim.initializations import init_factors
from flowsim.integrator import solve_flow
from flowsim.penalties import make_penalty
from flowsim.problems import synthetic_problem
from flowsim.validation.train import train

RATIO = make_penalty("ratio")


def _pieces(rng: np.random.Generator) -> SlidingPieces:
    shapes = [(4, 3), (5, 4)]
    return SlidingPieces([rng.standard_normal(s) for s in shapes],
                         [rng.standard_normal(s[0]) for s in shapes],
                         [rng.standard_normal(s[1]) for s in shapes], radius=0.7)


@pytest.mark.parametrize("mu", [-1.0, -0.35, 0.0, 0.8, 1.0])
def test_averaged_moments_are_the_two_point_average(mu):
    """E[g] and E[g⊙g] over z = ±1 with P(z = ±1) = (1 ± μ)/2, g(z) = g⁰ + λc·z·abᵀ, summed explicitly."""
    p = _pieces(np.random.default_rng(3))
    for (mean, second), g0, a, b in zip(averaged_moments(p, mu), p.g0, p.A, p.B):
        sides = [(0.5 * (1 + z * mu), g0 + p.radius * z * np.outer(a, b)) for z in (1.0, -1.0)]
        np.testing.assert_allclose(mean, sum(w * g for w, g in sides), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(second, sum(w * g * g for w, g in sides), rtol=1e-13, atol=1e-14)


def _state_at_kink(depth: int, seed: int) -> tuple[object, list[np.ndarray]]:
    """A 4×4 problem and layer factors whose end product has exactly one zero singular value."""
    prob = synthetic_problem(4, 4, 1, 10, seed)
    factors = init_factors("gaussian", prob.shape, depth, 1.0, seed)
    U, s, Vt = np.linalg.svd(end_product(factors))
    v0 = Vt[-1]
    factors[0] = factors[0] - np.outer(factors[0] @ v0, v0)  # W v₀ = 0
    return prob, factors


@pytest.mark.parametrize("flow_name, rule", [("adam-sign", sign_rule), ("adam-layer", variance_rule)])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_sliding_rule_keeps_the_null_block_at_zero(flow_name, rule, depth):
    """At a state with σ_min(W) = 0 and a penalty strong enough to hold it, the flow's field is the
    averaged rule at the root μ of the sliding condition: the end-product velocity
    Ẇ = Σ_j W_{N:j+1}Ẇ_jW_{j−1:1} (formed here from the returned layer velocities) has
    u₀ᵀẆv₀ = −DRIFT_RATE·σ_min, and μ agrees with a bisection on that explicit velocity."""
    prob, factors = _state_at_kink(depth, seed=3)  # a seed where λ = 2 holds σ_min at 0 at every depth
    lam = 2.0
    flow = make_flow(flow_name, prob, depth, RATIO, lam, "layers")
    y = flow.initial_state(factors)
    W = end_product(factors)
    block = null_block(W, RATIO, lam)
    assert block is not None and block.shape == (1, 1)
    vel = flow.layer_factors(flow(0.0, y))  # the packed velocity, unpacked like the state

    pre = [end_product(factors[:j]) if j else np.eye(4) for j in range(depth)]  # W_{j−1:1}
    suf = [end_product(factors[j + 1:]) if j < depth - 1 else np.eye(4) for j in range(depth)]  # W_{N:j+1}

    def W_dot(layer_vels: list[np.ndarray]) -> np.ndarray:
        return sum(suf[j] @ layer_vels[j] @ pre[j] for j in range(depth))

    u0, v0 = block.U0[:, 0], block.V0[:, 0]
    target = -DRIFT_RATE * float(block.s0[0])
    assert abs(u0 @ W_dot(vel) @ v0 - target) < 1e-10

    # the same μ by bisection on the velocity formed from the two-point average of the layer gradients
    G0 = prob.grad(W) + lam * (block.U_r * RATIO.active_spectral_grad(block.s_r)) @ block.Vt_r
    radius = lam / np.linalg.norm(block.s_r)

    def null_rate(mu: float) -> float:
        vels = []
        for j in range(depth):
            sides = [(0.5 * (1 + z * mu), suf[j].T @ (G0 + radius * z * np.outer(u0, v0)) @ pre[j].T)
                     for z in (1.0, -1.0)]
            vels.append(rule(sum(w * g for w, g in sides), sum(w * g * g for w, g in sides), flow.eps))
        return float(u0 @ W_dot(vels) @ v0) - target

    lo, hi = -1.0, 1.0
    assert null_rate(lo) > 0 > null_rate(hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if null_rate(mid) > 0 else (lo, mid)
    mu, what = sliding_control(sliding_pieces(factors, prob.grad(W), RATIO, lam, block), rule, flow.eps)
    assert what == "slides" and abs(mu - 0.5 * (lo + hi)) < 1e-10


@pytest.mark.parametrize("flow_name, rule", [("adam-sign", sign_rule), ("adam-layer", variance_rule)])
def test_kink_jacobian_matches_differences_through_the_root(flow_name, rule):
    """The implicit-function Jacobian of the sliding field against central differences of the whole field,
    root solve included (null dimension held fixed), at a depth-2 state on the kink."""
    prob, factors = _state_at_kink(2, seed=3)
    lam = 2.0
    flow = make_flow(flow_name, prob, 2, RATIO, lam, "layers")
    y = flow.initial_state(factors)
    J = flow.jac(0.0, y)

    def field(yx: np.ndarray) -> np.ndarray:
        Fs = flow.layer_factors(yx)
        Wx = end_product(Fs)
        block = null_block(Wx, RATIO, lam, rank=3)
        pieces = sliding_pieces(Fs, prob.grad(Wx), RATIO, lam, block)
        mu, what = sliding_control(pieces, rule, flow.eps)
        assert what == "slides"
        return np.concatenate([v.ravel() for v in sliding_velocity(pieces, mu, rule, flow.eps)])

    ref = np.empty_like(J)
    h = 1e-5
    for i in range(y.size):
        e = np.zeros_like(y)
        e[i] = h
        ref[:, i] = (field(y + e) - field(y - e)) / (2 * h)
    np.testing.assert_allclose(J, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def _shifted(p: SlidingPieces, dp: SlidingPieces, s: float) -> SlidingPieces:
    return SlidingPieces([g + s * d for g, d in zip(p.g0, dp.g0)], [a + s * d for a, d in zip(p.A, dp.A)],
                         [b + s * d for b, d in zip(p.B, dp.B)], p.radius + s * dp.radius)


@pytest.mark.parametrize("mu", [-0.6, 0.3, 1.0])
def test_moment_derivatives_match_central_differences(mu):
    """The product-rule change of the averaged moments along a move of the pieces, and their μ-derivative,
    against central differences of ``averaged_moments`` (smooth, generic pieces)."""
    rng = np.random.default_rng(5)
    p, dp = _pieces(rng), _pieces(rng)
    h = 1e-6
    plus, minus = averaged_moments(_shifted(p, dp, h), mu), averaged_moments(_shifted(p, dp, -h), mu)
    for (dm, ds), (m1, s1), (m0, s0) in zip(moments_derivative(p, dp, mu), plus, minus):
        np.testing.assert_allclose(dm, (m1 - m0) / (2 * h), rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(ds, (s1 - s0) / (2 * h), rtol=1e-7, atol=1e-8)
    if abs(mu) < 1:
        plus, minus = averaged_moments(p, mu + h), averaged_moments(p, mu - h)
        for (dm, ds), (m1, s1), (m0, s0) in zip(moments_mu_derivative(p, mu), plus, minus):
            np.testing.assert_allclose(dm, (m1 - m0) / (2 * h), rtol=1e-7, atol=1e-8)
            np.testing.assert_allclose(ds, (s1 - s0) / (2 * h), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("rule", [sign_rule, variance_rule])
def test_rule_derivatives_inside_the_eps_layer(rule):
    """The exact derivative of each rule in the moments, against central differences (for the entry in the
    ε-layer at a step far below ε), at moments where one averaged entry of g is 3e-9 with no spread (ε = 1e-8,
    where the sign field turns over). A forward difference at the sliding Jacobian's state step (1e-7) is
    wrong there by most of its size — the reason the Jacobian differences the pieces, not the moments."""
    rng = np.random.default_rng(7)
    eps = 1e-8
    mean = rng.standard_normal((3, 4))
    mean[1, 2] = 3e-9
    spread = rng.uniform(0.1, 1.0, (3, 4))
    spread[1, 2] = 0.0
    d_mean = rng.standard_normal((3, 4))
    d_spread = rng.standard_normal((3, 4))
    d_spread[1, 2] = 0.0

    def at(s: float) -> np.ndarray:
        m = mean + s * d_mean
        return rule(m, m * m + spread + s * d_spread, eps)

    ref = (at(1e-6) - at(-1e-6)) / 2e-6  # O(1) entries; the stiff one at a step well inside its layer
    ref[1, 2] = (at(1e-13)[1, 2] - at(-1e-13)[1, 2]) / 2e-13
    d_second = 2 * mean * d_mean + d_spread
    got = RULE_DERIVATIVE[rule](mean, mean * mean + spread, eps, d_mean, d_second)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    if rule is variance_rule:  # the layer's variance term keeps this field smooth at the scale of g
        return
    assert abs(got[1, 2]) > 1e6  # the stiff entry of the sign rule: ≈ −|dE[g]|/ε
    crude = (at(1e-7)[1, 2] - at(0.0)[1, 2]) / 1e-7
    assert abs(crude - got[1, 2]) > 0.5 * abs(got[1, 2])  # measured: 1.2e7 against 9.1e7


@pytest.mark.parametrize("flow_name, rule", [("adam-sign", sign_rule), ("adam-layer", variance_rule)])
def test_kink_state_scan_finds_the_root(flow_name, rule):
    """The report's scan of the sliding condition over μ finds one solution at a generic state on the kink,
    the root of the rule's own solve (to the scan's spacing), and none of its entries in the ε-layer."""
    prob, factors = _state_at_kink(2, seed=3)
    flow = make_flow(flow_name, prob, 2, RATIO, 2.0, "layers")
    y = flow.initial_state(factors)
    state = flow.kink_state(y)
    assert state is not None and state["case"] == "slides"
    assert len(state["solutions"]) == 1 and abs(state["solutions"][0] - state["mu"]) <= 2.0 / 400
    assert state["F_at_minus_1"] > 0 > state["F_at_plus_1"] and state["entries_in_eps_layer"] == 0
    away = make_flow(flow_name, prob, 2, RATIO, 2.0, "layers")
    far = [f.copy() for f in factors]
    far[0] = far[0] + 0.3 * np.eye(*far[0].shape)
    assert away.kink_state(away.initial_state(far)) is None


def test_a_run_that_stops_at_the_kink_records_what_the_rule_saw():
    """The driver's report of a run that stopped at the kink carries ``at_stop`` — the flow's own account of
    the state, scan included — and a finished run does not; with a single solution the message adds no
    claim of several."""
    from flowsim.integrator.arrival import _with_kink_report
    from flowsim.integrator.result import IntegrationResult

    prob, factors = _state_at_kink(2, seed=3)
    flow = make_flow("adam-sign", prob, 2, RATIO, 2.0, "layers")
    y = flow.initial_state(factors)

    def result(status: str) -> IntegrationResult:
        return IntegrationResult(t=np.array([0.0]), y=y[None, :], status=status, message="m", t_last=0.0,
                                 nfev=0, njev=0, nlu=0, nsteps=0, method="Radau", rtol=1e-7, atol=1e-10,
                                 wall_time_s=0.0, y_last=y)

    stopped = _with_kink_report(flow, flow.kink_events(), result("failed"))
    assert stopped.extra["kink"]["at_stop"] == flow.kink_state(y)
    assert len(stopped.extra["kink"]["at_stop"]["solutions"]) == 1 and "solutions" not in stopped.message
    finished = _with_kink_report(flow, flow.kink_events(), result("ok"))
    assert "at_stop" not in finished.extra["kink"]


def test_kink_margin_and_null_block_edges():
    W = np.diag([2.0, 1.0, 0.0])
    assert kink_margin(W) == pytest.approx(1.0 - NULL_TOL * 2.0)
    assert kink_margin(np.diag([2.0, 0.0, 0.0])) < 0
    assert kink_margin(np.ones((3, 2))) < 0  # a non-square W with a zero singular value
    assert null_block(W, make_penalty("none"), 1.0) is None
    assert null_block(W, RATIO, 0.0) is None
    assert null_block(np.diag([2.0, 1.0, 0.5]), RATIO, 1.0) is None
    block = null_block(W, make_penalty("nuclear"), 0.3)
    assert block is not None and block.shape == (1, 1) and block.radius == pytest.approx(0.3)


def _adam(prob, factors, lam, eta, T):
    """W at t = T = kη of discrete Adam (flowsim's ``train``, torch.optim.Adam semantics: β = (0.9, 0.999)
    fixed, ε = 1e-8, bias-corrected)."""
    K = int(round(T / eta))
    traj = train(prob, factors, optimizer="adam", lr=eta, iters=K, penalty=RATIO, lam=lam,
                 record_iters=[0, K], save_matrices=True, progress=False)
    assert traj.status == "ok", traj.message
    return traj.W[-1]


@pytest.mark.slow
def test_adam_sign_follows_tiny_step_adam_through_the_kink():
    """4×4, rank 1, 10 observed, depth 1, Gaussian init of scale 0.5, ratio penalty λ = 0.1: σ₄(W) reaches 0
    at t ≈ 0.101 and slides there until t ≈ 0.45. At T = 0.3 discrete Adam with fixed β approaches the
    moment-averaged flow as η → 0 (measured e_W = 2.75e-2, 1.28e-2, 6.2e-3 at η = 1e-5, 3e-6, 1e-6; the
    equivalent control and Filippov's hull stay at 0.13 and 0.09)."""
    prob = synthetic_problem(4, 4, 1, 10, 0)
    factors = init_factors("gaussian", prob.shape, 1, 0.5, 0)
    flow = make_flow("adam-sign", prob, 1, RATIO, 0.1, "layers")
    res = solve_flow(flow, flow.initial_state(factors), np.array([0.0, 0.3]), rtol=1e-9, atol=1e-12)
    assert res.status == "ok", res.message
    assert res.extra["kink"]["slides"] > 0 and res.extra["kink"]["first_saved_time_at_kink"] == 0.3
    W_flow = flow.end_product(res.y[-1])
    assert np.linalg.svd(W_flow, compute_uv=False)[-1] < 1e-9
    errors = [np.linalg.norm(_adam(prob, factors, 0.1, eta, 0.3) - W_flow) / np.linalg.norm(W_flow)
              for eta in (1e-5, 3e-6)]
    assert errors[1] < 0.02 and errors[1] < 0.6 * errors[0], errors


@pytest.mark.slow
def test_a_second_zero_singular_value_is_recorded_with_its_reason(cli, tmp_path):
    """The same problem to t = 1: σ₃ reaches the kink at t ≈ 0.454 with σ₄ still there. No rule is validated
    for a 2×2 null block, so the field there is the penalty's gradient, on which the solver does not get far;
    the run ends at its wall-time budget (exit 3, one line) with the time and the reason, and keeps the
    trajectory up to there."""
    out = tmp_path / "run"
    r = cli("simulate", "--size", "4", "--rank", "1", "--observed", "10", "--depth", "1",
            "--init", "gaussian", "--init-scale", "0.5", "--seed", "0", "--flow", "adam-sign",
            "--penalty", "ratio", "--lam", "0.1", "--t-end", "1", "--n-save", "40", "--max-wall-time", "8",
            "--out", str(out), "--quiet", "--no-plot")
    assert r.code == 3 and len(r.err.strip().splitlines()) == 1
    assert "a second singular value of W reached the kink at t=0.454" in r.err
    assert "no sliding rule is validated" in r.err
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed"
    kink = run["stats"]["kink"]
    assert kink["slides"] > 0 and 0.44 < kink["larger_null_block_from"] < 0.47
    assert run["stats"]["events"][-1]["kind"] == "kink-null-block-grows"
    assert run["stats"]["t_last"] >= kink["larger_null_block_from"]
