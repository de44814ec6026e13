"""The compiled (numba) training engine: step by step against ``torch.optim`` with autograd gradients, and
end to end against the torch engine of ``train`` (same trajectories, records, divergence bookkeeping)."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from reference_problems import rect_problem
from test_validation_optimizers import CASES  # every optimizer, with defaults and with every option changed

from flowsim.errors import BadInputError
from flowsim.initializations import init_factors
from flowsim.penalties import Penalty, make_penalty
from flowsim.validation.batched import BatchedProblems
from flowsim.validation.compiled_runs import CompiledRuns, numba_available
from flowsim.validation.optimizers import make_optimizer, torch_optimizer
from flowsim.validation.train import train, train_batched

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")

P = rect_problem()

LRS = {"gd": 0.05, "adam": 0.003, "adagrad": 0.01, "adamax": 0.003, "rmsprop": 0.001}


def _autograd_objective(theta, problem, penalty, lam):
    """c Σ_Ω (W − W*)²/D + λR(W) through torch autograd (R through ``svdvals``): an independent gradient."""
    W = theta[0]
    for F in theta[1:]:
        W = F @ W
    mask = torch.as_tensor(problem.mask, dtype=torch.float64)
    R = mask * (W - torch.as_tensor(problem.W_star))
    L = problem.scale * (R * R).sum() / problem.denominator
    if penalty == "ratio":
        s = torch.linalg.svdvals(W)
        L = L + lam * s.sum() / torch.sqrt((s * s).sum())
    elif penalty == "nuclear":
        L = L + lam * torch.linalg.svdvals(W).sum()
    return L


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("penalty", ["none", "ratio"])
@pytest.mark.parametrize("name,hyper", CASES)
def test_each_step_matches_torch_optim(name, hyper, penalty, depth):
    f = init_factors("gaussian", P.shape, depth, 0.7, seed=5)
    lr, lam = LRS[name], 0.05
    theta = [torch.tensor(F, requires_grad=True) for F in f]
    ref = torch_optimizer(name, theta, lr, **hyper)
    bp = BatchedProblems.stack([P], make_penalty(penalty), [lam], torch.device("cpu"), torch.float64)
    opt = make_optimizer(name, [torch.tensor(F[None]) for F in f], lr, **hyper)
    runs = CompiledRuns([f], bp, opt, blowup=1e100)
    runs.start()
    for k in range(1, 16):
        ref.zero_grad()
        _autograd_objective(theta, P, penalty, lam).backward()
        ref.step()
        runs.advance(k)
        for mine, th in zip(runs.factors(), theta):
            scale = float(torch.max(torch.abs(th.detach())))
            np.testing.assert_allclose(mine[0], th.detach().numpy(), rtol=0, atol=1e-13 * scale)
    assert runs.bad_iterations()[0] == -1
    moved = max(np.max(np.abs(a[0] - b)) for a, b in zip(runs.factors(), f))
    assert moved > 0.02  # the factors moved: the comparison was not vacuous


def _same_trajectories(a, b, rtol):
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_array_equal(a.extra["iteration"], b.extra["iteration"])
    assert (a.status, a.message) == (b.status, b.message)
    assert a.stats["iterations"] == b.stats["iterations"]
    scale = np.max(np.abs(b.W), axis=(1, 2))[:, None, None]
    np.testing.assert_allclose(a.W / scale, b.W / scale, rtol=0, atol=rtol)
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=rtol, atol=rtol * np.max(b.sigma))
    for key in ("loss", "test_error", "erank", "norm_nuc"):
        ref = getattr(b, key)
        np.testing.assert_allclose(getattr(a, key), ref, rtol=rtol, atol=rtol * np.max(np.abs(ref)))
    np.testing.assert_allclose(a.W_final, b.W_final, rtol=0, atol=rtol * np.max(np.abs(b.W_final)))


@pytest.mark.parametrize("penalty", ["none", "ratio", "nuclear", "schatten:1/2:2/3"])
@pytest.mark.parametrize("name", ["gd", "adam", "adagrad", "adamax", "rmsprop"])
@pytest.mark.slow
def test_train_engines_give_the_same_trajectory(name, penalty):
    """100 iterations, before the penalties drive singular values to ~0 (where the nuclear support and the
    Schatten σ^{p−1} make the dynamics amplify round-off: both engines then differ as much as the torch
    engine differs from itself under a 1e-15 change of one initial entry)."""
    f = init_factors("gaussian", P.shape, 3, 0.7, seed=6)
    kw = dict(optimizer=name, lr=LRS[name], iters=100, penalty=make_penalty(penalty), lam=0.02)
    kw |= dict(n_record=25, save_matrices=True)
    a = train(P, f, engine="numba", **kw)
    b = train(P, f, engine="torch", **kw)
    assert a.stats["engine"] == "numba" and b.stats["engine"] == "torch"
    _same_trajectories(a, b, 1e-10)
    assert a.loss[-1] < 0.7 * a.loss[0]  # the runs trained


@pytest.mark.parametrize(
    "name,lr,iters",
    [("gd", 0.05, 3000), ("adam", 1e-3, 3000), ("adagrad", 0.01, 3000), ("adamax", 1e-3, 3000),
     ("rmsprop", 1e-4, 1500)],
)  # fmt: skip
@pytest.mark.slow
def test_long_runs_agree(name, lr, iters, small_problem):
    """Thousands of iterations without penalty on a 10×10 depth-3 problem: the engines agree to ~1e-15.
    (RMSprop, without bias correction, later enters a phase that amplifies round-off ~1e12-fold: there
    the torch engine differs from itself by as much under a 1e-15 change of one initial entry.)"""
    problem = small_problem
    f = init_factors("gaussian", problem.shape, 3, 1.0, seed=1)
    kw = dict(optimizer=name, lr=lr, iters=iters, n_record=30, save_matrices=True)
    a = train(problem, f, engine="numba", **kw)
    b = train(problem, f, engine="torch", **kw)
    _same_trajectories(a, b, 1e-12)
    assert a.loss[-1] < 0.7 * a.loss[0]


@pytest.mark.slow
def test_batched_numba_equals_one_by_one_and_torch():
    problems = [rect_problem(seed=s) for s in range(4)]
    inits = [init_factors("gaussian", P.shape, 3, 0.7, seed=10 + s) for s in range(4)]
    lrs, lams = [0.01, 0.003, 0.002, 0.004], [0.0, 0.01, 0.02, 0.005]
    hyper = {"beta1": [0.8, 0.9, 0.85, 0.7]}
    kw = dict(optimizer="adam", iters=300, penalty=make_penalty("ratio"), n_record=12, save_matrices=True)
    batch = train_batched(problems, inits, lr=lrs, lam=lams, hyper=hyper, engine="numba", **kw)
    ref = train_batched(problems, inits, lr=lrs, lam=lams, hyper=hyper, engine="torch", **kw)
    for b in range(4):
        hb = {"beta1": hyper["beta1"][b]}
        one = train(problems[b], inits[b], lr=lrs[b], lam=lams[b], hyper=hb, engine="numba", **kw)
        np.testing.assert_array_equal(batch[b].W, one.W)  # runs never mix: bitwise the same
        _same_trajectories(batch[b], ref[b], 1e-10)


def test_mixed_momentum_batch_is_per_run_torch_optim():
    """A run with μ = 0 inside a batch with momentum is plain SGD in both engines (torch.optim semantics)."""
    f = init_factors("gaussian", P.shape, 2, 0.7, seed=2)
    hyper = {"momentum": [0.0, 0.9], "dampening": 0.3}
    kw = dict(optimizer="gd", lr=0.05, iters=50, n_record=5, save_matrices=True, hyper=hyper)
    for engine in ("numba", "torch"):
        runs = train_batched(P, [f, f], engine=engine, **kw)
        plain = train(P, f, optimizer="gd", lr=0.05, iters=50, n_record=5, save_matrices=True, engine=engine)
        np.testing.assert_allclose(runs[0].W, plain.W, rtol=1e-13, atol=1e-15)
        assert not np.allclose(runs[1].W[-1], plain.W[-1])


def test_divergence_bookkeeping_is_the_same():
    good = init_factors("gaussian", P.shape, 3, 1.0, seed=4)
    kw = dict(optimizer="gd", lr=[0.05, 50.0], iters=400, n_record=40, check_every=7, save_matrices=True)
    a = train_batched(P, [good, good], engine="numba", **kw)
    b = train_batched(P, [good, good], engine="torch", **kw)
    assert a[1].status == "diverged" and "iteration" in a[1].message
    for x, y in zip(a, b):
        _same_trajectories(x, y, 1e-10)
    # all runs diverged: both engines stop at the same check point
    a = train(P, good, optimizer="gd", lr=50.0, iters=400, check_every=7, engine="numba")
    b = train(P, good, optimizer="gd", lr=50.0, iters=400, check_every=7, engine="torch")
    assert a.status == b.status == "diverged" and a.message == b.message
    assert a.stats["iterations"] == b.stats["iterations"] and len(a) == len(b)


@dataclass(frozen=True)
class _CustomPenalty(Penalty):
    """A penalty without a compiled kernel (the torch engine must run)."""

    name: str = "custom"


def test_engine_choice_and_record():
    f = init_factors("gaussian", P.shape, 2, 0.7, seed=1)
    auto = train(P, f, optimizer="adam", lr=0.01, iters=5)
    assert auto.stats["engine"] == "numba" and auto.stats["engine_note"].startswith("auto")
    f32 = train(P, f, optimizer="adam", lr=0.01, iters=5, dtype="float32")
    assert f32.stats["engine"] == "torch" and "float32" in f32.stats["engine_note"]
    custom = train(P, f, optimizer="adam", lr=0.01, iters=5, penalty=_CustomPenalty(), lam=0.1)
    assert custom.stats["engine"] == "torch" and "custom" in custom.stats["engine_note"]
    # λ = 0: the penalty is not used, so the compiled engine still applies
    assert train(P, f, iters=5, penalty=_CustomPenalty(), lam=0.0).stats["engine"] == "numba"
    with pytest.raises(BadInputError, match="float32"):
        train(P, f, iters=5, dtype="float32", engine="numba")
    with pytest.raises(BadInputError, match="engine"):
        train(P, f, iters=5, engine="jax")


@pytest.mark.parametrize("engine", ["numba", "torch"])
def test_interrupt_keeps_the_records_and_says_where(engine, monkeypatch):
    from flowsim.validation.batched import TorchRuns

    cls = CompiledRuns if engine == "numba" else TorchRuns
    advance = cls.advance

    def advance_then_interrupt(self, k_to):
        if k_to > 120:
            raise KeyboardInterrupt
        advance(self, k_to)

    monkeypatch.setattr(cls, "advance", advance_then_interrupt)
    f = init_factors("gaussian", P.shape, 3, 0.7, seed=1)
    tr = train(P, f, optimizer="adam", lr=0.003, iters=1000, n_record=30, save_matrices=True, engine=engine)
    assert tr.status == "interrupted" and tr.stats["interrupted"]
    k_last = int(tr.extra["iteration"][-1])
    assert 0 < k_last <= 120 and tr.stats["iterations"] >= k_last
    assert f"at iteration {tr.stats['iterations']}" in tr.message
    np.testing.assert_array_equal(tr.W_final, tr.W[-1])
