"""flowsim.flows.printed (Zhao22 Eqs. 5–9 as printed) against explicit Kronecker products (n ≤ 6),
torch autograd and the exact flows."""

import numpy as np
import pytest
import torch
from kron_reference import kron_preconditioner, psd_power

from flowsim.errors import BadInputError
from flowsim.factors import canonical_balanced_factors
from flowsim.flows import apply_end_product_preconditioner, layer_gradients, singular_value_velocity
from flowsim.flows.printed import (
    eq3_singular_value_velocity,
    eq7_singular_value_velocity,
    eq8_velocity,
    kron_matvec,
    printed_penalty_term,
    theorem1_singular_value_velocity,
    theorem1_velocity,
    theorem3_velocity,
)
from flowsim.flows.variance import variance_adapted_end_product_velocity, variance_scaling
from flowsim.penalties import make_penalty
from flowsim.problems import synthetic_problem

ORDER = {"row-major": "C", "col-major": "F"}


def _vec(X, conv):
    return X.ravel(order=ORDER[conv])


def _explicit_theorem1(W, loss_grad, layer_grads, depth, conv):
    """vec(Ẇ) = −Σ_j ((WWᵀ)^{(j−1)/N} ⊗ (WᵀW)^{(N−j)/N}) diag(vec S_j) vec(∇ℓ), built with np.kron."""
    m, n = W.shape
    P = np.zeros((m * n, m * n))
    for j in range(1, depth + 1):
        K = np.kron(psd_power(W @ W.T, (j - 1) / depth), psd_power(W.T @ W, (depth - j) / depth))
        P += K @ np.diag(_vec(variance_scaling(layer_grads[j - 1]), conv))
    return -(P @ _vec(loss_grad, conv)).reshape((m, n), order=ORDER[conv])


