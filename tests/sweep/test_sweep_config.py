"""Sweep configuration: grid expansion, ranges, zip axes, unions, stable ids, bad TOML (docs/contract.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowsim.errors import BadInputError
from flowsim.sweep.config import expand_values, params_to_argv, parse_config, point_id

BASE = """
command = "simulate"
[fixed]
size = 6
t-end = 10
"""


def test_product_grid_and_ranges():
    cfg = parse_config(BASE + """
[grid]
depth = [1, 2, 3]
lam = { logspace = [-3, -1, 3] }
seed = { range = [0, 2] }
""")
    pts = cfg.points()
    assert len(pts) == 3 * 3 * 2
    lams = sorted({p.params["lam"] for p in pts})
    assert lams == pytest.approx([1e-3, 1e-2, 1e-1], rel=1e-12)
    assert {p.params["seed"] for p in pts} == {0, 1}
    assert all(p.params["size"] == 6 and p.params["t_end"] == 10 for p in pts)
    assert len({p.id for p in pts}) == len(pts)


def test_zip_union_labels_and_dedup():
    cfg = parse_config(BASE + """
[[grid]]
label = "main"
depth = [1, 2]
[grid.zip]
flow = ["gf", "gd-modified"]
lr = [0.01, 0.1]

[[grid]]
label = "extra"
depth = [2]
flow = ["gf"]
lr = [0.01, 0.5]
""")
    pts = cfg.points()
    combos = {(p.params["depth"], p.params["flow"], p.params["lr"]) for p in pts}
    assert combos == {(1, "gf", 0.01), (1, "gd-modified", 0.1), (2, "gf", 0.01), (2, "gd-modified", 0.1),
                      (2, "gf", 0.5)}
    assert len(pts) == 5  # (2, gf, 0.01) is in both grids and appears once
    assert cfg.labels == ["main", "extra"]


def test_ids_are_stable_and_depend_on_parameters_only():
    a = point_id("simulate", {"depth": 2, "lam": 0.1, "size": 6})
    b = point_id("simulate", {"size": 6, "lam": 0.1, "depth": 2})
    assert a == b and len(a) == 12
    assert a != point_id("simulate", {"depth": 3, "lam": 0.1, "size": 6})
    assert a != point_id("train", {"depth": 2, "lam": 0.1, "size": 6})
    # a known value: the id is a pure function of the canonical JSON (sha256), stable across runs/machines
    import hashlib

    canon = '{"command":"simulate","params":{"depth":2,"lam":0.1,"size":6}}'
    assert a == hashlib.sha256(canon.encode()).hexdigest()[:12]
    # the grid order does not change ids; floats from ranges are rounded so 10**-1 == 0.1
    c1 = parse_config(BASE + "[grid]\ndepth = [1, 2]\nlam = [0.1]\n").points()
    c2 = parse_config(BASE + "[grid]\nlam = { logspace = [-1, -1, 1] }\ndepth = [2, 1]\n").points()
    assert {p.id for p in c1} == {p.id for p in c2}


def test_argv_and_flags():
    assert params_to_argv({"t_end": 100.0, "save_matrices": True, "quiet_x": False, "depth": 3}) == [
        "--depth", "3", "--save-matrices", "--t-end", "100.0"]
    assert expand_values({"range": [0, 6, 2]}, "x") == [0, 2, 4]
    assert expand_values({"linspace": [0, 1, 3]}, "x") == [0.0, 0.5, 1.0]


def test_quick_overrides():
    text = BASE + "[grid]\ndepth = [1, 2, 3]\n[quick]\nfixed = { size = 4 }\ngrid = { depth = [2] }\n"
    full, quick = parse_config(text), parse_config(text, quick=True)
    assert len(full.points()) == 3 and len(quick.points()) == 1
    assert quick.points()[0].params == {"size": 4, "t_end": 10, "depth": 2}


@pytest.mark.parametrize("text, fragment", [
    ("command = 'simulate'\n[grid\ndepth = [1]\n", "invalid TOML"),
    (BASE + "[grid]\ndepht = [1, 2]\n", "unknown option 'depht'"),
    (BASE + "[grid]\n", "empty"),
    (BASE + "[grid]\ndepth = []\n", "empty list"),
    (BASE, "no [grid]"),
    ("command = 'simulate'\nbogus = 1\n[grid]\ndepth = [1]\n", "unknown key"),
    ("command = 'nope'\n[grid]\ndepth = [1]\n", "'command' must be one of"),
    (BASE + "[grid]\ndepth = [0]\n", "positive integer"),
    (BASE + "[grid]\nout = ['x']\n", "set by the sweep runner"),
    (BASE + "[grid]\nsize = [3, 4]\n", "both fixed and swept"),
    (BASE + "[grid]\nlam = { logspace = [1, 2] }\n", "logspace"),
    (BASE + "[grid.zip]\ndepth = [1, 2]\nlam = [0.1]\n", "equal lengths"),
])
def test_bad_configs_raise_one_line(text, fragment):
    with pytest.raises(BadInputError) as exc:
        parse_config(text)
    assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("body", ["command = 'simulate'\n[grid\n", BASE + "[grid]\nfoo = [1]\n",
                                  BASE + "[grid]\n"])
@pytest.mark.slow
def test_cli_bad_toml_exit_2_one_line_nothing_created(tmp_path, body):
    cfg = tmp_path / "c.toml"
    cfg.write_text(body)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "flowsim", "sweep", str(cfg), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowsim sweep: error:")
    assert "Traceback" not in r.stderr
    assert not out.exists()
