"""Sweep runner: summary rebuilt from run directories, failed points, resume after SIGKILL of the sweep or
of one worker, the Dask path on a real LocalCluster, batched train points (docs/contract.md)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from child_markers import start_child

from flowsim.sweep import load_config, run_sweep
from flowsim.sweep.runner import point_dir
from flowsim.sweep.summary import read_summary, write_summary

# 5 small points; the last one fails on purpose (a step budget of 2 steps): it is recorded, not fatal.
CONFIG = """
command = "simulate"
[fixed]
size = 6
rank = 2
observed = 18
t-end = 20
n-save = 5
init-scale = 0.1
[[grid]]
depth = [1, 2]
seed = [0, 1]
[[grid]]
depth = [3]
seed = [0]
max-steps = [2]
"""
TIMING = {"wall_time_s"}

# whole sweeps in worker processes, Dask clusters, kills and resumes (1–20 s each): not in the fast lane
pytestmark = pytest.mark.slow


def _write_config(tmp_path: Path, text: str = CONFIG) -> Path:
    p = tmp_path / "sweep.toml"
    p.write_text(text)
    return p


def _rows(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_summary(path)]


def _sweep_cmd(cfg: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flowsim", "sweep", str(cfg), "--out", str(out), "--workers", "2", *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted sweep: its summary rows (without wall times)."""
    tmp = tmp_path_factory.mktemp("ref")
    cfg = _write_config(tmp)
    out = tmp / "out"
    r = subprocess.run(_sweep_cmd(cfg, out), capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr  # one point failed on purpose
    return out, _rows(out / "summary.csv")


def test_summary_matches_run_directories(reference):
    out, rows = reference
    assert len(rows) == 5
    statuses = sorted(r["status"] for r in rows)
    assert statuses == ["failed"] + ["ok"] * 4
    for r in rows:
        info = json.loads((point_dir(out, r["id"]) / "run.json").read_text())
        assert info["status"] == r["status"]
        assert r["message"] == info["message"]
        if r["status"] == "ok":
            assert float(r["test_error"]) == info["final"]["test_error"]
            assert float(r["erank"]) == info["final"]["erank"]
            assert int(r["p.depth"]) == info["params"]["depth"]
    failed = next(r for r in rows if r["status"] == "failed")
    assert "step budget" in failed["message"]
    # rebuilt from the run directories: deleting it and rebuilding gives the same file
    before = (out / "summary.csv").read_text()
    (out / "summary.csv").unlink()
    write_summary(out)
    assert (out / "summary.csv").read_text() == before
    # a run directory edited by hand shows up in the rebuilt summary (it can never disagree)
    pid = rows[0]["id"]
    p = point_dir(out, pid) / "run.json"
    saved = p.read_text()
    info = json.loads(saved)
    info["final"]["erank"] = 123.0
    p.write_text(json.dumps(info))
    write_summary(out)
    assert next(r for r in read_summary(out / "summary.csv") if r["id"] == pid)["erank"] == "123.0"
    p.write_text(saved)
    write_summary(out)


def test_rerun_skips_finished_points(reference, tmp_path):
    out, rows = reference
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    mtimes = {f: f.stat().st_mtime_ns for f in copy.glob("points/*/run.json")}
    cfg = _write_config(tmp_path)
    outcome = run_sweep(load_config(cfg), copy, workers=2)
    assert outcome.skipped == 5 and not outcome.counts
    assert {f: f.stat().st_mtime_ns for f in copy.glob("points/*/run.json")} == mtimes
    assert _rows(copy / "summary.csv") == rows


def test_sigkill_the_sweep_then_resume_gives_the_same_summary(reference, tmp_path):
    """SIGKILL to the sweep and its workers while a worker is inside a point (it is about to write the
    point's run.json and waits there), then resume: the same summary as an uninterrupted sweep."""
    _, rows = reference
    cfg = _write_config(tmp_path)
    out = tmp_path / "out"
    with start_child("sweep_stops_in_point.py", tmp_path / "stopped", "sweep", cfg, "--out", out,
                     "--workers", "2", start_new_session=True) as child:
        _, run_dir = child.wait_for_marker("inside-point ").split(maxsplit=1)
        os.killpg(child.proc.pid, signal.SIGKILL)  # the sweep and its workers, mid-point
        child.finish()
    assert not (Path(run_dir) / "run.json").exists()  # the stopped point is unfinished
    assert len(list(out.glob("points/*/run.json"))) < len(rows)
    r = subprocess.run(_sweep_cmd(cfg, out), capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr
    assert _rows(out / "summary.csv") == rows


def test_killing_a_worker_process_does_not_stop_the_sweep(reference, tmp_path):
    """SIGKILL to one worker while it is inside a point (about to write the point's run.json): the sweep
    replaces the worker, reruns the point and ends with the same summary as an uninterrupted sweep."""
    _, rows = reference
    cfg = _write_config(tmp_path)
    out = tmp_path / "out"
    with start_child("sweep_stops_in_point.py", tmp_path / "stopped", "sweep", cfg, "--out", out,
                     "--workers", "2") as child:
        pid, run_dir = child.wait_for_marker("inside-point ").split(maxsplit=1)
        assert not (Path(run_dir) / "run.json").exists()
        os.kill(int(pid), signal.SIGKILL)
        code, err = child.finish()
    assert code == 3, err
    assert (Path(run_dir) / "run.json").is_file()  # the killed point was run again
    assert _rows(out / "summary.csv") == rows


def test_dask_local_cluster(reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    _, rows = reference
    cfg = load_config(_write_config(tmp_path))
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        outcome = run_sweep(cfg, out, scheduler=cluster.scheduler_address)
    assert outcome.counts == {"ok": 4, "failed": 1}
    assert _rows(out / "summary.csv") == rows


def test_bad_scheduler_address_is_bad_input():
    pytest.importorskip("distributed")
    from flowsim.errors import BadInputError
    from flowsim.sweep.runner import DaskBackend

    with pytest.raises(BadInputError, match="cannot connect"):
        DaskBackend("tcp://127.0.0.1:1", timeout="1s")


TRAIN_CONFIG = """
command = "train"
batch_size = 8
[fixed]
size = 8
rank = 2
observed = 30
depth = 2
optimizer = "adam"
iters = 150
n-save = 10
init = "gaussian"
init-scale = 0.1
device = "cpu"
penalty = "ratio"
[grid]
seed = [0, 1]
lam = [0.0, 0.01]
"""


def test_batched_train_points_equal_single_runs(tmp_path):
    pytest.importorskip("flowsim.validation.train")
    from flowsim.cli.train import build_parser, run

    cfg = load_config(_write_config(tmp_path, TRAIN_CONFIG))
    out = tmp_path / "out"
    outcome = run_sweep(cfg, out, workers=1)
    assert outcome.counts == {"ok": 4}
    rows = {r["id"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    for p in cfg.points()[::3]:  # two of the four points, each run alone by `flowsim train`
        single = tmp_path / f"single-{p.id}"
        args = build_parser("flowsim train").parse_args([*p.argv(), "--out", str(single), "--quiet"])
        assert run(args) == 0
        info = json.loads((single / "run.json").read_text())
        batched = json.loads((point_dir(out, p.id) / "run.json").read_text())
        assert batched["batch"]["size"] == 4
        for key in ("loss", "test_error", "erank"):
            assert float(rows[p.id][key]) == pytest.approx(info["final"][key], rel=1e-9, abs=1e-12)
            assert batched["final"][key] == pytest.approx(info["final"][key], rel=1e-9, abs=1e-12)
