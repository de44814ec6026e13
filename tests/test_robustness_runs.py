"""Runs that diverge, fail, are interrupted or are killed (issue 9; SPEC §7 exit codes 3 and 130), atomic
writes, and bit-for-bit determinism of ``flowsim simulate``."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from flowsim.flows.gf import EndProductFlow, LayerwiseFlow
from flowsim.integrator import MAX_NONFINITE_EVALS, SOLVERS, integrate
from flowsim.io import atomic_savez, atomic_write_json

SMALL = ["simulate", "--size", "8x6", "--rank", "2", "--observed", "30", "--depth", "3",
         "--init-scale", "0.1", "--t-end", "50", "--n-save", "30", "--quiet", "--model", "end-product"]


def _load(out: Path) -> tuple[dict, dict[str, np.ndarray]]:
    info = json.loads((out / "run.json").read_text())
    with np.load(out / "trajectory.npz") as z:
        return info, {k: z[k] for k in z.files}


def _velocity_breaks_after(monkeypatch: pytest.MonkeyPatch, cls: type, t_break: float, what: str) -> None:
    """Make ``cls.__call__`` return NaN (``what="nan"``), raise LinAlgError (``"linalg"``) or
    KeyboardInterrupt (otherwise) once t > t_break."""
    original = cls.__call__

    def broken(self, t, y):
        if t > t_break:
            if what == "nan":
                return np.full_like(y, np.nan)
            if what == "linalg":
                raise np.linalg.LinAlgError("SVD did not converge")
            raise KeyboardInterrupt
        return original(self, t, y)

    monkeypatch.setattr(cls, "__call__", broken)


# ---- divergence and failure: exit 3, status and time in run.json, partial trajectory kept -----------------

@pytest.mark.parametrize(("cls", "model", "what"), [(EndProductFlow, "end-product", "nan"),
                                                   (LayerwiseFlow, "layers", "nan"),
                                                   (EndProductFlow, "end-product", "linalg")])
def test_nan_velocity_diverges_with_exit_3(cli, tmp_path, monkeypatch, cls, model, what):
    _velocity_breaks_after(monkeypatch, cls, 2.0, what)
    out = tmp_path / "run"
    res = cli(*SMALL, "--model", model, "--out", str(out))
    assert res.code == 3, res.err
    assert "diverged" in res.err and "Traceback" not in res.err
    info, arr = _load(out)
    assert info["status"] == "diverged"
    assert "non-finite at t=" in info["message"]
    t_first_nan = float(info["message"].split("non-finite at t=")[1].split()[0].rstrip(";"))
    assert 2.0 < t_first_nan < 3.0  # the message says where
    if what == "linalg":
        assert "LinAlgError: SVD did not converge" in info["message"]
    # the trajectory up to the failure is kept, and it is finite
    assert 1 < arr["t"].size < 31 and arr["t"][-1] <= 2.0 + 1e-12
    assert np.all(np.isfinite(arr["loss"])) and np.all(np.isfinite(arr["sigma"]))
    assert np.all(np.diff(arr["loss"]) <= 1e-12)  # still a gradient flow before the break
    assert info["final"]["t"] == arr["t"][-1]
    assert (out / "trajectory.png").is_file()


def test_step_budget_exhausted_is_failed_exit_3(cli, tmp_path):
    out = tmp_path / "run"
    res = cli(*SMALL, "--t-end", "1e4", "--max-steps", "3", "--out", str(out))
    assert res.code == 3
    info, arr = _load(out)
    assert info["status"] == "failed"
    assert info["message"].startswith("step budget of 3 steps exhausted at t=")
    assert info["stats"]["steps"] == 3
    t_stop = float(info["message"].rsplit("t=", 1)[1])
    assert arr["t"][-1] <= t_stop < 1e4 and info["stats"]["t_last"] == pytest.approx(t_stop, rel=1e-5)


def test_wall_time_budget_exhausted_is_failed_exit_3(cli, tmp_path):
    out = tmp_path / "run"
    res = cli(*SMALL, "--t-end", "1e6", "--max-wall-time", "1e-6", "--out", str(out))
    assert res.code == 3
    info, _ = _load(out)
    assert info["status"] == "failed" and "wall-time budget" in info["message"]


@pytest.mark.parametrize("method", list(SOLVERS))
@pytest.mark.parametrize("when", ["later", "at t0"])
def test_integrator_never_hangs_on_nan_velocity(method, when):
    """Every solver stops with status 'diverged' and says where; a NaN at t0 used to loop forever inside
    scipy (the initial step size is NaN)."""
    t_break = 0.5 if when == "later" else -1.0

    def f(t, y):
        return np.full_like(y, np.nan) if t > t_break else -y

    start = time.perf_counter()
    res = integrate(f, np.ones(3), np.linspace(0, 2, 11), method=method)
    assert time.perf_counter() - start < 30
    assert res.status == "diverged", res.message
    if when == "at t0":
        assert res.message.startswith("the velocity is not finite at the initial time t=0")
        assert res.t.tolist() == [0.0]
    else:
        assert 0.2 <= res.t[-1] <= 0.5  # LSODA's last accepted step before the break is at t ≈ 0.34
        np.testing.assert_allclose(res.y[-1], np.exp(-res.t[-1]), rtol=1e-4)
        assert "t=" in res.message


def test_integrator_blowup_and_nonfinite_initial_state():
    res = integrate(lambda t, y: y**2, np.ones(2), np.array([0.0, 0.5, 2.0]), blowup=1e6)
    assert res.status == "diverged" and "exceeded 1e+06" in res.message
    assert res.t.tolist() == [0.0, 0.5]  # ẏ = y², y(t) = 1/(1 − t): blows up at t = 1
    np.testing.assert_allclose(res.y[-1], 2.0, rtol=1e-6)
    res = integrate(lambda t, y: -y, np.array([1.0, np.inf]), np.array([0.0, 1.0]))
    assert res.status == "diverged" and "initial state" in res.message


def test_integrator_non_finite_streak_guard(monkeypatch):
    """The guard that ends any NaN loop: with a tiny streak limit it fires and is reported."""
    monkeypatch.setattr("flowsim.integrator.MAX_NONFINITE_EVALS", 5)
    res = integrate(lambda t, y: np.full_like(y, np.nan) if t > 0.5 else -y, np.ones(2), np.linspace(0, 2, 5))
    assert res.status == "diverged" and "stayed non-finite for 5 evaluations" in res.message
    assert MAX_NONFINITE_EVALS >= 1000


def test_genuine_errors_in_the_velocity_are_not_hidden():
    """A bug (not a numerical failure) in the vector field keeps its traceback."""
    def buggy(t, y):
        raise ValueError("shapes do not match")

    with pytest.raises(ValueError, match="shapes do not match"):
        integrate(buggy, np.ones(2), np.array([0.0, 1.0]))


def test_overflowing_run_prints_no_numpy_warnings(cli, tmp_path):
    out = tmp_path / "run"
    res = cli(*SMALL, "--init-scale", "1e300", "--out", str(out))
    assert res.code == 3
    assert "RuntimeWarning" not in res.err and len(res.err.strip().splitlines()) == 1
    info, arr = _load(out)
    assert info["status"] == "diverged" and "initial state" in info["message"]
    assert arr["t"].tolist() == [0.0]


# ---- interruption: status 'interrupted', partial results, exit 130 ---------------------------------------

def test_keyboard_interrupt_saves_partial_run_exit_130(cli, tmp_path, monkeypatch):
    _velocity_breaks_after(monkeypatch, EndProductFlow, 5.0, "interrupt")
    out = tmp_path / "run"
    res = cli(*SMALL, "--out", str(out))
    assert res.code == 130
    info, arr = _load(out)
    assert info["status"] == "interrupted" and info["message"].startswith("interrupted by the user at t=")
    assert 1 < arr["t"].size < 31 and arr["t"][-1] <= 5.0


def test_sigint_to_simulate_subprocess(tmp_path):
    """A real Ctrl-C (SIGINT) to a long ``flowsim simulate``: run.json says interrupted, exit 130."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "flowsim", "simulate", "--size", "40", "--rank", "3", "--observed", "600",
           "--depth", "3", "--t-end", "1e8", "--rtol", "1e-11", "--atol", "1e-14", "--quiet",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not out.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert out.exists(), proc.communicate()[1]
        time.sleep(1.0)  # let it integrate for a while
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    info, arr = _load(out)
    assert info["status"] == "interrupted"
    assert arr["t"].size >= 1 and arr["t"][-1] < 1e8
    assert set(arr) >= {"t", "sigma", "loss", "test_error", "erank", "W0", "W_star", "mask", "W_final"}


