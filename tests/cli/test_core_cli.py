"""docs/contract.md: the ``flowsim simulate`` / ``flowsim plot`` contract on a small problem."""

import json
import subprocess
import sys

import numpy as np
import pytest

from flowsim import load_run
from flowsim.cli import main

SMALL = ["--size", "12", "--rank", "2", "--observed", "70", "--depth", "3", "--init-scale", "1e-2",
         "--t-end", "3000", "--n-save", "40", "--quiet"]
NPZ_KEYS = {"t", "sigma", "loss", "test_error", "erank", "W0", "W_star", "mask", "W_final"}
RUN_KEYS = {"command", "params", "status", "message", "wall_time_s", "stats", "final", "versions", "seed"}


@pytest.mark.slow
def test_simulate_contract_subprocess(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "flowsim", "simulate", *SMALL, "--save-matrices",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"run.json", "trajectory.npz", "trajectory.png"}
    info = json.loads((out / "run.json").read_text())
    assert RUN_KEYS <= info.keys()
    assert info["status"] == "ok" and info["command"] == "simulate"
    assert info["params"]["depth"] == 3 and info["params"]["seed"] == 0
    assert info["stats"]["nfev"] > 0 and info["stats"]["method"] == "DOP853"
    for pkg in ("numpy", "scipy", "python", "flowsim"):
        assert pkg in info["versions"]
    with np.load(out / "trajectory.npz") as z:
        assert NPZ_KEYS | {"W", "det", "norm_fro", "norm_nuc", "norm_spec"} <= set(z.files)
        T = z["t"].size
        assert z["t"][0] == 0 and z["sigma"].shape == (T, 12) and z["W"].shape == (T, 12, 12)
        assert z["mask"].dtype == bool and z["mask"].sum() == 70
        assert np.array_equal(z["W"][-1], z["W_final"])
        # the run learned the rank-2 truth: two singular values dominate, loss fell
        assert z["loss"][-1] < 1e-3 * z["loss"][0]
        assert z["erank"][-1] < 3
    assert info["final"]["loss"] == pytest.approx(float(np.load(out / "trajectory.npz")["loss"][-1]))
    # plot the run directory again
    cmd = [sys.executable, "-m", "flowsim", "plot", str(out), "--output", str(tmp_path / "p.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.png").stat().st_size > 10_000


@pytest.mark.slow
def test_load_run_round_trip(tmp_path):
    out = tmp_path / "r"
    assert main(["simulate", *SMALL, "--t-end", "50", "--model", "layers", "--out", str(out)]) == 0
    traj, info = load_run(out)
    assert traj.status == "ok" and info["params"]["model"] == "layers"
    assert traj.sigma.shape[0] == traj.t.size and traj.t[-1] == pytest.approx(50)


@pytest.mark.parametrize("argv,needle", [
    (["--depth", "0"], "--depth"),
    (["--depth", "2.5"], "--depth"),
    (["--rank", "13"], "--rank"),
    (["--observed", "0"], "--observed"),
    (["--observed", "1000"], "--observed"),
    (["--size", "10y3"], "--size"),
    (["--lam", "-1"], "--lam"),
    (["--penalty", "schatten:0:1"], "--penalty"),
    (["--t-end", "nan"], "--t-end"),
    (["--rtol", "0"], "--rtol"),
    (["--flow", "sgd"], "--flow"),
    (["--init-scale", "0"], "saddle"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, needle):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exc:
        code = main(["simulate", "--size", "12", "--rank", "2", "--observed", "70", *argv, "--out", str(out)])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


@pytest.mark.slow
def test_no_plot_skips_only_the_png(tmp_path):
    out = tmp_path / "np"
    assert main(["simulate", *SMALL, "--t-end", "20", "--no-plot", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"run.json", "trajectory.npz"}
    assert main(["plot", str(out)]) == 0
    assert (out / "trajectory.png").is_file()


@pytest.mark.parametrize("value", ["x", "-1"])
def test_bad_blas_thread_count_is_one_line_exit_2(value, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWSIM_BLAS_THREADS", value)
    res = cli("simulate", "--size", "6", "--t-end", "1", "--out", str(tmp_path / "run"))
    assert res.code == 2
    expected = f"flowsim simulate: error: FLOWSIM_BLAS_THREADS must be an integer ≥ 0, got {value!r}"
    assert res.err.strip() == expected
    assert not (tmp_path / "run").exists()
