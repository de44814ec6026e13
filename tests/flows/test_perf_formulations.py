"""The faster velocity formulations against independent references (torch autograd, the naive
geometric sum, the other formulation), and the automatic choice between the end-product and layer states."""

import numpy as np
import pytest
import torch

from flowsim import EndProductFlow, init_factors, make_penalty, simulate, synthetic_problem
from flowsim.factors import end_product, prefix_products, suffix_products
from flowsim.flows.auto import AutoGradientFlow, choose_formulation, relative_imbalance
from flowsim.flows.gradient import (
    end_product_kernel,
    end_product_velocity,
    layer_gradients,
    layerwise_velocity,
    singular_value_projection,
)


def _torch_layer_gradients(factors, problem):
    """∇_{W_j} ℓ(W_N⋯W_1) by torch autograd (independent of the back-propagation in flowsim)."""
    ts = [torch.tensor(F, dtype=torch.float64, requires_grad=True) for F in factors]
    W = ts[0]
    for F in ts[1:]:
        W = F @ W
    Ws = torch.tensor(problem.W_star)
    M = torch.tensor(problem.mask, dtype=torch.float64)
    loss = problem.scale * torch.sum((M * (W - Ws)) ** 2) / problem.denominator
    loss.backward()
    return [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("dims", [[5, 5], [5, 6], [5, 4, 7], [6, 3, 4, 5], [4, 6, 2, 5, 3]])
def test_layer_gradients_match_torch_autograd(dims):
    rng = np.random.default_rng(len(dims))
    factors = [rng.standard_normal((dims[j + 1], dims[j])) for j in range(len(dims) - 1)]
    problem = synthetic_problem(dims[-1], dims[0], rank=1, observed=max(1, dims[0] * dims[-1] // 2), seed=2)
    ref = _torch_layer_gradients(factors, problem)
    got = layer_gradients(factors, problem.grad(end_product(factors)))
    vel = layerwise_velocity(factors, problem)
    for g, v, r in zip(got, vel, ref):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(v, -r, rtol=1e-12, atol=1e-13)


def test_layer_gradients_do_not_alias_the_input_gradient():
    G = np.ones((3, 3))
    g = layer_gradients([np.eye(3)], G)[0]
    g += 1.0
    assert np.all(G == 1.0)


def test_prefix_suffix_products_against_explicit_products():
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal((4, 3)), rng.standard_normal((5, 4)), rng.standard_normal((2, 5))]
    pre, suf = prefix_products(factors), suffix_products(factors)
    np.testing.assert_allclose(pre[0], np.eye(3))
    np.testing.assert_allclose(pre[2], factors[1] @ factors[0])
    np.testing.assert_allclose(pre[3], factors[2] @ factors[1] @ factors[0])
    np.testing.assert_allclose(suf[0], factors[2] @ factors[1] @ factors[0])
    np.testing.assert_allclose(suf[1], factors[2] @ factors[1])
    np.testing.assert_allclose(suf[3], np.eye(2))


def test_chain_products_without_identity_and_on_batched_torch_tensors():
    """identity=False leaves W_{0:1} and W_{N:N+1} as None; the same function serves stacked torch factors
    (the batched discrete runs) and gives the numpy products run by run (to round-off: batched BLAS)."""
    rng = np.random.default_rng(1)
    batch = [[rng.standard_normal((4, 3)), rng.standard_normal((2, 4))] for _ in range(3)]
    stacked = [torch.as_tensor(np.stack([f[j] for f in batch])) for j in range(2)]
    pre_t, suf_t = prefix_products(stacked, identity=False), suffix_products(stacked, identity=False)
    assert pre_t[0] is None and suf_t[-1] is None
    for b, factors in enumerate(batch):
        pre, suf = prefix_products(factors), suffix_products(factors)
        for j in (1, 2):
            np.testing.assert_allclose(pre_t[j][b].numpy(), pre[j], rtol=1e-13)
        for j in (0, 1):
            np.testing.assert_allclose(suf_t[j][b].numpy(), suf[j], rtol=1e-13)
        np.testing.assert_allclose(end_product(stacked)[b].numpy(), end_product(factors), rtol=1e-13)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_kernel_matches_naive_geometric_sum(depth):
    s = np.array([3.0, 1.5, 1.5, 0.2, 0.0])
    m, n = 7, 5
    a = np.concatenate([s, np.zeros(m - s.size)])
    b = s.copy()
    naive = np.zeros((m, n))
    for k in range(m):
        for l in range(n):
            naive[k, l] = sum((a[k] ** 2) ** ((j - 1) / depth) * (b[l] ** 2) ** ((depth - j) / depth)
                              for j in range(1, depth + 1))
    # 0⁰ = 1 convention (docs/math.md §1): python's 0.0 ** 0.0 is 1.0 as well
    np.testing.assert_allclose(end_product_kernel(s, (m, n), depth), naive, rtol=1e-14)


def test_depth_one_velocity_skips_the_svd_and_is_minus_gradient():
    problem = synthetic_problem(6, 4, rank=2, observed=12, seed=0)
    W = np.random.default_rng(1).standard_normal((6, 4))
    np.testing.assert_allclose(end_product_velocity(W, problem, 1), -problem.grad(W))
    pen = make_penalty("ratio")
    v = end_product_velocity(W, problem, 1, pen, 0.3)
    np.testing.assert_allclose(v, -(problem.grad(W) + 0.3 * pen.grad(W)), rtol=1e-12, atol=1e-14)


def test_choose_formulation_rules():
    shape = (8, 8)
    balanced = init_factors("balanced-gaussian", shape, 3, scale=0.1, seed=0)
    identity = init_factors("identity", shape, 3, scale=0.1, seed=0)
    gaussian = init_factors("gaussian", shape, 3, scale=0.1, seed=0)
    assert relative_imbalance(balanced) < 1e-13
    assert relative_imbalance(gaussian) > 1e-3
    assert choose_formulation(balanced)[0] == "layers"
    assert choose_formulation(identity)[0] == "layers"
    assert choose_formulation(gaussian)[0] == "layers"
    assert "not balanced" in choose_formulation(gaussian)[1]
    assert choose_formulation(balanced, make_penalty("ratio"), 0.1)[0] == "end-product"
    assert choose_formulation(balanced, make_penalty("ratio"), 0.0)[0] == "layers"
    assert choose_formulation(init_factors("gaussian", shape, 1, 0.1, 0))[0] == "end-product"


@pytest.mark.parametrize("penalty,lam,expected", [("none", 0.0, "layers"), ("ratio", 0.05, "end-product")])
def test_auto_flow_follows_the_end_product_flow_and_records_its_choice(penalty, lam, expected):
    problem = synthetic_problem(7, 6, rank=2, observed=25, seed=4)
    factors = init_factors("balanced-gaussian", problem.shape, 3, scale=0.3, seed=2)
    pen = make_penalty(penalty)
    tight = {"rtol": 1e-11, "atol": 1e-13, "n_save": 20, "t_min": 0.1, "progress": False}
    auto = simulate(AutoGradientFlow(problem, 3, pen, lam), factors, 60.0, **tight)
    ref = simulate(EndProductFlow(problem, 3, pen, lam), factors, 60.0, **tight)
    assert auto.status == ref.status == "ok"
    assert auto.stats["formulation"] == expected
    assert auto.stats["formulation_reason"]
    assert ref.stats["formulation"] == "end-product"
    assert np.max(np.abs(auto.sigma - ref.sigma)) <= 1e-7 * np.max(ref.sigma)
    assert ref.loss[-1] < 0.1 * ref.loss[0]  # the run did something


def test_auto_flow_describe_names_the_formulation():
    problem = synthetic_problem(5, 5, rank=1, observed=10, seed=0)
    flow = AutoGradientFlow(problem, 2)
    flow.initial_state(init_factors("balanced-gaussian", (5, 5), 2, 0.1, 0))
    d = flow.describe()
    assert d["model"] == "auto" and d["formulation"] == "layers" and d["flow"] == "gf"
    with pytest.raises(ValueError):
        flow.initial_state(init_factors("balanced-gaussian", (5, 5), 3, 0.1, 0))


@pytest.mark.parametrize("dims", [[5, 5], [5, 4, 7], [6, 3, 4, 5]])
@pytest.mark.parametrize("penalty,lam", [("none", 0.0), ("ratio", 0.1)])
def test_flat_layer_velocity_matches_the_list_form(dims, penalty, lam):
    from flowsim.flows import FactorPacker, LayerwiseFlow
    from flowsim.flows.gradient import layerwise_velocity_into

    rng = np.random.default_rng(5)
    factors = [rng.standard_normal((dims[j + 1], dims[j])) for j in range(len(dims) - 1)]
    problem = synthetic_problem(dims[-1], dims[0], rank=1, observed=dims[0] * dims[-1] // 2, seed=1)
    pen = make_penalty(penalty)
    ref = np.concatenate([v.ravel() for v in layerwise_velocity(factors, problem, pen, lam)])
    packer = FactorPacker([dims[0], *dims[1:]])
    out = np.full(packer.size, np.nan)
    layerwise_velocity_into(factors, problem, packer.unpack(out), pen, lam)
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-14)
    flow = LayerwiseFlow(problem, len(factors), pen, lam)
    y = flow.initial_state(factors)
    v1, v2 = flow(0.0, y), flow(0.0, y)
    np.testing.assert_allclose(v1, ref, rtol=1e-13, atol=1e-14)
    assert v1 is not v2 and not np.shares_memory(v1, v2)  # the solver keeps the velocities it is given


def test_singular_value_projection_is_the_derivative_of_the_singular_values():
    """σ̇_r = u_rᵀẆv_r (first-order perturbation of simple singular values) against central differences."""
    rng = np.random.default_rng(4)
    W, X = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    U, _, Vt = np.linalg.svd(W, full_matrices=False)
    h = 1e-6
    fd = (np.linalg.svd(W + h * X, compute_uv=False) - np.linalg.svd(W - h * X, compute_uv=False)) / (2 * h)
    np.testing.assert_allclose(singular_value_projection(X, U, Vt), fd, rtol=1e-7)

