"""flowsim.integrator.solve_flow: each kind of flow runs on its driver, and the flows themselves carry no
solver (the vector fields of flowsim.flows import only the math core)."""

from collections.abc import Sequence

import numpy as np
import pytest

from flowsim import LayerwiseFlow, init_factors, make_flow, make_penalty, solve_flow, synthetic_problem
from flowsim.flows import Flow
from flowsim.flows.adam import AdamSignFlow
from flowsim.flows.auto import AutoGradientFlow
from flowsim.problems import full_observation_problem


class _Decay(Flow):
    """ẏ = −y with its exact Jacobian (a flow outside flowsim's own)."""

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(factors[0], dtype=float).ravel()

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        return -y

    def end_product(self, y: np.ndarray) -> np.ndarray:
        return y.reshape(1, -1)

    def jac(self, t: float, y: np.ndarray) -> np.ndarray:
        return -np.eye(y.size)


def test_flows_have_no_solver():
    for cls in (Flow, LayerwiseFlow, AdamSignFlow, AutoGradientFlow):
        assert not hasattr(cls, "solve")


def test_a_plain_flow_runs_on_integrate_with_its_jacobian():
    res = solve_flow(_Decay(), np.ones(2), np.array([0.0, 1.0]), method="Radau", rtol=1e-10, atol=1e-12)
    assert res.status == "ok" and res.njev > 0
    np.testing.assert_allclose(res.y[-1], np.exp(-1.0), rtol=1e-8)


def test_layerwise_flow_on_the_scipy_engine_says_so():
    problem = synthetic_problem(6, 5, 2, 20, seed=0)
    flow = LayerwiseFlow(problem, 2, engine="scipy")
    y0 = flow.initial_state(init_factors("gaussian", problem.shape, 2, 0.1, seed=1))
    res = solve_flow(flow, y0, np.array([0.0, 0.5]))
    assert res.status == "ok" and res.extra["engine"] == "scipy"


def test_arrival_and_sliding_drivers():
    W_star = np.array([[1.0, -2.0], [0.5, 0.0]])
    sign = AdamSignFlow(full_observation_problem(W_star), 1, eps=1e-8)
    res = solve_flow(sign, sign.initial_state([W_star + 0.5]), np.array([0.0, 1.0]), rtol=1e-9, atol=1e-12)
    assert res.status == "ok" and res.extra["events"][0]["t"] == pytest.approx(0.5, abs=1e-3)
    assert [p["method"] for p in res.extra["phases"]] == ["DOP853", "Radau"]
    problem = synthetic_problem(6, 6, 2, 30, seed=2)
    auto = make_flow("gf", problem, 1, make_penalty("nuclear"), 0.05, model="auto")
    y0 = auto.initial_state(init_factors("gaussian", problem.shape, 1, 0.1, seed=3))
    res = solve_flow(auto, y0, np.array([0.0, 1.0, 20.0]))
    assert auto.formulation == "filippov" and res.status == "ok"
    assert res.extra["formulation"] == "filippov" and sum(res.extra["event_counts"].values()) > 0
