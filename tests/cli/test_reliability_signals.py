"""SIGINT and SIGTERM on every command: stop promptly, keep what was computed, status ``interrupted``, exit
130 (SIGTERM: 143); an interrupt is never a result (a claim's verdict, a family member, a sweep point).

Deterministic: each child process is patched so that it announces (a marker file) when it is inside the
phase to be interrupted and then waits there; the test sends the signal only after the marker appears.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300.0

# child processes that run a command to the phase to interrupt (4–12 s each): not in the fast lane
pytestmark = pytest.mark.slow


def _wait_for(paths: list[Path], proc: subprocess.Popen, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"child ended ({proc.returncode}) before the marker: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the child never reached the phase to interrupt")
        time.sleep(0.02)


def _interrupt(code: str, markers: list[Path], sig: int, env: dict | None = None,
               cwd: Path | None = None) -> tuple[int, str, float]:
    """Run ``python -c code``, send ``sig`` once every marker exists; (exit code, stderr, seconds to exit)."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})}, cwd=cwd or ROOT)
    _wait_for(markers, proc)
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the child did not stop after the signal") from None
    return proc.returncode, err, time.monotonic() - t0


def _child(patch: str, argv: list[str]) -> str:
    return textwrap.dedent(patch) + textwrap.dedent(f"""
        from flowsim.cli import main
        sys.exit(main({argv!r}))
    """)


def test_simulate_sigterm_during_integration_keeps_partial_trajectory(tmp_path: Path) -> None:
    mark, out = tmp_path / "mark", tmp_path / "run"
    patch = f"""
        import pathlib, sys, time
        from flowsim.flows.gf import EndProductFlow
        field = EndProductFlow.__call__
        def stopping(self, t, y):
            if t > 100.0:
                pathlib.Path({str(mark)!r}).write_text("in")
                while True:
                    time.sleep(0.01)
            return field(self, t, y)
        EndProductFlow.__call__ = stopping
    """
    argv = ["simulate", "--size", "6", "--rank", "2", "--observed", "20", "--depth", "2", "--t-end", "1e4",
            "--n-save", "50", "--model", "end-product", "--quiet", "--out", str(out)]
    code, err, _ = _interrupt(_child(patch, argv), [mark], signal.SIGTERM)
    assert code == 143, err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted" and "interrupted" in info["message"]
    with np.load(out / "trajectory.npz") as z:
        assert 1 < z["t"].size < 51 and np.all(np.isfinite(z["loss"]))
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err


def test_razin_sigint_during_gd_keeps_the_finished_flow(tmp_path: Path) -> None:
    mark, out = tmp_path / "mark", tmp_path / "run"
    patch = f"""
        import pathlib, sys, time
        import flowsim.theory.razin_gd as g
        def run_gd(*a, **k):
            pathlib.Path({str(mark)!r}).write_text("in")
            while True:
                time.sleep(0.01)
        g.run_gd = run_gd
    """
    argv = ["razin", "--t-end", "10", "--gd", "--quiet", "--out", str(out)]
    code, err, _ = _interrupt(_child(patch, argv), [mark], signal.SIGINT)
    assert code == 130, err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted" and "gd" not in info and "C8" in info
    assert "verdicts" in info and "interrupted" not in info["verdicts"].values()  # the flow finished
    with np.load(out / "trajectory.npz") as z:
        assert z["t"].size > 10 and z["t"][-1] == pytest.approx(10.0)
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err


