"""``flowsim razin`` end to end (docs/contract.md): outputs, plots, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from flowsim.cli import main
from flowsim.cli.plot import plot_run_dir

# every test here runs razin's integration (about 1 s and more each): the fast lane leaves them out
pytestmark = pytest.mark.slow


def test_razin_run_outputs(tmp_path):
    out = tmp_path / "r"
    rc = main(["razin", "--depth", "3", "--t-end", "1e5", "--n-save", "80", "--family", "--out", str(out),
               "--quiet"])
    assert rc == 0
    with np.load(out / "trajectory.npz") as z:
        keys = set(z.files)
        w11, det, loss = z["w11"], z["det"], z["loss"]
    for k in ("t", "sigma", "loss", "test_error", "erank", "W0", "W_star", "mask", "W_final", "w11", "det",
              "norm_fro", "norm_nuc", "norm_spec", "norm_max", "norm_s12"):
        assert k in keys
    assert np.all(det > 0) and abs(w11[-1]) > 100 and loss[-1] < 1e-4
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "ok" and info["command"] == "razin"
    assert all(info["verdicts"][k] == "holds" for k in ("C1", "C2", "C3", "C4", "C5"))
    assert set(info["c3_constants"]) == {"fro", "nuc", "spec", "max", "s12"}
    assert [c["loss"] for c in info["loss_crossings"]][:4] == [0.1, 0.01, 0.001, 0.0001]
    assert info["C8"]["symbolic_facts_hold"] is True
    assert len(info["family"]) == 5 and all(r["C5"]["holds"] for r in info["family"])
    assert (out / "razin.png").stat().st_size > 10_000 and (out / "razin_family.png").stat().st_size > 10_000
    paths = plot_run_dir(out)
    assert {p.name for p in paths} == {"trajectory.png", "razin.png", "razin_family.png"}


def test_razin_gd_comparison(tmp_path):
    out = tmp_path / "g"
    rc = main(["razin", "--depth", "2", "--t-end", "2e3", "--gd", "--gd-stop-loss", "1e-2", "--out", str(out),
               "--quiet", "--gd-engine", "python"])
    assert rc == 0
    info = json.loads((out / "run.json").read_text())
    g = info["gd"]
    assert g["status"] == "ok" and g["final_loss"] < 1e-2 and g["iterations"] > 0
    with np.load(out / "gd.npz") as z:
        assert z["loss"][-1] == pytest.approx(g["final_loss"])


def test_razin_negative_det(tmp_path):
    out = tmp_path / "n"
    assert main(["razin", "--det", "neg", "--t-end", "1e4", "--out", str(out), "--quiet"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["verdicts"]["C6"] == "holds" and info["verdicts"]["C1"] == "n/a"


@pytest.mark.parametrize("argv", [
    ["--depth", "1"], ["--depth", "x"], ["--z", "nan"], ["--zp", "inf"], ["--eps", "abc"], ["--t-end", "0"],
    ["--t-end", "-5"], ["--t-end", "nan"], ["--init-scale", "0"], ["--det", "zero"], ["--init", "gaussian"],
])
def test_bad_input_exit_2(tmp_path, argv):
    out = tmp_path / "bad"
    p = subprocess.run([sys.executable, "-m", "flowsim", "razin", *argv, "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not out.exists()
