"""docs/math.md §12: integrator accuracy against the decoupled-mode closed forms (SMG14 / ACHL19).

Full observation, ℓ = ½‖W − S‖², S = diag(s), W(0) = diag(σ0) with balanced factors:
σ̇ = N σ^{2−2/N}(s − σ). The error must be within 10× the requested tolerance, measured on the solver's
state: σ_i for the end-product model (state W), σ_i^{1/N} for the layer-wise model (state: balanced factors,
whose singular values are σ_i^{1/N}).

Horizon: t ≤ 3 covers the whole transient (every mode within 1e-8 of its target). Beyond it, on the stable
equilibrium, explicit DOP853 with scipy's plain step-size control runs at its stability boundary and its
global error exceeds the local tolerance (scalar σ̇ = 4σ^{3/2}(3 − σ) with rtol 1e-10: 4e-9 at t = 4.2,
13× the tolerance, in plain ``solve_ivp`` as well); the implicit Radau method is checked there instead.
"""

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq

from flowsim import (
    EndProductFlow,
    LayerwiseFlow,
    canonical_balanced_factors,
    full_observation_problem,
    simulate,
)

S = np.array([3.0, 1.5, 0.7])
SIGMA0 = np.array([1.0, 0.6, 0.45])
RTOL, ATOL = 1e-10, 1e-12


def closed_form(t: float, s: float, s0: float, depth: int) -> float:
    """σ(t) of docs/math.md §12: closed forms for N = 1, 2, 4; quadrature of t(σ) (to 1e-12) otherwise."""
    if depth == 1:
        return s + (s0 - s) * np.exp(-t)
    if depth == 2:
        e = np.exp(2 * s * t)
        return s * e / (e - 1 + s / s0)
    if depth == 4:
        def t_of(x):
            artanh_gap = np.arctanh(np.sqrt(x / s)) - np.arctanh(np.sqrt(s0 / s))
            return (1 / (2 * s)) * (s0**-0.5 - x**-0.5 + artanh_gap / np.sqrt(s))
    else:
        def t_of(x):
            return quad(lambda u: 1.0 / (depth * u ** (2 - 2 / depth) * (s - u)), s0, x,
                        epsabs=1e-13, epsrel=1e-13, limit=200)[0]
    if t == 0:
        return s0
    hi = s * (1 - 1e-15)
    if t_of(hi) < t:  # converged to s within round-off
        return s
    return brentq(lambda x: t_of(x) - t, s0, hi, xtol=1e-15, rtol=1e-15, maxiter=500)


def _max_error_ratio(traj, depth: int, state_power: float) -> float:
    worst = 0.0
    for k, t in enumerate(traj.t):
        exact = np.sort([closed_form(t, s, s0, depth) for s, s0 in zip(S, SIGMA0)])[::-1] ** state_power
        got = traj.sigma[k] ** state_power
        worst = max(worst, float(np.max(np.abs(got - exact) / (RTOL * exact + ATOL))))
    return worst


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("flow_cls", [EndProductFlow, LayerwiseFlow])
def test_decoupled_modes_match_closed_form(depth, flow_cls):
    problem = full_observation_problem(np.diag(S))
    factors = canonical_balanced_factors(np.diag(SIGMA0), depth)
    # scipy's DOP853 (the compiled engine takes the same steps; its agreement with this path is tested in
    # tests/integrator/test_compiled_flow.py against the round-off sensitivity of the dense output)
    flow = flow_cls(problem, depth, engine="scipy") if flow_cls is LayerwiseFlow else flow_cls(problem, depth)
    traj = simulate(flow, factors, 3.0, n_save=25, t_min=0.05, rtol=RTOL, atol=ATOL,
                    progress=False)
    assert traj.status == "ok"
    power = 1.0 if flow_cls is EndProductFlow else 1.0 / depth
    assert _max_error_ratio(traj, depth, power) <= 10.0
    # the modes actually moved: σ reaches the targets s at the end
    assert np.allclose(np.sort(traj.sigma[-1])[::-1], np.sort(S)[::-1], rtol=0.05)


@pytest.mark.parametrize("depth", [2, 4])
@pytest.mark.slow
def test_equilibrium_phase_with_implicit_solver(depth):
    problem = full_observation_problem(np.diag(S))
    factors = canonical_balanced_factors(np.diag(SIGMA0), depth)
    traj = simulate(EndProductFlow(problem, depth), factors, 8.0, n_save=25, t_min=0.05, method="Radau",
                    rtol=RTOL, atol=ATOL, progress=False)
    assert traj.status == "ok"
    assert _max_error_ratio(traj, depth, 1.0) <= 10.0


def test_closed_forms_agree_with_quadrature():
    """The N = 2 and N = 4 closed forms are checked against the generic quadrature route."""
    for depth in (2, 4):
        def rate(u, N=depth):
            return 1.0 / (N * u ** (2 - 2 / N) * (1.5 - u))

        for t in (0.3, 1.0, 2.5):
            a = closed_form(t, 1.5, 0.05, depth)
            t_q = quad(rate, 0.05, a, epsabs=1e-13)[0]
            assert t_q == pytest.approx(t, rel=1e-9)
