"""The torch engine of the batched ensembles: every flow takes the steps of its scipy run (same evaluations,
σ to the tolerance), with per-flow step control, budgets and failures; the device choice (CUDA untested
here: ``device="auto"`` must fall back to the CPU, ``device="cuda"`` must refuse clearly)."""

from dataclasses import dataclass

import numpy as np
import pytest

from flowsim import LayerwiseFlow, init_factors, make_penalty, simulate, synthetic_problem
from flowsim.ensemble import ensemble_engine, simulate_ensemble
from flowsim.errors import BadInputError
from flowsim.penalties import Penalty

torch = pytest.importorskip("torch")


def _batch():
    """Three flows of one shape: different problems, seeds, initial scales, penalties and λ."""
    specs = [(0, "none", 0.0, 1e-3), (1, "ratio", 0.05, 0.3), (2, "nuclear", 0.01, 0.3)]
    makers, factors = [], []
    for seed, pen, lam, scale in specs:
        problem = synthetic_problem(8, 8, rank=2, observed=32, seed=seed)
        makers.append(lambda engine="scipy", p=problem, pen=pen, lam=lam: LayerwiseFlow(
            p, 3, make_penalty(pen), lam, engine=engine))
        factors.append(init_factors("gaussian", problem.shape, 3, scale, seed=seed))
    return makers, factors


@pytest.mark.slow
def test_torch_ensemble_takes_the_scipy_steps():
    makers, factors = _batch()
    t_end = 20.0
    trajs = simulate_ensemble([m() for m in makers], factors, t_end, n_save=30, engine="torch", threads=1,
                              device="cpu")
    steps = set()
    for make, fac, tr in zip(makers, factors, trajs):
        scipy = simulate(make("scipy"), fac, t_end, n_save=30)
        assert tr.status == "ok" and tr.message == "reached t_end"
        assert (tr.stats["engine"], tr.stats["device"], tr.stats["ensemble_size"]) == ("torch", "cpu", 3)
        assert tr.stats["nfev"] == scipy.stats["nfev"] and tr.stats["steps"] == scipy.stats["steps"]
        np.testing.assert_array_equal(tr.t, scipy.t)
        # the tolerance of the solve (rtol 1e-7): the sums run in another order than scipy's
        np.testing.assert_allclose(tr.sigma, scipy.sigma, rtol=0, atol=1e-7 * scipy.sigma.max())
        np.testing.assert_allclose(tr.loss, scipy.loss, rtol=1e-6, atol=1e-12)
        steps.add(tr.stats["steps"])
    assert len(steps) > 1  # per-flow step control: the flows took different numbers of steps


@pytest.mark.slow
def test_torch_and_numba_ensembles_agree():
    pytest.importorskip("numba")
    problems = [synthetic_problem(6, 6, rank=2, observed=24, seed=s) for s in range(5)]
    factors = [init_factors("gaussian", (6, 6), 3, 1e-2, seed=s) for s in range(5)]
    run = lambda engine: simulate_ensemble([LayerwiseFlow(p, 3) for p in problems], factors, 300.0,  # noqa: E731
                                           n_save=20, engine=engine, device="cpu", threads=1)
    for a, b in zip(run("torch"), run("numba")):
        assert a.stats["engine"] == "torch" and b.stats["engine"] == "numba"
        assert a.stats["nfev"] == b.stats["nfev"]
        np.testing.assert_allclose(a.sigma[-1], b.sigma[-1], rtol=0, atol=1e-7 * b.sigma[-1][0])


@pytest.mark.slow
def test_torch_ensemble_budgets_and_bad_flows():
    makers, factors = _batch()
    trajs = simulate_ensemble([m() for m in makers], factors, 1e4, n_save=30, max_steps=40, engine="torch",
                              threads=1)
    for make, fac, tr in zip(makers, factors, trajs):
        alone = simulate(make("scipy"), fac, 1e4, n_save=30, max_steps=40)
        assert tr.status == alone.status == "failed"
        assert tr.message.startswith("step budget of 40 steps exhausted at t=")
        assert tr.stats["t_last"] == pytest.approx(alone.stats["t_last"], rel=1e-4)
        assert tr.stats["steps"] == 40 and len(tr) == len(alone)
    bad = [f.copy() for f in factors[1]]
    bad[0][0, 0] = 2e100  # beyond the blow-up bound (1e100), W itself stays finite
    trajs = simulate_ensemble([m() for m in makers], [factors[0], bad, factors[2]], 5.0, n_save=10,
                              engine="torch", threads=1)
    assert [t.status for t in trajs] == ["ok", "diverged", "ok"]
    assert "initial state is not finite or exceeds 1e+100" in trajs[1].message and len(trajs[1]) == 1
    trajs = simulate_ensemble([m() for m in makers], factors, 1e4, n_save=30, max_wall_time=0.0,
                              engine="torch", threads=1)
    assert all(t.status == "failed" and t.message.startswith("wall-time budget of 0 s exhausted")
               for t in trajs)


