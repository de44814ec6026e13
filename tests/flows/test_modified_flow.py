"""The modified flow of GD (docs/math.md §7; BD21): Hessian–vector products vs
finite differences and autograd."""

import numpy as np
import pytest

from flowsim.factors import end_product
from flowsim.flows.gradient import layer_gradients, total_gradient
from flowsim.flows.modified import ModifiedGDFlow, autograd_modified_gradient, loss_hessian_vector_product
from flowsim.initializations import init_factors
from flowsim.penalties import make_penalty
from flowsim.problems import synthetic_problem

P = synthetic_problem(6, 5, 2, 18, seed=7)


def _grad(factors, penalty=None, lam=0.0):
    return layer_gradients(factors, total_gradient(end_product(factors), P, penalty, lam))


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_closed_form_hvp_matches_finite_differences(depth):
    rng = np.random.default_rng(depth)
    f = init_factors("gaussian", P.shape, depth, 1.0, seed=depth, width=4)
    V = [rng.standard_normal(F.shape) for F in f]
    hv = loss_hessian_vector_product(f, P, V)
    h = 1e-5
    plus = _grad([F + h * d for F, d in zip(f, V)])
    minus = _grad([F - h * d for F, d in zip(f, V)])
    for a, p, m in zip(hv, plus, minus):
        np.testing.assert_allclose(a, (p - m) / (2 * h), rtol=1e-6, atol=1e-9)


def test_closed_form_equals_autograd():
    f = init_factors("gaussian", P.shape, 3, 1.0, seed=1)
    flow = ModifiedGDFlow(P, 3, lr=0.3)
    assert flow.hvp == "closed"
    _, ref = autograd_modified_gradient(f, P, make_penalty("none"), 0.0, 0.3)
    for a, b in zip(flow.modified_gradient(f), ref):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)


def test_penalized_modified_gradient_matches_finite_differences_of_the_modified_loss():
    pen, lam, lr = make_penalty("ratio"), 0.05, 0.2
    f = init_factors("gaussian", P.shape, 2, 1.0, seed=2)
    flow = ModifiedGDFlow(P, 2, pen, lam, lr=lr)
    assert flow.hvp == "autograd"
    g_tilde = flow.modified_gradient(f)

    def modified_loss(factors):  # ℓ̃ = L + (η/4)‖∇L‖², all in numpy with the exact penalty gradient
        W = end_product(factors)
        L = P.loss(W) + lam * pen.value(W)
        return L + lr / 4 * sum(float(np.sum(g * g)) for g in _grad(factors, pen, lam))

    rng = np.random.default_rng(3)
    for _ in range(3):
        d = [rng.standard_normal(F.shape) for F in f]
        h = 1e-5
        fd = (
            modified_loss([F + h * x for F, x in zip(f, d)])
            - modified_loss([F - h * x for F, x in zip(f, d)])
        ) / (2 * h)
        assert sum(float(np.sum(g * x)) for g, x in zip(g_tilde, d)) == pytest.approx(fd, rel=1e-6, abs=1e-10)


def test_velocity_is_minus_modified_gradient_and_reduces_to_gf_as_lr_vanishes():
    f = init_factors("gaussian", P.shape, 3, 1.0, seed=4)
    flow = ModifiedGDFlow(P, 3, lr=1e-12)
    v = flow(0.0, flow.initial_state(f))
    np.testing.assert_allclose(v, -np.concatenate([g.ravel() for g in _grad(f)]), rtol=1e-9, atol=1e-15)
