"""docs/math.md §4: the SVD-basis end-product preconditioner against explicit Kronecker products."""

import numpy as np
import pytest
from kron_reference import kron_preconditioner, unvec, vec

from flowsim.flows import apply_end_product_preconditioner, end_product_kernel, end_product_velocity
from flowsim.problems import synthetic_problem


def _singular(rng, m, n, rank):
    return rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (6, 2), (5, 5)])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("singular", [False, True])
def test_svd_basis_matches_kronecker(shape, depth, singular):
    rng = np.random.default_rng(hash((shape, depth, singular)) % 2**32)
    m, n = shape
    W = _singular(rng, m, n, max(1, min(m, n) - 2)) if singular else rng.standard_normal(shape)
    X = rng.standard_normal(shape)
    ref = unvec(kron_preconditioner(W, depth) @ vec(X), shape)
    got = apply_end_product_preconditioner(W, X, depth)
    assert np.linalg.norm(got - ref) <= 1e-10 * np.linalg.norm(ref)


def test_velocity_is_minus_preconditioned_gradient():
    rng = np.random.default_rng(3)
    p = synthetic_problem(5, 6, rank=2, observed=15, seed=1)
    W = rng.standard_normal((5, 6))
    ref = -unvec(kron_preconditioner(W, 3) @ vec(p.grad(W)), W.shape)
    assert np.allclose(end_product_velocity(W, p, 3), ref, rtol=1e-11, atol=1e-12)


def test_kernel_closed_form_and_repeated_values():
    s = np.array([3.0, 2.0, 2.0, 0.5, 0.0])
    depth = 4
    K = end_product_kernel(s, (5, 5), depth)
    for k in range(5):
        for l in range(5):
            a, b = s[k] ** (2 / depth), s[l] ** (2 / depth)
            if abs(a - b) > 1e-12:
                expect = (s[k] ** 2 - s[l] ** 2) / (a - b)
            else:  # σ_k = σ_l: the sum of N equal terms
                expect = depth * a ** (depth - 1) if a > 0 else (1.0 if depth == 1 else 0.0)
            assert K[k, l] == pytest.approx(expect, rel=1e-13, abs=1e-15)
    # zero singular value with 0^0 = 1: K_{kl} for σ_l = 0 is σ_k^{2(N-1)/N}
    assert K[0, 4] == pytest.approx(3.0 ** (2 * (depth - 1) / depth), rel=1e-14)


def test_kernel_stable_for_nearly_equal_singular_values():
    s = np.array([1.0, 1.0 - 1e-13])
    K = end_product_kernel(s, (2, 2), 3)
    assert np.allclose(K, 3.0, rtol=1e-12)
    assert np.all(np.isfinite(K))
