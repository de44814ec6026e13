"""The resumable cell runner of the reproduction scripts: a failing cell is named, not recorded, and does not
stop the others; the next call retries only what is missing."""

from __future__ import annotations

import pytest

from flowsim.errors import RunFailedError
from flowsim.validation.reproduce_jobs import run_jobs


def _job(cell: dict, proto: dict) -> dict:
    if cell["k"] in proto["bad"]:
        raise RuntimeError(f"SVD failed in cell {cell['k']}\nsecond line")
    return {"cell": cell, "summary": {"err_mean": cell["k"] / 10, "erank_mean": 1.0, "lr_chosen": "1",
                                      "iterations": "5"}, "wall_time_s": 0.0}


def test_a_failing_cell_does_not_stop_the_others(tmp_path):
    cells = [{"k": k} for k in range(4)]
    with pytest.raises(RunFailedError) as err:
        run_jobs(cells, _job, {"bad": {1}}, tmp_path, log=None)
    msg = str(err.value)
    assert "1 of 4 cells failed" in msg and "k=1: RuntimeError: SVD failed in cell 1" in msg
    assert "second line" not in msg
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == ["k=0.json", "k=2.json", "k=3.json"]
    records = run_jobs(cells, _job, {"bad": set()}, tmp_path, log=None)  # resumes: only k = 1 runs
    assert [r["summary"]["err_mean"] for r in records] == [0.0, 0.1, 0.2, 0.3]
