"""Numerical edge cases of the SVD-basis dynamics (docs/math.md §4–§6): repeated, nearly equal and
zero singular values, non-square problems, N = 1, λ = 0 and very large λ, tiny initializations, the W = 0
saddle. References are explicit Kronecker products (n ≤ 8), 50-digit mpmath sums and closed forms."""

from __future__ import annotations

import json
import zlib

import mpmath
import numpy as np
import pytest
from kron_reference import kron_preconditioner, unvec, vec

from flowsim.factors import canonical_balanced_factors
from flowsim.flows import (
    EndProductFlow,
    LayerwiseFlow,
    end_product_kernel,
    end_product_velocity,
    total_gradient,
)
from flowsim.penalties import make_penalty
from flowsim.problems import CompletionProblem, full_observation_problem, synthetic_problem
from flowsim.simulate import simulate


def _with_singular_values(rng: np.random.Generator, m: int, n: int, s: np.ndarray) -> np.ndarray:
    """U diag(s) Vᵀ with Haar-random orthogonal U (m×m), V (n×n)."""
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    S = np.zeros((m, n))
    S[np.arange(s.size), np.arange(s.size)] = s
    return U @ S @ V.T


def _kron_velocity(W: np.ndarray, G: np.ndarray, depth: int) -> np.ndarray:
    """−P_W vec(G) with P_W = Σ_j (WᵀW)^{(N−j)/N} ⊗ (WWᵀ)^{(j−1)/N} built explicitly (docs/math.md §4)."""
    return -unvec(kron_preconditioner(W, depth) @ vec(G), W.shape)


def _kernel_mp(a: float, b: float, depth: int) -> float:
    """K = Σ_j a^{2(j−1)/N} b^{2(N−j)/N} in 50-digit arithmetic (0⁰ = 1)."""
    with mpmath.workdps(50):
        a_, b_ = mpmath.mpf(a), mpmath.mpf(b)

        def pw(x, e):
            return mpmath.mpf(1) if e == 0 else x ** (mpmath.mpf(2 * e) / depth)

        return float(sum(pw(a_, j - 1) * pw(b_, depth - j) for j in range(1, depth + 1)))


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("gap", [0.0, 1e-15, 1e-12, 1e-8, 1e-3, 0.5])
def test_kernel_stable_when_singular_values_nearly_equal(depth, gap):
    """K_kl at σ_k = σ(1 + gap), σ_l = σ agrees with a 50-digit sum to 1e-14, with no 0/0 (the closed form
    (σ_k² − σ_l²)/(σ_k^{2/N} − σ_l^{2/N}) would lose every digit at gap = 1e-15)."""
    for sigma in (1e-6, 0.7, 3.0, 1e4):
        s = np.array([sigma * (1 + gap), sigma])
        K = end_product_kernel(s, (2, 2), depth)
        for k, l in ((0, 1), (1, 0), (0, 0), (1, 1)):
            ref = _kernel_mp(s[k], s[l], depth)
            assert abs(K[k, l] - ref) <= 1e-14 * ref, (sigma, k, l, K[k, l], ref)
        # the limit σ_k = σ_l = σ is N σ^{2(N−1)/N}
        if gap == 0.0:
            assert K[0, 1] == pytest.approx(depth * sigma ** (2 * (depth - 1) / depth), rel=1e-14)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_kernel_with_zero_singular_values_and_padding(depth):
    """Zero σ and the padded rows/columns (m ≠ n) follow 0⁰ = 1: K_kl = σ_k^{2(N−1)/N} when σ_l = 0, and
    K = 1 where both are zero for N = 1, 0 for N ≥ 2 (no NaN from 0^0 or 0/0)."""
    s = np.array([2.0, 0.0])
    K = end_product_kernel(s, (4, 3), depth)
    assert K.shape == (4, 3) and np.all(np.isfinite(K))
    top = 2.0 ** (2 * (depth - 1) / depth)
    assert K[0, 1] == pytest.approx(top) and K[0, 2] == pytest.approx(top) and K[3, 0] == pytest.approx(top)
    zero_zero = 1.0 if depth == 1 else 0.0
    assert K[1, 1] == zero_zero and K[3, 2] == zero_zero


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (6, 2), (1, 4), (5, 1)])
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("spectrum", ["repeated", "nearly-equal", "with-zeros", "all-equal"])
def test_velocity_with_degenerate_spectra_matches_kronecker(shape, depth, spectrum):
    m, n = shape
    r = min(m, n)
    rng = np.random.default_rng(zlib.crc32(repr((shape, depth, spectrum)).encode()))
    s = {"repeated": np.array([2.0, 2.0, 1.0, 1.0, 0.5, 0.5])[:r],
         "nearly-equal": 1.5 * (1 + 1e-13 * np.arange(r))[::-1],
         "with-zeros": np.array([1.5, 0.0, 0.7, 0.0, 0.0, 0.0])[:r],
         "all-equal": np.full(r, 0.8)}[spectrum]
    W = _with_singular_values(rng, m, n, np.sort(s)[::-1])
    mask = rng.random(shape) < 0.6
    mask.flat[rng.integers(m * n)] = True  # at least one observed entry
    problem = CompletionProblem(rng.standard_normal(shape), mask)
    got = end_product_velocity(W, problem, depth)
    ref = _kron_velocity(W, problem.grad(W), depth)
    assert np.all(np.isfinite(got))
    assert np.linalg.norm(got - ref) <= 1e-10 * max(np.linalg.norm(ref), 1e-300)


