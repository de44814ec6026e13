"""Property-based tests (hypothesis) of the core identities, on random small shapes and depths:

* the SVD-basis end-product velocity equals the explicit Kronecker form −P_W vec(G) (docs/math.md §4);
* P_W is symmetric positive semidefinite (built column by column from the production code, no Kronecker);
* the ratio penalty is scale invariant and ⟨∇R, W⟩ = 0 (docs/math.md §3, Zhao22 Sec. 3);
* layer-wise gradient flow conserves W_{j+1}ᵀW_{j+1} − W_jW_jᵀ (docs/math.md §1, §6; ACH18).
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kron_reference import kron_preconditioner, unvec, vec

from flowsim.factors import balancedness_residuals, end_product
from flowsim.flows import LayerwiseFlow, apply_end_product_preconditioner, end_product_velocity
from flowsim.initializations import init_factors
from flowsim.penalties import make_penalty
from flowsim.problems import CompletionProblem
from flowsim.simulate import simulate

#: examples per property; raise it for a deeper search, e.g. FLOWSIM_HYPOTHESIS_EXAMPLES=1000
EXAMPLES = int(os.environ.get("FLOWSIM_HYPOTHESIS_EXAMPLES", "40"))
#: derandomized: CI sees the same examples every run (set the variable to explore new ones)
PROPS = settings(max_examples=EXAMPLES, deadline=None,
                 derandomize="FLOWSIM_HYPOTHESIS_EXAMPLES" not in os.environ,
                 suppress_health_check=[HealthCheck.too_slow])


@st.composite
def matrices(draw, max_dim: int = 5, allow_rank_deficient: bool = True):
    """(W, rng) with W m×n (1 ≤ m, n ≤ max_dim), possibly rank deficient, with repeated singular values or
    tiny/large scale."""
    m = draw(st.integers(1, max_dim))
    n = draw(st.integers(1, max_dim))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["generic", "low-rank", "repeated", "scaled"] if allow_rank_deficient
                                else ["generic", "repeated", "scaled"]))
    rng = np.random.default_rng(seed)
    if kind == "generic":
        W = rng.standard_normal((m, n))
    elif kind == "low-rank":
        r = draw(st.integers(0, min(m, n)))
        W = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
    elif kind == "repeated":
        U, _ = np.linalg.qr(rng.standard_normal((m, m)))
        V, _ = np.linalg.qr(rng.standard_normal((n, n)))
        S = np.zeros((m, n))
        k = min(m, n)
        S[np.arange(k), np.arange(k)] = draw(st.sampled_from([1.0, 0.3])) * (1 + (np.arange(k) >= k // 2))
        W = U @ S @ V.T
    else:
        W = 10.0 ** draw(st.integers(-6, 3)) * rng.standard_normal((m, n))
    return W, rng


@PROPS
@given(data=matrices(), depth=st.integers(1, 5))
def test_svd_velocity_equals_kronecker_form(data, depth):
    W, rng = data
    m, n = W.shape
    mask = rng.random((m, n)) < 0.5
    mask.flat[rng.integers(m * n)] = True
    problem = CompletionProblem(rng.standard_normal((m, n)), mask, reduction=str(rng.choice(["mean", "sum"])))
    got = end_product_velocity(W, problem, depth)
    ref = -unvec(kron_preconditioner(W, depth) @ vec(problem.grad(W)), (m, n))
    assert np.linalg.norm(got - ref) <= 1e-9 * max(np.linalg.norm(ref), 1e-300)


@PROPS
@given(data=matrices(max_dim=4), depth=st.integers(1, 5))
def test_preconditioner_is_symmetric_psd(data, depth):
    """P_W as a linear map on ℝ^{m×n} (columns = P_W applied to the basis E_ab) is symmetric PSD, and its
    spectrum is {K_kl} ≥ 0 with K_kl = Σ_j σ_k^{2(j−1)/N} σ_l^{2(N−j)/N}."""
    W, _ = data
    m, n = W.shape
    cols = []
    for b in range(n):  # column-major vec order
        for a in range(m):
            E = np.zeros((m, n))
            E[a, b] = 1.0
            cols.append(vec(apply_end_product_preconditioner(W, E, depth)))
    P = np.array(cols).T
    norm = max(np.linalg.norm(P), 1e-300)
    assert np.linalg.norm(P - P.T) <= 1e-10 * norm
    eig = np.linalg.eigvalsh((P + P.T) / 2)
    assert eig.min() >= -1e-10 * norm
    # depth 1: the identity
    if depth == 1:
        np.testing.assert_allclose(P, np.eye(m * n), atol=1e-12)


@PROPS
@given(data=matrices(allow_rank_deficient=False), c=st.floats(1e-3, 1e3))
def test_ratio_penalty_scale_invariant_and_orthogonal_to_W(data, c):
    W, _ = data
    R = make_penalty("ratio")
    g = R.grad(W)
    if np.linalg.norm(W) == 0:
        return
    assert abs(R.value(c * W) - R.value(W)) <= 1e-12 * R.value(W)
    # ∇R is homogeneous of degree −1: ∇R(cW) = ∇R(W)/c
    # (‖∇R‖ ≲ √rank/‖W‖_F sets the round-off scale; ∇R = 0 exactly for rank one)
    unit = np.sqrt(min(W.shape)) / np.linalg.norm(W)
    np.testing.assert_allclose(R.grad(c * W), g / c, rtol=1e-8, atol=1e-12 * unit / c)
    # Euler's identity for a degree-0 function: ⟨∇R, W⟩ = 0
    assert abs(np.vdot(g, W)) <= 1e-12 * unit * np.linalg.norm(W)
    # and the gradient is the derivative: a central difference along a random direction
    D = np.random.default_rng(0).standard_normal(W.shape)
    h = 1e-6 * np.linalg.norm(W)
    s = np.linalg.svd(W, compute_uv=False)
    if s.size > 1 and np.min(np.abs(np.diff(s))) < 1e-3 * s[0] or s[-1] < 1e-3 * s[0]:
        return  # R is not differentiable where singular values collide or vanish
    fd = (R.value(W + h * D) - R.value(W - h * D)) / (2 * h)
    assert abs(fd - np.vdot(g, D)) <= 1e-6 * unit * np.linalg.norm(D)


@settings(max_examples=max(EXAMPLES // 3, 1), deadline=None, derandomize=PROPS.derandomize,
          suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 4), n=st.integers(1, 4), depth=st.integers(2, 4), seed=st.integers(0, 2**16),
       penalty=st.sampled_from(["none", "ratio", "nuclear"]))
def test_layerwise_flow_conserves_balancedness(m, n, depth, seed, penalty):
    """d/dt (W_{j+1}ᵀW_{j+1} − W_jW_jᵀ) = 0 along layer-wise gradient flow of any f(W_N⋯W_1) (ACH18 Thm. 1
    proof), from unbalanced Gaussian factors, also with a spectral penalty."""
    rng = np.random.default_rng(seed)
    problem = CompletionProblem(rng.standard_normal((m, n)), np.ones((m, n), dtype=bool))
    factors = init_factors("gaussian", (m, n), depth, scale=0.5, seed=seed, width=3)
    flow = LayerwiseFlow(problem, depth, make_penalty(penalty), lam=0.05 if penalty != "none" else 0.0)
    traj = simulate(flow, factors, t_eval=np.array([0.0, 0.5, 2.0]), rtol=1e-11, atol=1e-13)
    if traj.status != "ok":  # a penalty kink can stall the solver; conservation is still checked up to there
        assert traj.status == "failed", traj.message
    y_end = _final_state(flow, factors, traj.t[-1])
    D0 = balancedness_residuals(factors)
    D1 = balancedness_residuals(flow.layer_factors(y_end))
    size = max(1.0, max(np.linalg.norm(F) ** 2 for F in flow.layer_factors(y_end)))
    assert np.linalg.norm(D1 - D0) <= 1e-7 * size
    np.testing.assert_allclose(end_product(flow.layer_factors(y_end)), traj.W_final, atol=1e-12)


def _final_state(flow: LayerwiseFlow, factors, t_end: float) -> np.ndarray:
    """The layer state at ``t_end`` (the trajectory keeps only end products): integrate again."""
    from flowsim.integrator import integrate

    y0 = flow.initial_state(factors)
    grid = np.array([0.0, t_end]) if t_end > 0 else np.array([0.0])
    res = integrate(flow, y0, grid, rtol=1e-11, atol=1e-13)
    return res.y[-1]