# ---- atomic writes: SIGKILL mid-write never leaves a truncated file ---------------------------------------

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from flowsim.io import atomic_savez, atomic_write_json
    folder = sys.argv[1]
    from flowsim.io import atomic_write_bytes
    big = np.arange(4_000_000, dtype=float)
    k = 0
    while True:
        k += 1
        atomic_savez(folder + "/trajectory.npz", {"k": np.array(k), "data": big + k})
        atomic_write_json(folder + "/run.json", {"k": k, "payload": list(range(20000))})
        blob = np.full(8_000_000, k, dtype=np.int64).tobytes()  # 64 MB, built before the write starts
        print(k, flush=True)
        for _ in range(3):  # most of the time is spent inside atomic_write_bytes
            atomic_write_bytes(folder + "/blob.bin", blob)
""")


def test_sigkill_mid_write_never_truncates(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(0)
    kills_mid_write = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # trajectory.npz and run.json were written once
        while not (tmp_path / "blob.bin").exists():
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        kills_mid_write += bool(leftovers)
        for p in leftovers:  # a killed write leaves only its temporary file, never a partial target
            p.unlink()
        with np.load(tmp_path / "trajectory.npz") as z:
            k = int(z["k"])
            assert z["data"].shape == (4_000_000,) and z["data"][-1] == 3_999_999 + k
        info = json.loads((tmp_path / "run.json").read_text())
        assert len(info["payload"]) == 20000 and info["k"] in (k - 1, k)
        blob = np.fromfile(tmp_path / "blob.bin", dtype=np.int64)
        assert blob.size == 8_000_000 and blob[0] == blob[-1] and np.all(blob == blob[0])
    assert kills_mid_write >= 1, "no kill landed during a write; the test did not test anything"


def test_atomic_write_failure_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    atomic_write_json(target, {"v": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # the temporary file was removed
    monkeypatch.undo()
    atomic_savez(tmp_path / "a.npz", {"x": np.ones(3)})
    with np.load(tmp_path / "a.npz") as z:
        assert z["x"].tolist() == [1.0, 1.0, 1.0]


# ---- determinism ---------------------------------------------------------------------------------------

def test_same_seed_bit_identical_trajectory(cli, tmp_path):
    """Same command and seed -> bit-identical arrays, in-process and in a fresh process; another seed
    differs."""
    args = [*SMALL, "--init", "gaussian", "--model", "layers", "--seed", "7", "--save-matrices"]
    runs = []
    for name in ("a", "b"):
        assert cli(*args, "--out", str(tmp_path / name)).code == 0
        runs.append(_load(tmp_path / name)[1])
    proc = subprocess.run([sys.executable, "-m", "flowsim", *args, "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs.append(_load(tmp_path / "c")[1])
    assert cli(*[a if a != "7" else "8" for a in args], "--out", str(tmp_path / "d")).code == 0
    other = _load(tmp_path / "d")[1]
    a = runs[0]
    for b in runs[1:]:
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
            assert a[k].tobytes() == b[k].tobytes(), f"array {k} differs between identical runs"
    assert not np.array_equal(a["W_final"], other["W_final"])
