"""Experiment 1 report: the Markdown table is rendered from the run directories of a sweep folder."""

from __future__ import annotations

import json

import pytest

from flowsim.sweep.tables import penalty_label, render_table1


def _point(out, pid, params, labels, status="ok", err=0.1234, erank=4.6):
    d = out / "points" / pid
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"status": status, "message": "", "wall_time_s": 1.0,
                                            "final": {"test_error": err, "erank": erank}}))
    return {"id": pid, "params": params, "labels": labels}


def test_table1_layout_and_values(tmp_path):
    pts = []
    for i, (opt, depth, pen, err, rk, status) in enumerate([
        ("adam", 1, "ratio", 0.05, 5.2, "ok"), ("adam", 1, "none", 0.9, 30.0, "ok"),
        ("gd", 3, "ratio", 0.01, 4.6, "ok"), ("gd", 3, "none", float("nan"), float("nan"), "diverged"),
        ("adam", 3, "ratio", 0.02, 5.0, "ok"), ("gd", 1, "ratio", 0.5, 9.0, "ok"),
    ]):
        lam = 0.0 if pen == "none" else (1e-2 if depth == 1 else 1e-4)
        pts.append(_point(tmp_path, f"p{i}", {"optimizer": opt, "depth": depth, "penalty": pen, "lam": lam,
                                             "lr": 0.01}, ["main"], status, err, rk))
    for j, (lr, lam, err) in enumerate([(0.01, 1e-3, 0.3), (0.03, 1e-3, 0.2), (0.01, 1e-2, 0.05)]):
        labels = ["sensitivity"] + (["main"] if (lr, lam) == (0.01, 1e-2) else [])
        params = {"optimizer": "adam", "depth": 1, "penalty": "ratio", "lam": lam, "lr": lr}
        if "main" in labels:
            pts[0]["labels"].append("sensitivity")
            continue
        pts.append(_point(tmp_path, f"s{j}", params, labels, "ok", err, 3.0))
    (tmp_path / "sweep.json").write_text(json.dumps({"points": pts}))
    text = render_table1(tmp_path)
    lines = text.splitlines()
    assert lines[0] == "| Optimizer | N | ratio Err | ratio Rk | none Err | none Rk |"
    assert lines[2] == "| Adam | 1 | 0.050 | 5 | 0.900 | 30 |"
    assert lines[3] == "| Adam | 3 | 0.020 | 5 |  |  |"
    assert lines[4] == "| GD | 1 | 0.500 | 9 |  |  |"
    assert lines[5] == "| GD | 3 | 0.010 | 5 | diverged | diverged |"
    assert "λ = 0.01 at N = 1; λ = 0.0001 at N = 3" in text
    sens = text[text.index("Sensitivity"):]
    assert "| 0.01 | 0.300 / 3.00 | 0.050 / 5.20 |" in sens
    assert "| 0.03 | 0.200 / 3.00 |  |" in sens


@pytest.mark.parametrize("spec, label", [("schatten:1/2:2/3", "S1/2:2/3"),
                                         ("schatten:0.333333:0.5", "S1/3:1/2"), ("ratio", "ratio")])
def test_penalty_labels(spec, label):
    assert penalty_label(spec) == label
