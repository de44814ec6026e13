"""Batched ensembles: every flow of a batch equals its own compiled run bit for bit and the scipy run to
the tolerance, with per-flow step control, per-flow budgets and per-flow failures."""

import numpy as np
import pytest

from flowsim import LayerwiseFlow, init_factors, make_penalty, simulate, synthetic_problem
from flowsim.errors import BadInputError

pytest.importorskip("numba")

from flowsim.ensemble import simulate_ensemble  # noqa: E402


def _batch():
    """Three flows of one shape: different problems, seeds, initial scales, penalties and λ."""
    specs = [(0, "none", 0.0, 1e-3), (1, "ratio", 0.05, 0.3), (2, "nuclear", 0.01, 0.3)]
    flows, factors = [], []
    for seed, pen, lam, scale in specs:
        problem = synthetic_problem(8, 8, rank=2, observed=32, seed=seed)
        flows.append(lambda engine, p=problem, pen=pen, lam=lam: LayerwiseFlow(p, 3, make_penalty(pen), lam,
                                                                                engine=engine))
        factors.append(init_factors("gaussian", problem.shape, 3, scale, seed=seed))
    return flows, factors


@pytest.mark.parametrize("threads", [1, 2])
def test_ensemble_equals_single_runs(threads):
    makers, factors = _batch()
    t_end = 20.0
    trajs = simulate_ensemble([m("numba") for m in makers], factors, t_end, n_save=30, threads=threads)
    steps = set()
    for make, fac, tr in zip(makers, factors, trajs):
        alone = simulate(make("numba"), fac, t_end, n_save=30)
        scipy = simulate(make("scipy"), fac, t_end, n_save=30)
        assert tr.status == "ok" and tr.stats["engine"] == "numba" and tr.stats["ensemble_size"] == 3
        np.testing.assert_array_equal(tr.sigma, alone.sigma)  # the same steps as alone, not shared ones
        assert tr.stats["nfev"] == alone.stats["nfev"] == scipy.stats["nfev"]
        np.testing.assert_allclose(tr.sigma, scipy.sigma, rtol=0, atol=1e-7 * scipy.sigma.max())  # rtol 1e-7
        np.testing.assert_allclose(tr.loss, scipy.loss, rtol=1e-6, atol=1e-12)
        steps.add(tr.stats["steps"])
    assert len(steps) > 1  # per-flow step control: the flows took different numbers of steps


def test_ensemble_step_budget_stops_each_flow_at_its_own_budget():
    makers, factors = _batch()
    trajs = simulate_ensemble([m("numba") for m in makers], factors, 1e4, n_save=30, max_steps=40)
    for make, fac, tr in zip(makers, factors, trajs):
        alone = simulate(make("scipy"), fac, 1e4, n_save=30, max_steps=40)
        assert tr.status == alone.status == "failed"
        assert tr.message.startswith("step budget of 40 steps exhausted at t=")
        assert tr.stats["t_last"] == pytest.approx(alone.stats["t_last"], rel=1e-4)  # same steps, rounding
        assert tr.stats["steps"] == 40 and len(tr) == len(alone)


def test_ensemble_one_bad_flow_does_not_stop_the_others():
    makers, factors = _batch()
    bad = [f.copy() for f in factors[1]]
    bad[0][0, 0] = 2e100  # beyond the blow-up bound (1e100), W itself stays finite
    trajs = simulate_ensemble([m("numba") for m in makers], [factors[0], bad, factors[2]], 50.0, n_save=10)
    assert [t.status for t in trajs] == ["ok", "diverged", "ok"]
    assert "initial state is not finite or exceeds 1e+100" in trajs[1].message and len(trajs[1]) == 1


def test_ensemble_rejects_mixed_shapes_and_other_flows():
    makers, factors = _batch()
    other = synthetic_problem(8, 6, rank=2, observed=30, seed=0)
    with pytest.raises(BadInputError, match="same shapes"):
        simulate_ensemble([makers[0]("numba"), LayerwiseFlow(other, 3)],
                          [factors[0], init_factors("gaussian", (8, 6), 3, 1e-3)], 10.0)
    from flowsim import EndProductFlow

    with pytest.raises(BadInputError, match="LayerwiseFlow"):
        simulate_ensemble([EndProductFlow(other, 3)], [init_factors("gaussian", (8, 6), 3, 1e-3)], 10.0)
    with pytest.raises(BadInputError):
        simulate_ensemble([makers[0]("numba")], [], 10.0)
