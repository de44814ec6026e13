"""RC20's 2×2 counterexample (docs/math.md §10): the chart flow against independent references, C1–C8."""

import math

import numpy as np
import pytest

from flowsim import LayerwiseFlow, simulate
from flowsim.factors import end_product
from flowsim.flows import end_product_velocity, layerwise_velocity
from flowsim.theory import razin as rz
from flowsim.theory.razin_gd import _numba, run_gd
from flowsim.theory.razin_symbolic import c8_evidence, numeric_argmin

DEFAULT = rz.RazinData()


def _random_det(rng, sign):
    W = rng.standard_normal((2, 2))
    if np.sign(np.linalg.det(W)) != sign:
        W[:, 1] *= -1
    return W


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("depth", [2, 3, 4])
def test_chart_velocity_matches_end_product_flow(depth, sign):
    """d/dt chart_matrix(q(t)) (central differences of the chart map along q̇) = −P_W(∇ℓ) of flowsim."""
    rng = np.random.default_rng(depth)
    data = rz.RazinData(-2.0, 0.5, 0.1)
    problem = data.problem()
    for _ in range(5):
        W = _random_det(rng, sign)
        q = rz.chart_from_matrix(W, sign)
        np.testing.assert_allclose(rz.chart_matrix(q, sign), W, atol=1e-13)
        qdot = rz.chart_velocity(q, depth, data, sign)
        h = 1e-6
        num = (rz.chart_matrix(q + h * qdot, sign) - rz.chart_matrix(q - h * qdot, sign)) / (2 * h)
        ref = end_product_velocity(W, problem, depth)
        np.testing.assert_allclose(num, ref, atol=1e-7 * max(1.0, np.abs(ref).max()))


def test_chart_smooth_at_equal_singular_values():
    """At W = αI (σ₁ = σ₂, the identity init) the chart velocity is finite and equals −Nα^{2−2/N}∇ℓ."""
    for depth in (2, 3):
        W = 0.7 * np.eye(2)
        q = rz.chart_from_matrix(W, 1)
        qdot = rz.chart_velocity(q, depth, DEFAULT, 1)
        h = 1e-7
        num = (rz.chart_matrix(q + h * qdot, 1) - rz.chart_matrix(q - h * qdot, 1)) / (2 * h)
        np.testing.assert_allclose(num, end_product_velocity(W, DEFAULT.problem(), depth), atol=1e-7)


def test_chart_spectrum_is_cancellation_free():
    W = np.array([[70.0, 1.0], [1.0, 1.0 / 70.0 + 1e-12]])  # det = 7e-11: w11·w22 − w12·w21 cancels
    q = rz.chart_from_matrix(W, 1)
    s1, ls2, ld = rz.chart_spectrum(q)
    assert s1 == pytest.approx(np.linalg.norm(W, 2), rel=1e-14)
    assert math.exp(ld) == pytest.approx(70.0 * 1e-12, rel=1e-3)  # det set by construction above
    assert math.exp(ls2) * s1 == pytest.approx(math.exp(ld), rel=1e-14)


