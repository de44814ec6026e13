"""Output folders belong to one run; OS errors are one line; sweeps retry outside failures; plot reads every
run folder; check --module contains whatever the user's module does; run.json records the tolerances used."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from tests.cli.test_robustness_bad_input import SIM, _call

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_locked_folder_is_refused_while_its_owner_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    code = ("import sys, pathlib; from flowsim.runs.outdir import lock_dir; "
            "lock_dir(pathlib.Path(sys.argv[1])); print('locked', flush=True); sys.stdin.read()")
    owner = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert owner.stdout.readline().strip() == "locked"
        rc, err, _ = _call([*SIM, "--out", str(out)])
        assert rc == 2 and "is in use by another flowsim run" in err and len(err.strip().splitlines()) == 1
        assert list(out.iterdir()) == []  # the lock adds no file
    finally:
        owner.stdin.close()
        owner.wait(timeout=30)
    rc, err, _ = _call([*SIM, "--out", str(out)])  # released with its owner
    assert rc == 0, err


@pytest.mark.slow
def test_out_never_mixes_two_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _call([*SIM, "--out", str(out)])[0] == 0
    rc, err, _ = _call(["train", "--size", "6", "--rank", "2", "--observed", "20", "--depth", "2", "--iters",
                        "3", "--quiet", "--out", str(out)])
    assert rc == 2 and "holds a flowsim simulate run" in err
    assert json.loads((out / "run.json").read_text())["command"] == "simulate"
    # a validate folder (validation.json, runs/) is never taken over by simulate
    val = tmp_path / "val"
    (val / "runs").mkdir(parents=True)
    (val / "validation.json").write_text("{}")
    (val / "run.json").write_text(json.dumps({"command": "validate"}))
    rc, err, _ = _call([*SIM, "--out", str(val)])
    assert rc == 2 and "holds a flowsim validate run" in err
    assert json.loads((val / "run.json").read_text()) == {"command": "validate"}
    # files flowsim did not write are never overwritten
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    rc, err, _ = _call([*SIM, "--out", str(mine)])
    assert rc == 2 and "notes.txt" in err and (mine / "notes.txt").read_text() == "keep"
    # the same command again replaces the earlier run whole (stale files of the earlier run removed)
    (out / "trajectory.png").unlink(missing_ok=True)
    assert _call([*SIM, "--no-plot", "--out", str(out)])[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "trajectory.npz"]


def test_disk_full_while_writing_is_one_line_exit_3_and_no_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    real = os.fsync

    def full(fd: int) -> None:
        if os.fstat(fd).st_size > 4096:  # the trajectory: the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    with mock.patch("flowsim.io.os.fsync", full):
        rc, err, _ = _call([*SIM, "--out", str(out)])
    assert rc == 3 and "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    info = json.loads((out / "run.json").read_text())  # what could be kept: the status and the reason
    assert info["status"] == "failed" and "No space left" in info["message"] and info["run_status"] == "ok"


def test_bounded_work_gives_the_estimate_and_the_override() -> None:
    for extra, needle in ((["--n-save", "100000000"], "1e+08 saved times"),
                          (["--depth", "100000000"], "1e+08 layers"),
                          (["--size", "5000", "--rank", "2"], "flops per SVD")):
        rc, err, _ = _call([*SIM, *extra, "--out", "/nonexistent/never"])
        assert rc == 2 and needle in err and "--allow-large" in err and len(err.strip().splitlines()) == 1
    rc, err, _ = _call(["train", "--iters", "100000000000000000000", "--quiet"])
    assert rc == 2 and "beyond 2^53" in err
    rc, err, _ = _call(["validate", "--lrs", "1e-300,1e-299", "--quiet"])
    assert rc == 2 and "beyond 2^53" in err


def test_rtol_raised_by_scipy_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _call([*SIM, "--rtol", "1e-15", "--no-plot", "--out", str(out)])[0] == 0
    info = json.loads((out / "run.json").read_text())
    assert info["params"]["rtol"] == 1e-15
    assert info["params"]["tolerances_used"]["rtol"] == pytest.approx(100 * np.finfo(float).eps)


def _sweep(cfg: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _call(["sweep", str(cfg), "--out", str(out), "--workers", "1", "--quiet", *extra])


@pytest.mark.slow
def test_sweep_outside_failures_are_retried_on_resume(tmp_path: Path) -> None:
    w = tmp_path / "w.npy"
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'command = "simulate"\n[fixed]\nw-star = "{w}"\nt-end = 1\nn-save = 3\n'
                   '[grid]\ndepth = [1, 2]\n')
    out = tmp_path / "sweep"
    rc, err, _ = _sweep(cfg, out)
    assert rc == 2 and "every point is bad input" in err and "--w-star file not found" in err
    np.save(w, np.arange(20.0).reshape(4, 5))
    rc, err, _ = _sweep(cfg, out)
    assert rc == 0, err
    statuses = [json.loads((d / "run.json").read_text())["status"] for d in (out / "points").iterdir()]
    assert statuses == ["ok", "ok"]


def test_sweep_bad_scheduler_and_config_types_write_nothing(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    cfg = tmp_path / "s.toml"
    cfg.write_text('command = "simulate"\n[fixed]\nsize = "5"\n[grid]\ndepth = [1]\n')
    out = tmp_path / "sweep"
    from flowsim.errors import BadInputError

    refused = BadInputError("--scheduler x: cannot connect")
    with mock.patch("flowsim.sweep.runner.DaskBackend.__init__", side_effect=refused):
        rc, err, _ = _sweep(cfg, out, "--scheduler", "tcp://127.0.0.1:9")
    assert rc == 2 and "cannot connect" in err and not out.exists()
    for text, needle in (('[quick]\ngrid = 5\n', "[quick] grid must be a table"),
                         ('[quick]\nfixed = "abc"\n', "[quick] fixed must be a table"),
                         ('[grid]\nseed = {range = [0, 1e300]}\n', "values on one axis"),
                         ('[grid]\nseed = {range = [0, 200]}\ndepth = {range = [1, 101]}\n',
                          "--allow-large")):
        grid = '[grid]\ndepth = [1]\n' if "[grid]" not in text else ""
        cfg.write_text('command = "simulate"\n' + text + grid)
        flag = "--quick" if "quick" in text else "--quiet"
        rc, err, _ = _call(["sweep", str(cfg), "--out", str(out), flag])
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_table_report_on_a_grid_without_penalty_does_not_raise(tmp_path: Path) -> None:
    from flowsim.sweep.tables import render_table1

    out = tmp_path / "sweep"
    (out / "points" / "a").mkdir(parents=True)
    points = [{"id": "a", "params": {"depth": 2}, "labels": []}]
    (out / "sweep.json").write_text(json.dumps({"points": points}))
    (out / "points" / "a" / "run.json").write_text(json.dumps({"status": "ok", "final": {"test_error": 0.5}}))
    assert "| GD |" not in render_table1(out) and "0.500" in render_table1(out)


@pytest.mark.slow
def test_plot_reads_cut_runs_and_refuses_what_it_cannot(tmp_path: Path) -> None:
    from flowsim.trajectory import load_run, write_run

    run = tmp_path / "run"
    assert _call([*SIM, "--no-plot", "--out", str(run)])[0] == 0
    traj, info = load_run(run)
    for k in ("sigma", "loss", "test_error"):
        setattr(traj, k, np.zeros_like(getattr(traj, k)))
    traj.status, traj.message = "diverged", "test"
    zero = tmp_path / "zero"
    write_run(zero, traj, command="simulate", params=info["params"], wall_time_s=0.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rc, err, _ = _call(["plot", str(zero)])
    assert rc == 0 and (zero / "trajectory.png").stat().st_size > 0, err
    rc, err, _ = _call(["plot", str(run), "--output", str(tmp_path)])
    assert rc == 2 and "is a directory" in err and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "run.json").write_text(json.dumps({"command": "train", "status": "failed", "message": "boom"}))
    rc, err, _ = _call(["plot", str(failed)])
    assert rc == 2 and "nothing to plot: the run failed" in err and "boom" in err


def test_check_module_is_contained(tmp_path: Path) -> None:
    m = tmp_path / "m"
    m.mkdir()
    (m / "exits.py").write_text("import sys\nsys.exit(0)\n")
    rc, err, out = _call(["check", "--module", str(m / "exits.py"), "--list"])
    assert rc == 2 and "sys.exit(0)" in err and out == ""
    (m / "pipe.py").write_text(textwrap.dedent("""
        from flowsim.theory.registry import claim
        @claim("A|B", source="s", statement="s", tolerance=1.0)
        def t(config):
            pass
    """))
    rc, err, _ = _call(["check", "--module", str(m / "pipe.py"), "--list"])
    assert rc == 2 and "'|'" in err
    (m / "odd.py").write_text(textwrap.dedent("""
        import sys
        from flowsim.theory.registry import Evidence, claim
        @claim("ODD-DETAILS", source="s", statement="s", tolerance=1e-9)
        def a(config):
            return Evidence(0.0, {"z": 1 + 2j, "s": {float("nan"), 1.0}})
        @claim("ODD-EXIT", source="s", statement="s", tolerance=1e-9)
        def b(config):
            sys.exit(7)
        @claim("ODD-NEGATIVE", source="s", statement="s", tolerance=1e-9)
        def c(config):
            return Evidence(-1.0)
    """))
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    rel = os.path.relpath(m / "odd.py")
    rc, err, out = _call(["check", "--module", str(m / "odd.py"), "--module", rel, "--claim", "ODD-DETAILS",
                          "--claim", "ODD-EXIT", "--claim", "ODD-NEGATIVE", "--json", str(js),
                          "--markdown", str(md), "--quiet"])
    assert rc == 3, err
    records = {r["id"]: r for r in json.loads(js.read_text())}
    assert records["ODD-DETAILS"]["verdict"] == "holds" and records["ODD-DETAILS"]["details"]["z"] == "(1+2j)"
    assert records["ODD-EXIT"]["verdict"] == "error" and "sys.exit" in records["ODD-EXIT"]["details"]["error"]
    assert records["ODD-NEGATIVE"]["verdict"] == "error"
    assert "ODD-EXIT" in md.read_text() and "3 claims" in out
