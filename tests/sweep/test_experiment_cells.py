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
