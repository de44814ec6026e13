"""Batched simulate points of a sweep: one ensemble for the gradient flows of one shape, each point's run
directory as its single ``flowsim simulate`` run writes it (trajectory bit for bit, run.json up to the
wall times and the batch entry); points that cannot join run alone."""

import json

import numpy as np
import pytest

from flowsim.sweep.config import Point
from flowsim.sweep.flow_batching import group_flow_points, run_simulate_batch
from flowsim.sweep.runner import run_point

pytest.importorskip("numba")

BASE = {"size": "8x8", "rank": 2, "observed": 30, "depth": 3, "t_end": 50.0, "n_save": 20, "init_scale": 0.01}


def _items(tmp_path, params_list, tag):
    pts = [Point("simulate", {**BASE, **p}, id=f"p{i}") for i, p in enumerate(params_list)]
    return [(p.command, p.argv(), dict(p.params), str(tmp_path / tag / p.id)) for p in pts]


def _without_walls(info: dict) -> dict:
    info = dict(info)
    for key in ("wall_time_s", "written_at", "batch", "argv"):
        info.pop(key, None)
    info["stats"] = {k: v for k, v in info["stats"].items() if "wall_time" not in k}
    info["params"] = {k: v for k, v in info["params"].items() if k != "out"}
    return info


def test_batched_simulate_points_equal_single_runs(tmp_path):
    variants = [{"seed": 0}, {"seed": 1, "init": "gaussian"}, {"seed": 2, "observed": 40},
                {"seed": 3, "penalty": "nuclear", "lam": 0.01, "model": "layers"},
                {"seed": 4, "init": "gaussian", "model": "auto"}]
    common = {"model": "layers"}
    params_list = [{**common, **v} for v in variants]
    batched = _items(tmp_path, params_list, "batched")
    alone = _items(tmp_path, params_list, "alone")
    out = run_simulate_batch(batched, [True] * len(batched))
    assert [r["status"] for r in out] == ["ok"] * len(batched)
    for b_item, a_item in zip(batched, alone):
        assert run_point(*a_item)["status"] == "ok"
        b_info = json.loads((tmp_path / "batched" / b_item[3].rsplit("/", 1)[1] / "run.json").read_text())
        a_info = json.loads((tmp_path / "alone" / a_item[3].rsplit("/", 1)[1] / "run.json").read_text())
        assert b_info["batch"]["size"] == len(batched) and "batch" not in a_info
        assert b_info["stats"]["engine"] == a_info["stats"]["engine"] == "numba"
        assert _without_walls(b_info) == _without_walls(a_info)
        with np.load(f"{b_item[3]}/trajectory.npz") as b, np.load(f"{a_item[3]}/trajectory.npz") as a:
            assert sorted(b.files) == sorted(a.files)
            for key in a.files:
                np.testing.assert_array_equal(b[key], a[key], err_msg=key)


def test_points_that_cannot_join_run_alone_and_unwritten_points_are_skipped(tmp_path):
    params_list = [{"seed": 0, "model": "layers"},
                   {"seed": 1, "model": "end-product"},  # another formulation: runs alone (scipy)
                   {"seed": 2, "model": "layers", "rank": 99},  # bad input: recorded as that point's failure
                   {"seed": 3, "model": "layers"}]
    items = _items(tmp_path, params_list, "mixed")
    out = run_simulate_batch(items, [True, True, True, False])
    assert [r["status"] for r in out[:3]] == ["ok", "ok", "failed"] and out[3]["skipped"]
    infos = [json.loads((tmp_path / "mixed" / f"p{i}" / "run.json").read_text()) for i in range(3)]
    assert infos[0]["batch"]["size"] == 1 and infos[0]["stats"]["engine"] == "numba"
    assert "batch" not in infos[1] and infos[1]["stats"]["formulation"] == "end-product"
    assert "bad input" in infos[2]["message"]


def test_grouping_is_by_everything_but_the_per_flow_options():
    pts = [Point("simulate", {**BASE, "seed": s, "t_end": t}, id=f"{s}-{t}") for t in (50.0, 60.0)
           for s in range(3)]
    pts.append(Point("simulate", {**BASE, "flow": "gd-modified"}, id="other"))
    groups = group_flow_points(pts, batch_size=2)
    assert [[p.id for p in g] for g in groups] == [["other"], ["0-50.0", "1-50.0"], ["2-50.0"],
                                                   ["0-60.0", "1-60.0"], ["2-60.0"]]
    assert group_flow_points(pts, batch_size=1) == [[p] for p in pts]
    train = [Point("train", dict(BASE), id="t")]
    assert group_flow_points(train, batch_size=8) == [[train[0]]]


SIMULATE_CONFIG = """
command = "simulate"
batch_size = 8
[fixed]
size = 8
rank = 2
observed = 30
depth = 3
model = "layers"
t-end = 40.0
n-save = 15
init = "gaussian"
init-scale = 0.05
[grid]
seed = [0, 1, 2]
"""


@pytest.mark.slow
def test_a_sweep_runs_its_simulate_points_as_one_batch(tmp_path):
    from flowsim.sweep import load_config, run_sweep
    from flowsim.sweep.runner import point_dir

    (tmp_path / "sweep.toml").write_text(SIMULATE_CONFIG)
    cfg = load_config(tmp_path / "sweep.toml")
    out = tmp_path / "out"
    assert run_sweep(cfg, out, workers=1).counts == {"ok": 3}
    for p in cfg.points():
        info = json.loads((point_dir(out, p.id) / "run.json").read_text())
        assert info["batch"]["size"] == 3 and info["stats"]["engine"] == "numba"
        alone = tmp_path / "alone" / p.id
        assert run_point("simulate", p.argv(), dict(p.params), str(alone))["status"] == "ok"
        with np.load(point_dir(out, p.id) / "trajectory.npz") as b, np.load(alone / "trajectory.npz") as a:
            np.testing.assert_array_equal(b["sigma"], a["sigma"])
