"""Discrete training: batched == one by one, closed-form gradients vs autograd, metrics, time map, divergence,
and the ``flowsim train`` command (docs/math.md §11; docs/contract.md)."""

import json

import numpy as np
import pytest
import torch
from reference_problems import rect_problem

from flowsim.cli import main
from flowsim.factors import end_product, prefix_products
from flowsim.flows import LayerwiseFlow
from flowsim.flows.adam import AdamODEFlow
from flowsim.initializations import init_factors
from flowsim.metrics import matrix_metrics
from flowsim.penalties import make_penalty
from flowsim.trajectory import load_run
from flowsim.validation.batched import BatchedProblems, layer_gradients
from flowsim.validation.timemap import flow_iterations, iteration_times, iterations_for_horizon
from flowsim.validation.train import record_iterations, train, train_batched

P = rect_problem()


def _factors(seed, depth=3, scale=0.5, kind="gaussian"):
    return init_factors(kind, P.shape, depth, scale, seed=seed)


@pytest.mark.parametrize("penalty", ["none", "ratio"])
def test_closed_form_layer_gradients_match_autograd(penalty):
    f = _factors(0)
    pen = make_penalty(penalty)
    bp = BatchedProblems.stack([P], pen, [0.05], torch.device("cpu"), torch.float64)
    params = [torch.tensor(F[None]) for F in f]
    pre = prefix_products(params, identity=False)
    loss, G = bp.loss_and_grad(pre[-1])
    grads = layer_gradients(params, G, pre)
    # independent reference: autograd through the product and torch's SVD
    theta = [torch.tensor(F, requires_grad=True) for F in f]
    W = theta[2] @ theta[1] @ theta[0]
    mask = torch.as_tensor(P.mask, dtype=torch.float64)
    L = ((mask * (W - torch.as_tensor(P.W_star))) ** 2).sum() / P.n_observed
    if penalty == "ratio":
        s = torch.linalg.svdvals(W)
        L = L + 0.05 * s.sum() / torch.sqrt((s * s).sum())
    L.backward()
    assert float(loss[0]) == pytest.approx(float(L.detach()), rel=1e-13)
    for g, th in zip(grads, theta):
        np.testing.assert_allclose(g[0].numpy(), th.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_batched_equals_one_by_one():
    problems = [rect_problem(seed=s) for s in range(4)]
    inits = [_factors(10 + s) for s in range(4)]
    lrs, lams = [0.5, 0.3, 0.2, 0.4], [0.0, 0.01, 0.02, 0.005]
    pen = make_penalty("ratio")
    kw = dict(optimizer="adam", iters=60, penalty=pen, n_record=10, hyper={"beta1": 0.8})
    batch = train_batched(problems, inits, lr=lrs, lam=lams, save_matrices=True, **kw)
    for b in range(4):
        one = train(problems[b], inits[b], lr=lrs[b], lam=lams[b], save_matrices=True, **kw)
        np.testing.assert_array_equal(one.t, batch[b].t)
        np.testing.assert_allclose(batch[b].W, one.W, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(batch[b].sigma, one.sigma, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(batch[b].loss, one.loss, rtol=1e-12)
    assert not np.allclose(batch[0].W[-1], batch[0].W[0])


@pytest.mark.parametrize("engine", ["torch", "auto"])
def test_recorded_metrics_equal_flowsim_metrics_and_time_map(engine):
    tr = train(
        P, _factors(1), optimizer="gd", lr=0.25, iters=300, n_record=15, save_matrices=True, engine=engine
    )
    assert tr.status == "ok"
    k = record_iterations(300, 15)
    np.testing.assert_array_equal(tr.extra["iteration"], k)
    np.testing.assert_allclose(tr.t, 0.25 * k)  # t_k = kη
    for i in (0, len(tr) // 2, len(tr) - 1):
        ref = matrix_metrics(tr.W[i], P)
        for key in ("loss", "test_error", "test_rmse", "erank", "norm_fro", "norm_nuc", "norm_spec"):
            assert getattr(tr, key)[i] == pytest.approx(ref[key], rel=1e-10, abs=1e-14)
        np.testing.assert_allclose(
            tr.sigma[i], np.linalg.svd(tr.W[i], compute_uv=False), rtol=1e-10, atol=1e-14
        )
    np.testing.assert_allclose(tr.W_final, tr.W[-1])
    np.testing.assert_allclose(tr.W0, end_product(_factors(1)))


@pytest.mark.parametrize("engine", ["torch", "auto"])
def test_one_gd_step_is_an_euler_step_of_the_layerwise_flow(engine):
    f = _factors(2)
    lr = 0.05
    tr = train(P, f, optimizer="gd", lr=lr, iters=1, save_matrices=True, engine=engine)
    flow = LayerwiseFlow(P, 3)
    y0 = flow.initial_state(f)
    y1 = y0 + lr * flow(0.0, y0)
    np.testing.assert_allclose(tr.W[-1], flow.end_product(y1), rtol=1e-12, atol=1e-15)
    assert tr.t[-1] == pytest.approx(lr)


@pytest.mark.parametrize("engine", ["torch", "auto"])
def test_adam_ode_starts_at_the_first_discrete_step(engine):
    f = _factors(3)
    lr = 0.01
    tr = train(P, f, optimizer="adam", lr=lr, iters=1, save_matrices=True, engine=engine)
    flow = AdamODEFlow(P, 3, lr=lr)
    y = flow.initial_state(f)
    assert flow.t0 == lr
    np.testing.assert_allclose(flow.end_product(y), tr.W[-1], rtol=1e-12, atol=1e-15)


def test_timemap_helpers():
    assert iterations_for_horizon(1.0, 0.1) == 10  # 1.0/0.1 = 9.999… is forgiven
    assert iterations_for_horizon(1.05, 0.1) == 11
    np.testing.assert_allclose(iteration_times(np.array([0, 3, 7]), 0.5), [0, 1.5, 3.5])
    np.testing.assert_array_equal(flow_iterations(np.array([0, 1, 2, 5]), 0.01, 0.01), [1, 2, 5])
    np.testing.assert_array_equal(flow_iterations(np.array([0, 1, 2]), 0.01, 0.0), [0, 1, 2])


@pytest.mark.parametrize("engine", ["torch", "auto"])
def test_divergence_stops_the_run_and_keeps_the_records(engine):
    good, bad = _factors(4, scale=1.0), _factors(4, scale=1.0)
    trajs = train_batched(
        P, [good, bad], optimizer="gd", lr=[0.05, 50.0], iters=400, n_record=40, check_every=7, engine=engine
    )
    assert trajs[0].status == "ok" and len(trajs[0]) == len(record_iterations(400, 40))
    assert trajs[1].status == "diverged"
    assert "iteration" in trajs[1].message
    assert 0 < len(trajs[1]) < len(trajs[0])
    assert np.all(np.isfinite(trajs[1].loss)) and np.all(np.isfinite(trajs[1].W_final))


def _cli(args):
    try:
        return main(
            ["train", "--size", "8x6", "--rank", "2", "--observed", "30", "--depth", "3", "--quiet", *args]
        )
    except SystemExit as exc:  # argparse errors exit directly (one line, code 2)
        return exc.code


@pytest.mark.slow
def test_cli_train_ok_and_plot(tmp_path):
    out = tmp_path / "run"
    assert (
        _cli(["--optimizer", "adam", "--lr", "0.02", "--iters", "200", "--beta1", "0.8", "--out", str(out)])
        == 0
    )
    traj, info = load_run(out)
    assert info["command"] == "train" and info["status"] == "ok"
    assert info["params"]["hyper"] == {"beta1": 0.8}
    np.testing.assert_allclose(traj.t[-1], 200 * 0.02)
    assert (out / "trajectory.png").is_file()
    assert main(["plot", str(out)]) == 0


def test_cli_train_bad_input_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "bad"
    for args in (
        ["--optimizer", "adam", "--momentum", "0.9"],
        ["--beta1", "1.5", "--optimizer", "adam"],
        ["--device", "cuda"] if not torch.cuda.is_available() else ["--lr", "-1"],
        ["--iters", "0"],
    ):
        assert _cli([*args, "--out", str(out)]) == 2
        assert not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert all("Traceback" not in line for line in err)


@pytest.mark.slow
def test_cli_train_divergence_exit_3(tmp_path):
    out = tmp_path / "div"
    assert _cli(["--lr", "100", "--iters", "500", "--init-scale", "1", "--out", str(out)]) == 3
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "diverged" and "iteration" in info["message"]
    assert (out / "trajectory.npz").is_file()
