"""The fixed-β limit of Adam (``adam-sign``) and the finite-time arrival of the Adam-type flows.

References: the closed form of the sign flow at depth 1 with full observation, torch autograd, torch's own
``torch.optim.Adam`` at small η with fixed β, and an implicit (Radau) integration from the start.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from kron_reference import autograd_layer_gradients
from scipy.optimize import brentq

from flowsim.flows import make_flow
from flowsim.flows.adam import AdamSignFlow
from flowsim.initializations import init_factors
from flowsim.integrator import STALL_FRACTION, integrate
from flowsim.penalties import make_penalty
from flowsim.problems import full_observation_problem, synthetic_problem
from flowsim.simulate import simulate


def test_adam_sign_velocity_against_autograd():
    P = synthetic_problem(6, 5, 2, 18, seed=4)
    f = init_factors("gaussian", P.shape, 3, 1.0, seed=2)
    flow = make_flow("adam-sign", P, 3, make_penalty("ratio"), 0.05, eps=1e-6)
    assert isinstance(flow, AdamSignFlow) and flow.model == "layers"
    v = flow(0.0, flow.initial_state(f))
    ref = np.concatenate([(-g / (np.abs(g) + 1e-6)).ravel() for g in autograd_layer_gradients(f, P, 0.05)])
    np.testing.assert_allclose(v, ref, rtol=1e-9, atol=1e-13)


def _sign_flow_distance(d0: float, t: float, eps: float) -> float:
    """|d(t)| for ḋ = −d/(|d| + ε): d + ε ln d = d0 + ε ln d0 − t for d > 0 (solved in u = ln d)."""
    a = abs(d0)
    c = a + eps * math.log(a) - t
    lo = min(c / eps, math.log(a)) - 50.0
    u = brentq(lambda u: math.exp(u) + eps * u - c, lo, math.log(a) + 1.0, xtol=1e-14, rtol=1e-15)
    return math.copysign(math.exp(u), d0)


@pytest.mark.slow
def test_adam_sign_depth1_closed_form_through_every_arrival():
    """N = 1, full observation, ½‖W − W*‖²: each entry moves toward W* at unit speed and arrives at
    t ≈ |W0 − W*|; the run passes all arrivals, ends ``ok`` and matches the closed form."""
    rng = np.random.default_rng(0)
    W_star = rng.standard_normal((3, 4))
    W0 = W_star + rng.uniform(0.2, 1.5, (3, 4)) * rng.choice([-1.0, 1.0], (3, 4))
    prob = full_observation_problem(W_star)
    eps = 1e-8
    flow = AdamSignFlow(prob, 1, eps=eps)
    t_end = 2.0
    grid = np.linspace(0.0, t_end, 21)
    traj = simulate(flow, [W0], t_end, t_eval=grid, rtol=1e-9, atol=1e-12, save_matrices=True, progress=False)
    assert traj.status == "ok" and traj.t[-1] == t_end, traj.message
    for t, W in zip(traj.t, traj.W):
        ref = W_star + np.array([[_sign_flow_distance(d, t, eps) for d in row] for row in W0 - W_star])
        np.testing.assert_allclose(W, ref, atol=2e-7)
    stats = traj.stats
    event, hold = stats["events"]
    assert event["kind"] == "stiff-after-arrival"
    # the last entry arrives at t ≈ max|W0 − W*| ≤ 1.5; the driver holds the state from a piece later
    assert hold["kind"] == "arrived-hold" and np.abs(W0 - W_star).max() < hold["t"] < t_end
    first_arrival = np.abs(W0 - W_star).min()
    assert first_arrival <= event["t"] <= first_arrival + 1e-3
    assert [p["method"] for p in stats["phases"]] == ["DOP853", "Radau"]
    assert stats["phases"][0]["ended"] in ("stiff", "stalled") and stats["phases"][1]["ended"] == "held"


def test_explicit_only_stalls_without_the_arrival_driver():
    """The stall is real: the plain integrator with DOP853 crawls at steps ~ε after the first arrival."""
    rng = np.random.default_rng(0)
    W_star = rng.standard_normal((2, 2))
    prob = full_observation_problem(W_star)
    flow = AdamSignFlow(prob, 1, eps=1e-8)
    y0 = flow.initial_state([W_star + 0.5])
    res = integrate(flow, y0, np.array([0.0, 1.0]), rtol=1e-9, atol=1e-12, max_steps=3000,
                    min_step=STALL_FRACTION, stall_steps=20)
    assert res.status == "stalled" and res.t_last == pytest.approx(0.5, abs=1e-4)


def _arrival_run(name: str):
    prob = synthetic_problem(3, 3, 1, 7, seed=1)
    f = init_factors("balanced-gaussian", prob.shape, 2, 1.0, seed=3)
    flow = make_flow(name, prob, 2, None, 0.0, model="layers" if name != "adam-printed" else "end-product")
    grid = np.linspace(0.0, 3.0, 11)
    traj = simulate(flow, f, 3.0, t_eval=grid, rtol=1e-8, atol=1e-11, save_matrices=True, progress=False,
                    max_wall_time=120)
    return prob, f, flow, grid, traj


@pytest.mark.slow
def test_adam_layer_arrival_continuation_matches_radau_from_the_start():
    """3×3, depth 2: adam-layer fits the 7 observed entries at t ≈ 1.34; DOP853 then meets the stiffness,
    the driver continues with Radau, and the whole run agrees with Radau integrated from t = 0."""
    prob, f, flow, grid, traj = _arrival_run("adam-layer")
    assert traj.status == "ok" and traj.t[-1] == 3.0, traj.message
    event = traj.stats["events"][0]
    assert event["kind"] == "stiff-after-arrival" and 1.2 < event["t"] < 1.45
    assert [p["method"] for p in traj.stats["phases"]] == ["DOP853", "Radau"]
    ref = integrate(flow, flow.initial_state(f), grid, method="Radau", rtol=1e-10, atol=1e-13,
                    max_wall_time=120)
    assert ref.status == "ok"
    np.testing.assert_allclose(traj.W, [flow.end_product(y) for y in ref.y], atol=1e-6)
    assert traj.loss[-1] < 1e-12  # arrived: ℓ = 0 up to round-off


@pytest.mark.slow
def test_adam_printed_runs_through_its_arrival():
    prob, f, flow, grid, traj = _arrival_run("adam-printed")
    assert traj.status == "ok" and traj.t[-1] == 3.0, traj.message
    event = traj.stats["events"][0]
    assert 0.9 < event["t"] < 1.2 and event["loss"] < 1e-3
    assert traj.loss[-1] < 1e-12
    # after the arrival W no longer moves (the field vanishes with ∇ℓ)
    np.testing.assert_allclose(traj.W[-1], traj.W[-2], atol=1e-7)


def _torch_adam(factors, problem, lr, betas, t_end, eps=1e-8):
    theta = [torch.tensor(F, requires_grad=True) for F in factors]
    opt = torch.optim.Adam(theta, lr=lr, betas=betas, eps=eps)
    mask = torch.as_tensor(problem.mask, dtype=torch.float64)
    target = torch.as_tensor(problem.W_star)
    for _ in range(round(t_end / lr)):
        opt.zero_grad()
        W = theta[0]
        for F in theta[1:]:
            W = F @ W
        L = problem.scale * ((mask * (W - target)) ** 2).sum() / problem.denominator
        L.backward()
        opt.step()
    with torch.no_grad():
        W = theta[0]
        for F in theta[1:]:
            W = F @ W
    return W.numpy()


@pytest.mark.slow
def test_discrete_adam_with_fixed_beta_tends_to_adam_sign(tiny_problem):
    """With β fixed and η/(1 − β₂) ≪ T, ‖W_Adam(T/η) − W_sign(T)‖ shrinks with η at a local order that
    rises toward 1 (measured here 0.77, 0.82; β = (0.5, 0.9), T = 0.05, before any entry of g slides at 0)."""
    prob = tiny_problem
    f = init_factors("balanced-gaussian", prob.shape, 2, 0.5, seed=1)
    T, betas = 0.05, (0.5, 0.9)
    flow = AdamSignFlow(prob, 2)
    traj = simulate(flow, f, T, t_eval=np.array([0.0, T]), rtol=1e-10, atol=1e-13, save_matrices=True,
                    progress=False)
    assert traj.status == "ok" and not traj.stats["events"]
    errs = [np.abs(_torch_adam(f, prob, lr, betas, T) - traj.W[-1]).max() for lr in (2e-4, 1e-4, 5e-5)]
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert 0.65 < slopes[0] < slopes[1] < 1.2, (errs, slopes)


@pytest.mark.slow
def test_large_states_go_on_explicitly_and_hold_once_arrived(monkeypatch):
    """Above the dense-Jacobian limit the explicit solver continues at its stability limit; where it stalls
    after a complete arrival (every entry at W*, ℓ + λR no longer moving) the driver holds the state and the
    run ends ``ok`` at t_end, with the hold recorded."""
    import flowsim.integrator.arrival as arrival

    monkeypatch.setattr(arrival, "DENSE_JACOBIAN_MAX_DIM", 1)
    W_star = np.array([[1.0, -2.0], [0.5, 0.0]])
    flow = AdamSignFlow(full_observation_problem(W_star), 1, eps=1e-8)
    traj = simulate(flow, [W_star + 0.5], 1.0, t_eval=np.array([0.0, 0.25, 1.0]), rtol=1e-9, atol=1e-12,
                    max_steps=2000, progress=False, save_matrices=True)
    assert traj.status == "ok" and traj.t[-1] == 1.0 and "out of reach" not in traj.message, traj.message
    assert [p["method"] for p in traj.stats["phases"]] == ["DOP853", "DOP853"]
    assert traj.stats["phases"][1]["ended"] == "held"
    arrival_event, hold = traj.stats["events"]
    assert arrival_event["t"] == pytest.approx(0.5, abs=1e-3)
    assert hold["kind"] == "arrived-hold" and hold["detected_by"] == "stall" and 0.5 < hold["t"] < 0.51
    np.testing.assert_allclose(traj.W[-1], W_star, atol=1e-7)


def test_arrival_complete_needs_both_the_gradient_and_the_objective():
    from flowsim.integrator.arrival import HOLD_GRAD_FRACTION, HOLD_OBJECTIVE_FRACTION, arrival_complete

    assert arrival_complete(0.5 * HOLD_GRAD_FRACTION, 1.0, 0.5 * HOLD_OBJECTIVE_FRACTION, 1.0)
    # a saddle plateau: the gradient is small but the objective still moves
    assert not arrival_complete(0.5 * HOLD_GRAD_FRACTION, 1.0, 2 * HOLD_OBJECTIVE_FRACTION, 1.0)
    # the objective is flat but the gradient has not collapsed
    assert not arrival_complete(2 * HOLD_GRAD_FRACTION, 1.0, 0.0, 1.0)