@pytest.mark.parametrize("conv", ["row-major", "col-major"])
@pytest.mark.parametrize("shapes", [((3, 3), (4, 4)), ((2, 2), (3, 5)), ((4, 4), (2, 3))])
def test_kron_matvec_matches_np_kron(conv, shapes):
    rng = np.random.default_rng(0)
    (a, _), (b, _) = shapes
    A, B = rng.standard_normal((a, a)), rng.standard_normal((b, b))
    for xshape in [(a, b), (b, a)]:
        X = rng.standard_normal(xshape)
        ref = (np.kron(A, B) @ _vec(X, conv)).reshape(xshape, order=ORDER[conv])
        assert np.allclose(kron_matvec(A, B, X, conv), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("conv", ["row-major", "col-major"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_theorem1_matches_explicit_kronecker(conv, depth):
    rng = np.random.default_rng(depth)
    W = rng.standard_normal((5, 5))
    factors = canonical_balanced_factors(W, depth)
    G = rng.standard_normal((5, 5))
    lg = layer_gradients(factors, G)
    ref = _explicit_theorem1(W, G, lg, depth, conv)
    got = theorem1_velocity(W, G, lg, depth, conv)
    assert np.linalg.norm(got - ref) <= 1e-10 * np.linalg.norm(ref)


def test_theorem1_singular_w_uses_zero_power_identity():
    rng = np.random.default_rng(7)
    W = rng.standard_normal((5, 2)) @ rng.standard_normal((2, 5))  # rank 2
    G = rng.standard_normal((5, 5))
    lg = [rng.standard_normal((5, 5)) for _ in range(3)]
    for conv in ("row-major", "col-major"):
        ref = _explicit_theorem1(W, G, lg, 3, conv)
        assert np.allclose(theorem1_velocity(W, G, lg, 3, conv), ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (6, 2)])
def test_theorem1_depth1_is_exact_variance_adapted_flow(shape):
    """N = 1: both conventions reduce to Ẇ = −S_1 ⊙ ∇ℓ, the exact flow of docs/math.md §8.2, any shape."""
    rng = np.random.default_rng(11)
    W = rng.standard_normal(shape)
    G = rng.standard_normal(shape)
    exact = variance_adapted_end_product_velocity([W], G)
    assert np.allclose(exact, -variance_scaling(G) * G, rtol=1e-13)
    for conv in ("row-major", "col-major"):
        assert np.allclose(theorem1_velocity(W, G, [G], 1, conv), exact, rtol=1e-12, atol=1e-14)


def test_theorem1_with_unit_scaling_is_eq4_only_in_row_major():
    """G_j = I (constant layer gradients of 1): row-major gives Eq. 4, column-major the reversed order."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((4, 4))
    G = rng.standard_normal((4, 4))
    ones = [np.ones((4, 4))] * 3
    eq4 = -apply_end_product_preconditioner(W, G, 3)
    assert np.allclose(theorem1_velocity(W, G, ones, 3, "row-major"), eq4, rtol=1e-10, atol=1e-12)
    col = theorem1_velocity(W, G, ones, 3, "col-major")
    # Column-major: Σ_j (WᵀW)^{(N−j)/N} ∇ℓ (WWᵀ)^{(j−1)/N}, which is not Eq. 4 for a generic W.
    ref = -sum(psd_power(W.T @ W, (3 - j) / 3) @ G @ psd_power(W @ W.T, (j - 1) / 3) for j in (1, 2, 3))
    assert np.allclose(col, ref, rtol=1e-10, atol=1e-12)
    assert np.linalg.norm(col - eq4) > 1e-3 * np.linalg.norm(eq4)


def test_theorem1_undefined_for_nonsquare_deep():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((4, 6))
    f = canonical_balanced_factors(W, 3)
    with pytest.raises(BadInputError, match="undefined"):
        theorem1_velocity(W, W, layer_gradients(f, W), 3)


@pytest.mark.parametrize("conv", ["row-major", "col-major"])
@pytest.mark.parametrize("shape", [(4, 4), (3, 5)])
def test_eq5_printed_and_uv_pairings_match_explicit(conv, shape):
    rng = np.random.default_rng(2)
    W = rng.standard_normal(shape)
    G = rng.standard_normal(shape)
    depth = 1 if shape[0] != shape[1] else 3
    lg = layer_gradients(canonical_balanced_factors(W, depth), G)
    Wdot = _explicit_theorem1(W, G, lg, depth, conv)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    printed = [_vec(np.outer(Vt[i], U[:, i]), conv) @ _vec(Wdot, conv) for i in range(s.size)]
    uv = [U[:, i] @ Wdot @ Vt[i] for i in range(s.size)]
    assert np.allclose(theorem1_singular_value_velocity(W, G, lg, depth, conv), printed, atol=1e-10)
    assert np.allclose(theorem1_singular_value_velocity(W, G, lg, depth, conv, pairing="uv"), uv, atol=1e-10)


def test_printed_penalty_term_formula_and_autograd():
    rng = np.random.default_rng(4)
    W = 3.0 * rng.standard_normal((5, 4))
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    fro, nuc = np.linalg.norm(W), s.sum()
    assert np.allclose(printed_penalty_term(W), (U @ Vt) / fro**2 - nuc * W / fro**3, rtol=1e-12)
    # Exact gradient by torch autograd differs, except on the unit Frobenius sphere.
    Wt = torch.tensor(W, requires_grad=True)
    (torch.linalg.matrix_norm(Wt, "nuc") / torch.linalg.matrix_norm(Wt)).backward()
    exact = Wt.grad.numpy()
    assert np.linalg.norm(printed_penalty_term(W) - exact) > 0.1 * np.linalg.norm(exact)
    W1 = W / fro
    Wt = torch.tensor(W1, requires_grad=True)
    (torch.linalg.matrix_norm(Wt, "nuc") / torch.linalg.matrix_norm(Wt)).backward()
    assert np.allclose(printed_penalty_term(W1), Wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert np.all(printed_penalty_term(np.zeros((3, 3))) == 0)


def test_eq3_and_eq7_formulas():
    p = synthetic_problem(5, 5, rank=2, observed=15, seed=3)
    rng = np.random.default_rng(3)
    W = rng.standard_normal((5, 5))
    for depth in (1, 2, 3):
        assert np.allclose(eq3_singular_value_velocity(W, p.grad(W), depth),
                           singular_value_velocity(W, p, depth), rtol=1e-12)
        assert np.allclose(eq7_singular_value_velocity(W, p.grad(W), depth, 0.0),
                           singular_value_velocity(W, p, depth), rtol=1e-12)
        s = np.linalg.svd(W, compute_uv=False)
        fro, nuc, lam = np.linalg.norm(s), s.sum(), 0.3
        ref = (singular_value_velocity(W, p, depth)
               - lam * depth / fro**2 * (1 - nuc / fro) * s ** ((3 * depth - 2) / 2))
        assert np.allclose(eq7_singular_value_velocity(W, p.grad(W), depth, lam), ref, rtol=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_eq8_matches_explicit_kronecker(depth):
    from kron_reference import unvec, vec

    p = synthetic_problem(4, 5, rank=2, observed=12, seed=2)
    W = np.random.default_rng(depth).standard_normal((4, 5))
    lam = 0.2
    X = p.grad(W) + lam * printed_penalty_term(W)
    ref = -unvec(kron_preconditioner(W, depth) @ vec(X), W.shape)
    assert np.allclose(eq8_velocity(W, p.grad(W), depth, lam), ref, rtol=1e-10, atol=1e-12)
    # and differs from the exact penalized velocity −P_W(∇ℓ + λ∇R) off the unit sphere
    Xe = p.grad(W) + lam * make_penalty("ratio").grad(W)
    exact = -apply_end_product_preconditioner(W, Xe, depth)
    assert np.linalg.norm(eq8_velocity(W, p.grad(W), depth, lam) - exact) > 1e-3 * np.linalg.norm(exact)


def test_theorem3_is_theorem1_with_printed_term():
    rng = np.random.default_rng(9)
    W = rng.standard_normal((4, 4))
    G = rng.standard_normal((4, 4))
    lg = layer_gradients(canonical_balanced_factors(W, 2), G)
    lam = 0.05
    ref = _explicit_theorem1(W, G + lam * printed_penalty_term(W), lg, 2, "row-major")
    assert np.allclose(theorem3_velocity(W, G, lg, 2, lam), ref, rtol=1e-10, atol=1e-12)
    assert np.allclose(theorem3_velocity(W, G, lg, 2, 0.0), theorem1_velocity(W, G, lg, 2), rtol=1e-14)


@pytest.mark.parametrize("depth, lam", [(2, 0.0), (3, 0.0), (3, 0.05)])
def test_adam_printed_field_is_a_function_of_w_alone(depth, lam):
    """Flipping singular pairs (u_i, v_i) → (−u_i, −v_i) leaves W unchanged; the printed Adam field must not
    change either (it did by up to 0.8 % through the mean inside s_j² = var(∇_{W_j}))."""
    from flowsim.flows.adam import AdamPrintedFlow
    from flowsim.flows.gradient import total_gradient
    from flowsim.flows.printed import signed_balanced_factors, signed_svd

    P = synthetic_problem(6, 6, 2, 20, seed=3)
    W = np.random.default_rng(5).standard_normal((6, 6))
    pen = make_penalty("ratio") if lam else None
    flow = AdamPrintedFlow(P, depth, pen, lam)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    base = flow.velocity(W, (U, s, Vt))
    G = total_gradient(W, P, flow.penalty, lam)
    for flips in ([0], [1, 4], [0, 1, 2, 3, 4, 5]):
        d = np.ones(6)
        d[flips] = -1.0
        flipped = (U * d, s, Vt * d[:, None])
        np.testing.assert_allclose(flow.velocity(W, flipped), base, rtol=0, atol=1e-12 * np.abs(base).max())
        # the unsigned canonical factorization built on the flipped pair does change the printed field
        raw = [s[:, None] ** (1 / depth) * flipped[2], *[np.diag(s ** (1 / depth))] * (depth - 2),
               flipped[0] * s ** (1 / depth)]
        v_raw = theorem1_velocity(W, G, layer_gradients(raw, G), depth, "row-major", 1e-8)
        if lam == 0.0 and len(flips) < 6:  # flipping every pair keeps every mean² (and the field)
            assert np.abs(v_raw - base).max() > 1e-6 * np.abs(base).max()
    # the sign rule: largest |entry| of each v_i positive, and the factors multiply back to W
    U2, _, Vt2 = signed_svd(W)
    assert np.all(Vt2[np.arange(6), np.argmax(np.abs(Vt2), axis=1)] > 0)
    f = signed_balanced_factors(W, depth)
    prod = f[0]
    for F in f[1:]:
        prod = F @ prod
    np.testing.assert_allclose(prod, W, atol=1e-12)