def test_device_choice_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    makers, factors = _batch()
    trajs = simulate_ensemble([makers[0]()], [factors[0]], 5.0, n_save=5, engine="torch", threads=1,
                              device="auto")
    assert trajs[0].stats["device"] == "cpu"
    with pytest.raises(BadInputError, match="device 'cuda' was asked for, but torch sees no CUDA device"):
        simulate_ensemble([makers[0]()], [factors[0]], 5.0, engine="torch", threads=1, device="cuda")
    with pytest.raises(BadInputError, match="no CUDA device"):
        simulate_ensemble([makers[0]()], [factors[0]], 5.0, engine="auto", device="cuda")
    with pytest.raises(BadInputError, match="runs on the CPU"):
        simulate_ensemble([makers[0]()], [factors[0]], 5.0, engine="numba", device="cuda")
    with pytest.raises(BadInputError, match="engine must be one of"):
        simulate_ensemble([makers[0]()], [factors[0]], 5.0, engine="jax")
    with pytest.raises(BadInputError, match="device must be one of"):
        simulate_ensemble([makers[0]()], [factors[0]], 5.0, device="tpu")
    assert ensemble_engine("torch", "auto") == "torch"
    numba = pytest.importorskip("numba")
    assert numba is not None and ensemble_engine("auto", "auto") == "numba"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ensemble_engine("auto", "auto") == "torch"  # a CUDA device takes the batched torch engine


@pytest.mark.parametrize("penalty,lam", [("none", 0.0), ("ratio", 0.05), ("nuclear", 0.02),
                                         ("schatten:1/2:2/3", 0.03)])
def test_batched_field_equals_the_numpy_field(penalty, lam):
    """The batched field of the torch engine is LayerwiseFlow's field (every penalty), row by row."""
    from flowsim.ensemble_torch import BatchField

    problems = [synthetic_problem(7, 5, rank=2, observed=20, seed=s) for s in range(3)]
    flows = [LayerwiseFlow(p, 3, make_penalty(penalty), lam, engine="scipy") for p in problems]
    ys = np.array([f.initial_state(init_factors("gaussian", (7, 5), 3, 0.5, seed=s))
                   for s, f in enumerate(flows)])
    field = BatchField.build(problems, flows[0].packer.dims, [f.penalty for f in flows],
                             [f.lam for f in flows], torch.device("cpu"))
    out = torch.empty(ys.shape, dtype=torch.float64)
    field(torch.as_tensor(ys), out)
    for f, y, v in zip(flows, ys, out.numpy()):
        np.testing.assert_allclose(v, f(0.0, y), rtol=1e-12, atol=1e-13 * np.abs(f(0.0, y)).max())
    bad = ys.copy()
    bad[1, 3] = np.inf
    field(torch.as_tensor(bad), out)  # a non-finite state: a non-finite velocity in its row only
    assert not np.all(np.isfinite(out[1].numpy())) and np.all(np.isfinite(out[[0, 2]].numpy()))


def test_torch_ensemble_rejects_what_it_cannot_batch():
    makers, factors = _batch()
    other = synthetic_problem(8, 6, rank=2, observed=30, seed=0)
    with pytest.raises(BadInputError, match="same shapes"):
        simulate_ensemble([makers[0](), LayerwiseFlow(other, 3)],
                          [factors[0], init_factors("gaussian", (8, 6), 3, 1e-3)], 10.0, engine="torch")

    @dataclass(frozen=True)
    class Elsewise(Penalty):
        name: str = "elsewise"

    with pytest.raises(BadInputError, match="no gradient for the penalty"):
        simulate_ensemble([LayerwiseFlow(other, 3, Elsewise(), 0.1, engine="scipy")],
                          [init_factors("gaussian", (8, 6), 3, 1e-3)], 10.0, engine="torch", threads=1)
