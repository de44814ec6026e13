"""Adam-type flows (docs/math.md §8): adam-layer, adam-ode, adam-printed (adam-sign: test_adam_arrival.py)."""
import numpy as np
import pytest
import torch
from kron_reference import autograd_layer_gradients

from flowsim.errors import BadInputError
from flowsim.flows import make_flow
from flowsim.flows.adam import AdamLayerFlow, AdamODEFlow, AdamPrintedFlow
from flowsim.initializations import init_factors
from flowsim.penalties import make_penalty
from flowsim.problems import full_observation_problem, synthetic_problem
from flowsim.simulate import simulate

P = synthetic_problem(6, 6, 2, 20, seed=2)


def test_adam_layer_velocity_is_variance_scaled_layer_gradient():
    f = init_factors("gaussian", P.shape, 3, 1.0, seed=0)
    flow = AdamLayerFlow(P, 3, make_penalty("ratio"), 0.05, eps=1e-8)
    v = flow(0.0, flow.initial_state(f))
    grads = autograd_layer_gradients(f, P, lam=0.05)
    ref = np.concatenate([(-g / np.sqrt(g * g + g.var() + 1e-16)).ravel() for g in grads])
    np.testing.assert_allclose(v, ref, rtol=1e-9, atol=1e-12)


def test_adam_layer_sign_flow_moves_at_unit_speed():
    # N = 1, full observation, W* − W0 = c·1: every gradient entry equal, var = 0, S = 1/|g|: sign flow
    W_star = np.full((3, 4), 2.0)
    prob = full_observation_problem(W_star)
    W0 = np.full((3, 4), 0.5)
    flow = AdamLayerFlow(prob, 1, eps=1e-12)
    traj = simulate(
        flow, [W0], 1.0, t_eval=np.linspace(0, 1.0, 6), rtol=1e-10, atol=1e-12, save_matrices=True
    )
    for t, W in zip(traj.t, traj.W):
        np.testing.assert_allclose(W, W0 + t, rtol=1e-8)


def test_adam_printed_equals_adam_layer_at_depth_one():
    # docs/math.md §8: for N = 1, (a) and (b) coincide (the canonical factorization is W itself)
    prob = synthetic_problem(5, 4, 2, 12, seed=1)
    W0 = init_factors("gaussian", prob.shape, 1, 1.0, seed=1)
    for conv in ("row-major", "col-major"):
        printed = AdamPrintedFlow(prob, 1, eps=1e-8, convention=conv)
        layer = AdamLayerFlow(prob, 1, eps=1e-8)
        np.testing.assert_allclose(
            printed(0.0, printed.initial_state(W0)),
            layer(0.0, layer.initial_state(W0)),
            rtol=1e-12,
            atol=1e-15,
        )


def test_adam_printed_theorem3_uses_the_printed_penalty_term():
    from flowsim.flows.gradient import layer_gradients, total_gradient
    from flowsim.flows.printed import printed_penalty_term, signed_balanced_factors, theorem1_velocity

    f = init_factors("balanced-gaussian", P.shape, 2, 1.0, seed=4)
    pen = make_penalty("ratio")
    flow = AdamPrintedFlow(P, 2, pen, 0.1)
    assert flow.theorem == 3
    y = flow.initial_state(f)
    W = y.reshape(P.shape)
    lg = layer_gradients(signed_balanced_factors(W, 2), total_gradient(W, P, pen, 0.1))
    ref = theorem1_velocity(W, P.grad(W) + 0.1 * printed_penalty_term(W), lg, 2, "row-major", 1e-8)
    np.testing.assert_allclose(flow(0.0, y).reshape(P.shape), ref, rtol=1e-12, atol=1e-15)


def test_adam_ode_velocity_and_bias_correction():
    f = init_factors("gaussian", P.shape, 2, 1.0, seed=5)
    lr, b1, b2, eps = 0.01, 0.9, 0.99, 1e-8
    flow = AdamODEFlow(P, 2, lr=lr, beta1=b1, beta2=b2, eps=eps)
    y = flow.initial_state(f)
    t = 3 * lr
    v = flow(t, y)
    n = flow.packer.size
    g = np.concatenate([x.ravel() for x in autograd_layer_gradients(flow.layer_factors(y), P)])
    m, s = y[n : 2 * n], y[2 * n :]
    a, b = (1 - b1) / lr, (1 - b2) / lr
    mhat, shat = m / (1 - np.exp(-a * t)), s / (1 - np.exp(-b * t))
    np.testing.assert_allclose(v[:n], -mhat / (eps + np.sqrt(shat)), rtol=1e-10)
    np.testing.assert_allclose(v[n : 2 * n], a * (g - m), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(v[2 * n :], b * (g * g - s), rtol=1e-10, atol=1e-18)


def test_adam_ode_first_step_matches_torch_adam():
    f = init_factors("gaussian", P.shape, 3, 1.0, seed=6)
    lr = 0.02
    flow = AdamODEFlow(P, 3, lr=lr, beta1=0.8, beta2=0.95, eps=1e-6)
    y = flow.initial_state(f)
    theta = [torch.tensor(F, requires_grad=True) for F in f]
    opt = torch.optim.Adam(theta, lr=lr, betas=(0.8, 0.95), eps=1e-6)
    for g, th in zip(autograd_layer_gradients(f, P), theta):
        th.grad = torch.as_tensor(g)
    opt.step()
    for mine, th in zip(flow.layer_factors(y), theta):
        np.testing.assert_allclose(mine, th.detach().numpy(), rtol=1e-12, atol=1e-15)
    m, v = flow.moments(y)
    np.testing.assert_allclose(
        m, np.concatenate([opt.state[th]["exp_avg"].numpy().ravel() for th in theta]), rtol=1e-12
    )
    np.testing.assert_allclose(
        v, np.concatenate([opt.state[th]["exp_avg_sq"].numpy().ravel() for th in theta]), rtol=1e-12
    )


def test_make_flow_dispatch_and_bad_input():
    assert make_flow("adam-layer", P, 3).name == "adam-layer"
    assert make_flow("adam-ode", P, 3, lr=0.1).t0 == 0.1
    assert make_flow("adam-printed", P, 3).model == "end-product"
    assert make_flow("gd-modified", P, 3, lr=0.1).lr == 0.1
    with pytest.raises(BadInputError):
        make_flow("adam-printed", synthetic_problem(5, 4, 2, 10), 2)
    with pytest.raises(BadInputError):
        make_flow("adam-ode", P, 2, beta1=1.0)
    with pytest.raises(BadInputError):
        make_flow("gd-modified", P, 2, lr=-1.0)