def test_razin_family_stops_at_the_interrupted_member(tmp_path: Path) -> None:
    mark, out, calls = tmp_path / "mark", tmp_path / "run", tmp_path / "calls"
    patch = f"""
        import dataclasses, pathlib, sys, time
        import flowsim.theory.razin as rz
        real = rz.run_razin
        def run_razin(*a, **k):
            n = len(pathlib.Path({str(calls)!r}).read_text()) if pathlib.Path({str(calls)!r}).exists() else 0
            pathlib.Path({str(calls)!r}).write_text("x" * (n + 1))
            run, extra = real(*a, **k)
            if n == 1:  # the second member: the integrator swallows the interrupt, as the real one does
                pathlib.Path({str(mark)!r}).write_text("in")
                try:
                    while True:
                        time.sleep(0.01)
                except KeyboardInterrupt:
                    return dataclasses.replace(run, status="interrupted", message="interrupted"), extra
            return run, extra
        rz.run_razin = run_razin
    """
    argv = ["razin", "--t-end", "10", "--n-save", "20", "--family", "--quiet", "--out", str(out)]
    code, err, _ = _interrupt(_child(patch, argv), [mark], signal.SIGINT)
    assert code == 130, err
    assert (calls.read_text()) == "xx"  # no member after the interrupted one
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert [r["status"] for r in info["family"]] == ["ok", "interrupted"]
    assert info["family"][1]["C5"]["holds"] is None  # an interrupt is not a verdict


def test_check_sigterm_mid_claim_is_not_a_verdict(tmp_path: Path) -> None:
    mark, js = tmp_path / "mark", tmp_path / "records.json"
    module = tmp_path / "slow_claims.py"
    module.write_text(textwrap.dedent(f"""
        import pathlib, time
        from flowsim.theory.registry import Evidence, claim

        @claim("T-FAST", source="test", statement="fast", tolerance=1e-9)
        def fast(config):
            return Evidence(0.0)

        @claim("T-SLOW", source="test", statement="swallows the interrupt", tolerance=1e-9)
        def slow(config):
            pathlib.Path({str(mark)!r}).write_text("in")
            try:
                while True:
                    time.sleep(0.01)
            except KeyboardInterrupt:
                return Evidence(0.0)  # a cut measurement that looks like "holds"
    """))
    argv = ["check", "--module", str(module), "--claim", "T-FAST", "--claim", "T-SLOW", "--json", str(js),
            "--quiet"]
    code, err, _ = _interrupt(_child("import sys\n", argv), [mark], signal.SIGTERM)
    assert code == 143, err
    records = json.loads(js.read_text())
    assert [r["id"] for r in records] == ["T-FAST"]


def _running(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie (an exited, unreaped worker still answers
    ``kill(pid, 0)``)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sweep_sigint_on_the_parent_alone_stops_the_workers(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import os, pathlib, time
        if os.environ.get("FLOWSIM_TEST_MARKS"):
            import flowsim.runs.simulate as rs
            def run(spec):
                pathlib.Path({str(marks)!r}, str(os.getpid())).write_text("in")
                while True:
                    time.sleep(0.05)
            rs.run_simulate = run
    """))
    cfg = tmp_path / "s.toml"
    cfg.write_text('command = "simulate"\n[fixed]\nsize = "5"\nt-end = 1\n[grid]\ndepth = [1, 2]\n')
    out = tmp_path / "sweep"
    env = {"FLOWSIM_TEST_MARKS": "1",
           "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    code = f"import sys\nfrom flowsim.cli import main\nsys.exit(main(['sweep', {str(cfg)!r}, '--out', " \
           f"{str(out)!r}, '--workers', '2', '--quiet']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env}, cwd=ROOT)
    deadline = time.monotonic() + TIMEOUT
    while len(list(marks.iterdir())) < 2:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the workers never started their points"
        time.sleep(0.05)
    workers = [int(p.name) for p in marks.iterdir()]
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        raise AssertionError("the sweep hung after SIGINT") from None
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    deadline = time.monotonic() + TIMEOUT
    while any(_running(pid) for pid in workers):  # the workers stop with the parent
        assert time.monotonic() < deadline, "a worker outlived the sweep"
        time.sleep(0.05)
    for d in (out / "points").iterdir():  # an interrupted point is not a result: it is redone on resume
        info = d / "run.json"
        assert not info.exists() or json.loads(info.read_text())["status"] != "failed"
