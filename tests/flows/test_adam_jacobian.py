"""The dense Jacobians of the layer-state Adam flows (``adam-layer``, ``adam-sign``) against central finite
differences of the field, with and without the ratio penalty, and an arrival run that uses them."""

from __future__ import annotations

import numpy as np
import pytest

from flowsim.flows import make_flow
from flowsim.initializations import init_factors
from flowsim.penalties import make_penalty
from flowsim.problems import synthetic_problem
from flowsim.simulate import simulate


def _central_differences(flow, y: np.ndarray, h: float) -> np.ndarray:
    cols = []
    for k in range(y.size):
        e = np.zeros_like(y)
        e[k] = h
        cols.append((flow(0.0, y + e) - flow(0.0, y - e)) / (2 * h))
    return np.array(cols).T


@pytest.mark.parametrize("name", ["adam-layer", "adam-sign"])
@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_jacobian_against_finite_differences(name, lam):
    P = synthetic_problem(4, 3, 2, 8, seed=1)
    # ε = 1e-2 keeps the sign field's turnover scale well above the difference step
    flow = make_flow(name, P, 3, make_penalty("ratio" if lam else "none"), lam, model="layers", eps=1e-2)
    y = flow.initial_state(init_factors("gaussian", P.shape, 3, 1.0, seed=5))
    J = flow.jac(0.0, y)
    ref = _central_differences(flow, y, 1e-6)
    assert J.shape == (y.size, y.size)
    np.testing.assert_allclose(J, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    assert np.abs(J).max() > 0.1  # not a vanishing Jacobian


def test_adam_layer_jacobian_has_the_variance_coupling():
    """The per-layer variance makes ∂Ẇ_j/∂g_j a full block (diagonal + rank one), not a diagonal."""
    P = synthetic_problem(4, 3, 2, 8, seed=1)
    flow = make_flow("adam-layer", P, 2, None, 0.0, model="layers", eps=1e-2)
    y = flow.initial_state(init_factors("gaussian", P.shape, 2, 1.0, seed=5))
    (d, u, w), _ = flow.field_derivative(flow.arrival_gradient(y))
    assert np.abs(np.outer(u, w)).max() > 1e-3 * np.abs(d).max()


@pytest.mark.slow
def test_adam_layer_arrival_with_the_jacobian_reaches_t_end():
    """3×3 depth 2: the arrival driver's Radau phase uses the flow's Jacobian, and the run ends ``ok`` at
    t_end with the state held once the arrival is complete."""
    prob = synthetic_problem(3, 3, 1, 7, seed=1)
    f = init_factors("balanced-gaussian", prob.shape, 2, 1.0, seed=3)
    flow = make_flow("adam-layer", prob, 2, None, 0.0, model="layers")
    traj = simulate(flow, f, 3.0, t_eval=np.linspace(0.0, 3.0, 11), rtol=1e-8, atol=1e-11, progress=False,
                    max_wall_time=120)
    assert traj.status == "ok" and traj.t[-1] == 3.0, traj.message
    phases = traj.stats["phases"]
    assert [p["method"] for p in phases] == ["DOP853", "Radau"] and phases[1]["njev"] > 0
    assert traj.loss[-1] < 1e-12
