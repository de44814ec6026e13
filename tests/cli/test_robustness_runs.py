"""Runs that diverge, fail, are interrupted or are killed (docs/contract.md §5: exit codes 3 and 130),
atomic writes, and bit-for-bit determinism of ``flowsim simulate``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from child_markers import start_child
from children.atomic_writer import N_BLOB
from children.atomic_writer import TARGETS as WRITER_TARGETS
from children.atomic_writer import contents as writer_contents
from children.atomic_writer import write as writer_write

from flowsim.flows.gf import EndProductFlow, LayerwiseFlow
from flowsim.integrator import MAX_NONFINITE_EVALS, SOLVERS, integrate, log_time_grid
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
@pytest.mark.slow
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


@pytest.mark.slow
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
    scipy (the initial step size is NaN). "Never hangs" is counted in evaluations, not seconds: the
    non-finite streak guard bounds them, and a loop past the bound fails here instead of hanging."""
    t_break = 0.5 if when == "later" else -1.0
    limit = MAX_NONFINITE_EVALS + 2000  # the guard's streak plus far more than reaching t_break takes
    calls = [0]

    class Looping(RuntimeError):
        pass

    def f(t, y):
        calls[0] += 1
        if calls[0] > limit:
            raise Looping(f"{method} evaluated the velocity {limit} times")
        return np.full_like(y, np.nan) if t > t_break else -y

    res = integrate(f, np.ones(3), np.linspace(0, 2, 11), method=method)
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
    monkeypatch.setattr("flowsim.integrator.stepper.MAX_NONFINITE_EVALS", 5)
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

@pytest.mark.slow
def test_keyboard_interrupt_saves_partial_run_exit_130(cli, tmp_path, monkeypatch):
    _velocity_breaks_after(monkeypatch, EndProductFlow, 5.0, "interrupt")
    out = tmp_path / "run"
    res = cli(*SMALL, "--out", str(out))
    assert res.code == 130
    info, arr = _load(out)
    assert info["status"] == "interrupted" and info["message"].startswith("interrupted by the user at t=")
    assert 1 < arr["t"].size < 31 and arr["t"][-1] <= 5.0


@pytest.mark.slow
def test_sigint_to_simulate_subprocess(tmp_path):
    """A real Ctrl-C (SIGINT) to ``flowsim simulate`` in a child process, sent while the child is inside a
    velocity evaluation beyond t = 5 (it says so, then waits): run.json says interrupted and where, every
    saving time up to there is kept, exit 130."""
    out = tmp_path / "run"
    t_end, n_save = 1e4, 30
    with start_child("stop_in_velocity.py", "5.0", *SMALL, "--t-end", str(t_end), "--n-save", str(n_save),
                     "--out", str(out)) as child:
        t_mark = float(child.wait_for_marker("inside-velocity t="))
        child.proc.send_signal(signal.SIGINT)
        code, err = child.finish()
    assert code == 130, err
    assert "Traceback" not in err
    info, arr = _load(out)
    assert info["status"] == "interrupted"
    assert info["message"].startswith("interrupted by the user at t=")
    t_stop = float(info["message"].split("t=")[1].split()[0])
    assert 0 < t_stop < t_mark and info["stats"]["t_last"] == pytest.approx(t_stop, rel=1e-5)
    grid = log_time_grid(t_end, n_save)
    np.testing.assert_array_equal(arr["t"], grid[grid <= t_stop])  # everything computed up to t_stop is kept
    assert set(arr) >= {"t", "sigma", "loss", "test_error", "erank", "W0", "W_star", "mask", "W_final"}
    assert np.all(np.diff(arr["loss"]) <= 1e-12)


# ---- atomic writes: SIGKILL mid-write never leaves a truncated file ---------------------------------------

# The child writes versions 1, 2, ... of three files with the production atomic writers and stops inside the
# n-th write of one of them (tests/children/atomic_writer.py): either the kernel kills it inside write(2) at
# an exact byte of the temporary file (RLIMIT_FSIZE), or it reports that the temporary file is complete and
# the rename comes next, and the test SIGKILLs it there. Every kill is a mid-write kill, whatever the load.
KILLS_MID_WRITE = [
    ("trajectory.npz", 1, "in-write", 0),  # the very first write: temporary file created, nothing in it
    ("run.json", 2, "in-write", 4096),
    ("blob.bin", 3, "in-write", 8 * N_BLOB - 1),  # all but the last byte
    ("trajectory.npz", 2, "before-rename", None),
    ("run.json", 3, "before-rename", None),
    ("blob.bin", 2, "before-rename", None),
]


def _assert_complete(path: Path, name: str, k: int) -> None:
    """``path`` holds exactly version ``k`` of ``name`` as the child writes it."""
    expected = writer_contents(name, k)
    if name == "trajectory.npz":
        with np.load(path) as z:
            assert set(z.files) == {"k", "data"} and int(z["k"]) == k, path
            np.testing.assert_array_equal(z["data"], expected["data"])
    elif name == "run.json":
        assert json.loads(path.read_text()) == expected, path
    else:
        assert path.read_bytes() == expected, path


@pytest.mark.parametrize(("target", "n", "phase", "nbytes"), KILLS_MID_WRITE)
@pytest.mark.slow
def test_sigkill_mid_write_never_truncates(tmp_path, target, n, phase, nbytes):
    folder = tmp_path / "run"
    folder.mkdir()
    args = [folder, target, n, phase] + ([nbytes] if nbytes is not None else [])
    with start_child("atomic_writer.py", *args) as child:
        tmp = Path(child.wait_for_marker(f"inside-write {phase}"))
        if phase == "before-rename":
            child.proc.send_signal(signal.SIGKILL)
        code, err = child.finish()
    assert code == (-signal.SIGKILL if phase == "before-rename" else -signal.SIGXFSZ), err
    # every target is absent or a complete version: the one being written keeps its previous version
    order = WRITER_TARGETS.index(target)
    versions = {name: n if i < order else n - 1 for i, name in enumerate(WRITER_TARGETS)}
    for name, k in versions.items():
        if k >= 1:
            _assert_complete(folder / name, name, k)
        else:
            assert not (folder / name).exists(), name  # never written: no empty or partial file either
    # the killed write left only its temporary file, in the target's folder (so the rename is atomic)
    assert tmp.parent == folder.resolve() and tmp.name not in WRITER_TARGETS
    written = [name for name, k in versions.items() if k >= 1]
    assert sorted(p.name for p in folder.iterdir()) == sorted([tmp.name, *written])
    if phase == "before-rename":  # the temporary file is the complete new version
        _assert_complete(tmp, target, n)
    else:  # the temporary file is cut at exactly nbytes bytes of what the production writer writes
        writer_write(tmp_path, target, n)
        full = (tmp_path / target).read_bytes()
        assert tmp.stat().st_size == nbytes < len(full)
        assert tmp.read_bytes() == full[:nbytes]


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

@pytest.mark.slow  # four runs, one in a fresh process: about 6.6 s of CPU
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