def test_depth_one_velocity_is_minus_gradient():
    """N = 1: P_W = I, so Ẇ = −(∇ℓ + λ∇R) exactly, also at singular W."""
    rng = np.random.default_rng(0)
    problem = synthetic_problem(5, 7, rank=2, observed=20, seed=3)
    R = make_penalty("nuclear")
    singular = _with_singular_values(rng, 5, 7, np.array([1, 1, 0, 0, 0.0]))
    for W in (rng.standard_normal((5, 7)), np.zeros((5, 7)), singular):
        got = end_product_velocity(W, problem, 1, R, 0.3)
        assert np.allclose(got, -total_gradient(W, problem, R, 0.3), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("penalty", ["ratio", "nuclear", "schatten:1/2:2/3"])
def test_lambda_zero_equals_no_penalty_and_huge_lambda_is_finite(penalty):
    rng = np.random.default_rng(1)
    problem = synthetic_problem(4, 6, rank=2, observed=12, seed=2)
    W = rng.standard_normal((4, 6))
    R = make_penalty(penalty)
    assert np.array_equal(end_product_velocity(W, problem, 3, R, 0.0), end_product_velocity(W, problem, 3))
    lam = 1e12
    got = end_product_velocity(W, problem, 3, R, lam)
    ref = _kron_velocity(W, problem.grad(W) + lam * R.grad(W), 3)
    assert np.all(np.isfinite(got))
    assert np.linalg.norm(got - ref) <= 1e-10 * np.linalg.norm(ref)


def test_penalty_gradients_finite_at_zero_and_rank_deficient_matrices():
    """R and ∇R stay finite at W = 0 and at rank-deficient W (the documented floors / subgradients)."""
    rng = np.random.default_rng(2)
    Ws = [np.zeros((4, 3)), _with_singular_values(rng, 4, 3, np.array([1.0, 1e-300, 0.0]))]
    for spec in ("ratio", "nuclear", "schatten:1/3:1/2", "schatten:1/2:2/3", "schatten:2:1"):
        R = make_penalty(spec)
        for W in Ws:
            assert np.isfinite(R.value(W)) and np.all(np.isfinite(R.grad(W)))


@pytest.mark.parametrize("model", ["end-product", "layers"])
def test_tiny_initialization_follows_closed_form(model):
    """α = 1e-12 at depth 2 (docs/math.md §12, SMG14): full observation, ℓ = ½‖W − S‖², S = diag(1, 0.5,
    0.25), balanced W(0) = diag(σ₀): σ_i(t) = s e^{2st}/(e^{2st} − 1 + s/σ₀). The escape from the saddle at
    t ≈ ln(s/σ₀)/(2s) ≈ 14–55 is reproduced to 1e-6 with no underflow."""
    S = np.diag([1.0, 0.5, 0.25])
    sigma0 = np.array([1e-12, 2e-12, 5e-13])
    problem = full_observation_problem(S)
    factors = canonical_balanced_factors(np.diag(sigma0), 2)
    flow = EndProductFlow(problem, 2) if model == "end-product" else LayerwiseFlow(problem, 2)
    t_eval = np.linspace(0.0, 80.0, 41)
    traj = simulate(flow, factors, t_eval=t_eval, rtol=1e-11, atol=1e-24)
    assert traj.status == "ok", traj.message
    s = np.diag(S)
    e = np.exp(2 * s[None, :] * t_eval[:, None])
    ref = s * e / (e - 1 + s / sigma0)
    np.testing.assert_allclose(traj.sigma, np.sort(ref, axis=1)[:, ::-1], rtol=1e-6, atol=1e-14)
    assert traj.sigma[-1, 2] > 0.2  # every mode escaped


def test_tiny_initialization_velocity_matches_kronecker():
    """At a 1e-12 start the SVD-basis velocity is accurate relative to its own (tiny) size."""
    problem = synthetic_problem(6, 5, rank=2, observed=20, seed=0)
    W0 = 1e-12 * np.random.default_rng(5).standard_normal((6, 5))
    for depth in (2, 3, 5):
        v = end_product_velocity(W0, problem, depth)
        ref = _kron_velocity(W0, problem.grad(W0), depth)
        assert np.all(np.isfinite(v)) and np.linalg.norm(ref) > 0
        assert np.linalg.norm(v - ref) <= 1e-9 * np.linalg.norm(ref)


@pytest.mark.parametrize("init", ["identity", "gaussian", "balanced-gaussian"])
@pytest.mark.parametrize("depth", ["2", "4"])
def test_all_zero_initialization_is_refused_as_saddle(cli, tmp_path, init, depth):
    out = tmp_path / "run"
    res = cli("simulate", "--size", "5", "--rank", "1", "--observed", "10", "--depth", depth, "--init", init,
              "--init-scale", "0", "--t-end", "1", "--quiet", "--out", str(out))
    assert res.code == 2
    assert "saddle W = 0" in res.err and len(res.err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_all_zero_initialization_is_fine_at_depth_one(cli, tmp_path):
    """N = 1 has no saddle at 0: the run starts at W = 0 and moves."""
    out = tmp_path / "run"
    res = cli("simulate", "--size", "5", "--rank", "1", "--observed", "all", "--depth", "1",
              "--init-scale", "0", "--t-end", "5", "--n-save", "5", "--quiet", "--out", str(out))
    assert res.code == 0, res.err
    with np.load(out / "trajectory.npz") as z:
        assert np.all(z["W0"] == 0) and np.linalg.norm(z["W_final"]) > 0.1 * np.linalg.norm(z["W_star"])
        # full observation, N = 1: W(t) = W*(1 − e^{−2t}) for ℓ = mean squared error (c = 1, D = mn)
        np.testing.assert_allclose(z["W_final"], z["W_star"] * (1 - np.exp(-2 * 5 / 25)), rtol=1e-6)


@pytest.mark.parametrize("size", ["1", "1x4", "4x1", "7x3"])
@pytest.mark.slow
def test_degenerate_and_non_square_sizes_run(cli, tmp_path, size):
    """1×1, single-row, single-column and tall problems run end to end; the loss decreases monotonically
    (the directions outside W* decay only algebraically for N ≥ 2, so no fixed threshold is asserted)."""
    out = tmp_path / "run"
    res = cli("simulate", "--size", size, "--rank", "1", "--observed", "all", "--depth", "3",
              "--init", "identity", "--init-scale", "0.1", "--t-end", "100", "--n-save", "10", "--quiet",
              "--out", str(out))
    assert res.code == 0, res.err
    info = json.loads((out / "run.json").read_text())
    with np.load(out / "trajectory.npz") as z:
        loss, w_star, w0, sigma = z["loss"], z["W_star"], z["W0"], z["sigma"]
    assert info["status"] == "ok" and sigma.shape[1] == min(w_star.shape)
    assert np.all(np.isfinite(loss)) and np.all(np.diff(loss) <= 1e-9 * loss[0])
    if size == "1" and w_star[0, 0] < 0 < w0[0, 0]:
        # scalar depth-3 flow: w = 0 is a fixed point that w cannot cross, so w → 0 and ℓ → w*²
        assert loss[-1] <= loss[0] and loss[-1] > 0.9 * w_star[0, 0] ** 2
    else:
        assert loss[-1] < 1e-2 * loss[0]
