"""Convergence orders of docs/math.md §11 on a small problem (10×10, rank 2, depth 3), and
``flowsim validate``."""

import json

import numpy as np
import pytest
from reference_problems import small_problem

from flowsim.cli import main
from flowsim.initializations import init_factors
from flowsim.validation.validate import ROW_KEYS, validate

P = small_problem()
F0 = init_factors("balanced-gaussian", P.shape, 3, 1.0, seed=0)
GD_LRS = [0.2, 0.1, 0.05, 0.025]


def test_gd_vs_gradient_flow_is_first_order():
    res = validate(P, F0, optimizer="gd", against="gf", lrs=GD_LRS, t_end=20.0, n_record=25)
    assert res.status == "ok"
    sl = res.slopes()
    assert sl["slope_e_W"] == pytest.approx(1.0, abs=0.25)
    assert sl["slope_e_sigma"] == pytest.approx(1.0, abs=0.25)
    assert all(r["e_W"] > 1e-4 for r in res.rows)  # far above the integration error


@pytest.mark.slow
def test_gd_vs_modified_flow_is_second_order():
    res = validate(P, F0, optimizer="gd", against="gd-modified", lrs=GD_LRS, t_end=20.0, n_record=25)
    sl = res.slopes()
    assert sl["slope_e_W"] == pytest.approx(2.0, abs=0.25)
    assert sl["slope_e_sigma"] == pytest.approx(2.0, abs=0.25)
    # and the modified flow is closer to GD than the plain flow at every step size
    plain = validate(P, F0, optimizer="gd", against="gf", lrs=GD_LRS[:2], t_end=20.0, n_record=25)
    for a, b in zip(res.rows, plain.rows):
        assert a["e_W"] < 0.1 * b["e_W"]


@pytest.mark.slow
def test_adam_vs_adam_ode_converges_under_bb21_scaling():
    lrs = [0.004, 0.002, 0.001, 0.0005]
    res = validate(
        P, F0, optimizer="adam", against="adam-ode", lrs=lrs, t_end=0.5, n_record=15, beta_scaling="bb21"
    )
    e = [r["e_W"] for r in res.rows]
    assert all(a > b for a, b in zip(e, e[1:]))
    assert res.slopes()["slope_e_W"] == pytest.approx(1.0, abs=0.25)


@pytest.mark.slow
def test_cli_validate_writes_the_contract(tmp_path):
    out = tmp_path / "val"
    rc = main(
        [
            "validate",
            "--size",
            "10",
            "--rank",
            "2",
            "--observed",
            "60",
            "--init-scale",
            "1",
            "--lrs",
            "0.2,0.1",
            "--t-end",
            "5",
            "--n-save",
            "10",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    doc = json.loads((out / "validation.json").read_text())
    assert doc["optimizer"] == "gd" and doc["against"] == "gf"
    assert [set(r) for r in doc["rows"]] == [set(ROW_KEYS)] * 2
    assert all(isinstance(r[k], float) for r in doc["rows"] for k in ROW_KEYS)
    assert isinstance(doc["slope_e_sigma"], float) and isinstance(doc["slope_e_W"], float)
    assert (out / "validation.png").is_file()
    info = json.loads((out / "run.json").read_text())
    assert info["command"] == "validate" and info["status"] == "ok"
    assert main(["plot", str(out)]) == 0
    assert main(["plot", str(out / "runs" / "lr=0.1" / "discrete")]) == 0


@pytest.mark.slow
def test_cli_validate_bad_pairing_and_divergence(tmp_path):
    bad = tmp_path / "bad"
    assert main(["validate", "--against", "adam-ode", "--out", str(bad), "--quiet"]) == 2
    assert not bad.exists()
    out = tmp_path / "div"
    rc = main(
        [
            "validate",
            "--size",
            "10",
            "--rank",
            "2",
            "--observed",
            "60",
            "--init-scale",
            "1",
            "--lrs",
            "5,0.5",
            "--t-end",
            "50",
            "--n-save",
            "8",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert rc == 3
    doc = json.loads((out / "validation.json").read_text())
    assert doc["status"] == "diverged" and "lr=5" in doc["message"]
    assert doc["rows"][0]["e_W"] is None and np.isfinite(doc["rows"][1]["e_W"])


def test_adam_window_ratio_is_recorded_and_warned(capsys, tiny_problem):
    """With fixed β, η_max/(1 − β₂) > T/10 gets one warning line on stderr and the ratio in the result."""
    small = tiny_problem
    f = init_factors("balanced-gaussian", small.shape, 2, 0.5, seed=1)
    res = validate(small, f, optimizer="adam", against="adam-sign", lrs=[2e-3, 1e-3], t_end=0.05, n_record=5,
                   hyper={"beta1": 0.5, "beta2": 0.9})
    assert res.status == "ok", res.message
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "0.4·T" in err[0]
    doc = res.to_json()
    assert doc["against"] == "adam-sign" and doc["adam_window_ratio"] == pytest.approx(2e-3 / 0.1 / 0.05)
    quiet = validate(small, f, optimizer="adam", against="adam-sign", lrs=[2e-4, 1e-4], t_end=0.05,
                     n_record=5, hyper={"beta1": 0.5, "beta2": 0.9})
    assert capsys.readouterr().err == "" and quiet.to_json()["adam_window_ratio"] == pytest.approx(0.04)
    # in that regime Adam is close to the fixed-β limit, far closer than at the large window
    assert max(r["e_W"] for r in quiet.rows) < min(r["e_W"] for r in res.rows)
