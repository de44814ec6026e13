"""The reproduction scripts on the sweep's process pool: SIGINT and SIGTERM stop the parent and its workers
at once, keep the finished cells and exit 130 / 143 with one line on stderr."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reference_problems import reproduction_protocol

ROOT = Path(__file__).resolve().parents[2]

SLOW = reproduction_protocol(30, 2, 300, max_iters=400000, window=400000, rtol=0.0, optimizers=("adam",),
                             extra_stopping="loss_floor = 0.0")


def _alive(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads worker states from /proc")
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_table1_script_stops_its_workers_on_a_signal(tmp_path, sig, code):
    cfg = tmp_path / "slow.toml"
    cfg.write_text(SLOW)
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, str(ROOT / "experiments/table1/run.py"), "--out", str(out),
                          "--config", str(cfg), "--workers", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    kids: list[str] = []
    while time.monotonic() < deadline and len(kids) < 2:  # the pool's workers have started
        time.sleep(0.5)
        kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    time.sleep(3)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "the same command resumes" in lines[0]
    time.sleep(1.0)
    assert kids and not [k for k in kids if _alive(k)]
    assert not (out / "results.csv").exists()  # nothing claims to be complete
    assert os.path.isdir(out / "cells")


@pytest.mark.slow
def test_table1_script_on_a_dask_cluster_equals_the_local_run(tmp_path):
    """``--scheduler`` runs the cells as Dask futures: the records equal those of the serial local run."""
    distributed = pytest.importorskip("distributed")
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("table1_run_for_dask", ROOT / "experiments/table1/run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(reproduction_protocol())
    args = ["--config", str(cfg), "--optimizers", "adam", "--depths", "1"]
    assert run.main(["--out", str(tmp_path / "local"), "--workers", "1", *args]) == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert run.main(["--out", str(tmp_path / "dask"), "--scheduler", address, *args]) == 0
    for name in ("depth=1_optimizer=adam_penalty=ratio.json", "depth=1_optimizer=adam_penalty=none.json"):
        a, b = (json.loads((tmp_path / d / "cells" / name).read_text()) for d in ("local", "dask"))
        assert [s["test_error"] for s in a["seeds"]] == [s["test_error"] for s in b["seeds"]]
        assert a["summary"]["lr_chosen"] == b["summary"]["lr_chosen"]