def test_layer_flow_velocity_matches_flowsim():
    rng = np.random.default_rng(1)
    fs = [rng.standard_normal((2, 2)) for _ in range(3)]
    flow = rz.LayerChartFlow(DEFAULT, 3, 1)
    v = flow(0.0, flow.initial_state(fs))
    ref = np.concatenate([g.ravel() for g in layerwise_velocity(fs, DEFAULT.problem())])
    np.testing.assert_allclose(v, ref, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("init, sign", [("balanced", 1), ("balanced", -1), ("normal", 1), ("identity", 1)])
@pytest.mark.slow
def test_early_trajectory_matches_plain_layerwise_flow(init, sign):
    """Independent route: flowsim's explicit layer-wise flow (DOP853, no special state) on the early part."""
    depth, t_end = 3, 60.0
    fs = rz.initial_factors(init, depth, sign, 1e-2 if init != "normal" else 0.2, seed=3)
    run = rz.integrate_razin(rz.make_razin_flow(fs, DEFAULT, depth), fs, t_end, n_save=20)
    grid = run.t
    traj = simulate(LayerwiseFlow(DEFAULT.problem(), depth), fs, t_end, t_eval=grid, rtol=1e-11, atol=1e-13,
                    save_matrices=True, progress=False)
    assert traj.status == "ok"
    err = np.max(np.abs(traj.W - run.W), axis=(1, 2)) / np.maximum(1.0, np.abs(run.W).max(axis=(1, 2)))
    assert err.max() < 1e-7
    np.testing.assert_array_equal(np.sign(traj.det), run.det_sign)


@pytest.fixture(scope="module")
def positive_runs():
    return {N: rz.run_razin(depth=N)[0] for N in (2, 3, 4)}


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.slow
def test_c1_to_c5_hold_default_data(positive_runs, depth):
    run = positive_runs[depth]
    assert run.status == "ok" and run.t[-1] == 1e7
    checks = rz.evaluate_checks(run, DEFAULT, depth, "balanced", 1e-5)
    verdicts = rz.verdict_table(checks)
    assert all(verdicts[k] == "holds" for k in ("C1", "C2", "C3", "C4", "C5")), checks
    # det never changes sign, |w11| keeps growing after the fit, loss ~ 1/t at the end
    assert np.all(run.det_sign > 0) and np.all(np.isfinite(run.log_abs_det))
    tail = run.loss < 1e-2
    assert np.all(np.diff(np.abs(run.W[tail, 0, 0])) > 0)
    assert run.loss[-1] < 1e-5
    # C2 bound recomputed here from the saved arrays
    d = np.sqrt(2 * run.loss)
    ok = d < 1
    assert np.all(np.abs(run.W[ok, 0, 0]) > (1 - d[ok]) ** 2 / d[ok])
    # C4: σ_min < δ where δ < 1 (σ_min in logs: it underflows for N = 2)
    assert np.all(run.log_sigma_min[ok] < np.log(d[ok]))
    # C3: every norm ≥ |w11| so ‖W‖√ℓ → 1/√2 (w11·w22 → 1, √ℓ ≈ |w22|/√2)
    for v in rz.c3_constants(run).values():
        assert 0.55 < v["min"] <= v["final"] and v["final"] == pytest.approx(1 / math.sqrt(2), rel=1e-3)


@pytest.mark.slow
def test_depth2_sigma_min_below_double_range(positive_runs):
    """N = 2: σ̇₂/σ₂ = −2G̃₂₂ so σ_min decays exponentially and underflows; the log state keeps det > 0."""
    run = positive_runs[2]
    assert run.log_sigma_min[-1] < math.log(1e-300)
    assert rz.check_c1(run)["holds"]


@pytest.mark.slow
def test_loss_crossings(positive_runs):
    run = positive_runs[3]
    levels = [c["loss"] for c in run.crossings]
    assert levels[:4] == [1e-1, 1e-2, 1e-3, 1e-4]
    for c in run.crossings:
        i = int(np.searchsorted(run.t, c["t"]))
        assert run.loss[i - 1] >= c["loss"] >= run.loss[i]
        d = math.sqrt(2 * c["loss"])
        assert abs(c["w11"]) > (1 - d) ** 2 / d


@pytest.mark.slow
def test_loss_crossings_are_events_at_the_readme_times(positive_runs):
    """The thresholds are recorded integrator events: at depth 3 ℓ < 1e-4 is first reached at t = 10,785
    (README); ``stop_loss`` is a terminal event that ends the run there, with ℓ equal to the level."""
    run = positive_runs[3]
    t_4 = next(c["t"] for c in run.crossings if c["loss"] == 1e-4)
    assert round(t_4) == 10785
    stopped, _ = rz.run_razin(depth=3, stop_loss=1e-4)
    assert stopped.status == "ok" and stopped.t[-1] == pytest.approx(t_4, rel=1e-9)
    assert stopped.loss[-1] == pytest.approx(1e-4, rel=1e-9)
    assert stopped.stats["steps"] < run.stats["steps"]


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.slow
def test_c6_negative_det(depth):
    run, _ = rz.run_razin(depth=depth, det_sign=-1)
    r = rz.check_c6(run)
    assert r["holds"], r
    assert np.all(run.det_sign < 0)
    assert r["final_det"] == pytest.approx(-1.0, abs=1e-9)
    assert r["max_abs_w11"] < 20


@pytest.mark.parametrize("eps", rz.FAMILY_EPS)
@pytest.mark.slow
def test_c5_perturbed_family(eps):
    data = rz.RazinData(*rz.FAMILY_Z, eps)
    run, _ = rz.run_razin(data, 3, det_sign=-1)
    r = rz.check_c5(run, data)
    assert r["applies"] and r["holds"], r
    if eps:
        assert run.W[-1, 0, 0] == pytest.approx(data.rank_one_w11, rel=1e-3)  # the rank-1 completion zz′/ε


@pytest.mark.parametrize("alpha", [1e-5, 0.5, 1.0])
@pytest.mark.slow
def test_c7_identity_depth2(alpha):
    run, _ = rz.run_razin(depth=2, init="identity", init_scale=alpha)
    r = rz.check_c7(run, 2, "identity", alpha)
    assert r["holds"], r


@pytest.mark.slow
def test_normal_init_is_outside_the_theorem():
    """Per-layer normal init (non-balanced): layer-wise state; checks are reported as not applicable."""
    run, fs = rz.run_razin(depth=3, init="normal", t_end=1e4)
    assert run.model == "layers" and not rz.is_balanced(fs)
    checks = rz.evaluate_checks(run, DEFAULT, 3, "normal", 8e-3)
    assert set(rz.verdict_table(checks).values()) == {"n/a"}


def test_c8_symbolic():
    ev = c8_evidence()
    assert ev["symbolic_facts_hold"] and ev["residual"] == 0.0
    assert ev["derivative_of_schatten_p_power"] == "2*k**p*p*sinh(p*u)"
    assert set(numeric_argmin(-2.0, 0.5).values()) == {0.0}


def test_bad_inputs_raise():
    from flowsim.errors import BadInputError

    with pytest.raises(BadInputError):
        rz.RazinData(float("nan"), 1, 0)
    with pytest.raises(BadInputError):
        rz.validate_run_args(1, 1e3, "balanced", 1, 1e-3)
    with pytest.raises(BadInputError):
        rz.validate_run_args(3, 0.0, "balanced", 1, 1e-3)
    with pytest.raises(BadInputError):
        rz.chart_from_matrix(np.eye(2), -1)


def _numpy_gd(fs, data, lr, iters):
    G_of = data.problem().grad
    from flowsim.flows import layer_gradients

    fs = [f.copy() for f in fs]
    for _ in range(iters):
        grads = layer_gradients(fs, G_of(end_product(fs)))
        fs = [f - lr * g for f, g in zip(fs, grads)]
    return end_product(fs)


@pytest.mark.parametrize("depth", [2, 3])
def test_gd_kernel_matches_numpy_reference(depth):
    fs = rz.initial_factors("normal", depth, 1, 0.3, seed=2)
    data = rz.RazinData(-2.0, 0.5, 0.1)
    r = run_gd(fs, data, lr=1e-2, stop_loss=0.0, max_iter=300, engine="python")
    assert r.iterations == 300
    np.testing.assert_allclose(r.W_final, _numpy_gd(fs, data, 1e-2, 300), rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(_numba is None, reason="numba not installed")
@pytest.mark.slow
def test_gd_engines_agree_and_track_the_flow():
    fs = rz.initial_factors("balanced", 3, 1, 1e-5, 0)
    a = run_gd(fs, max_iter=20000, stop_loss=0.0, engine="python")
    b = run_gd(fs, max_iter=20000, stop_loss=0.0, engine="numba")
    np.testing.assert_array_equal(a.W_final, b.W_final)
    g = run_gd(fs, engine="numba")  # RC20: η = 3e-3 to ℓ < 1e-4
    assert g.status == "ok" and g.final_loss < 1e-4 and np.all(g.det > 0)
    run, _ = rz.run_razin(depth=3, stop_loss=1e-4)
    t_flow = next(c["t"] for c in run.crossings if c["loss"] == 1e-4)
    assert g.iterations * g.lr == pytest.approx(t_flow, rel=1e-3)
