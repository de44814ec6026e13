"""Run specs and run functions (flowsim.runs): a spec run without the command line writes what the command
writes, ``to_argv`` round-trips through the parser, and bad values fail in the spec layer with the
command line's one-line message."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest

from flowsim.cli import COMMANDS, main
from flowsim.errors import BadInputError
from flowsim.runs import RUNS, run_function, spec_class

SIM = {"size": "6", "rank": 2, "observed": 24, "t_end": 50.0, "n_save": 12}
TRAIN = {"size": "6", "rank": 2, "observed": 24, "optimizer": "adam", "lr": 1e-3, "iters": 200, "n_save": 10}
VALIDATE = {"size": "6", "rank": 2, "observed": 24, "lrs": "0.02,0.01", "t_end": 0.5, "n_save": 8,
            "device": "cpu"}
RAZIN = {"t_end": 1e3, "n_save": 30}
CASES = {"simulate": SIM, "train": TRAIN, "validate": VALIDATE, "razin": RAZIN}


def _cli(argv: list[str]) -> int:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        return main(argv)


def _build_parser(command: str):
    import importlib

    return importlib.import_module(COMMANDS[command][0]).build_parser(f"flowsim {command}")


def _same_run(a: Path, b: Path) -> None:
    """Equal run.json (but the folder, wall times and dates) and equal arrays in every .npz."""
    ja, jb = (json.loads((d / "run.json").read_text()) for d in (a, b))
    for j in (ja, jb):
        j["params"].pop("out")
        for key in ("wall_time_s", "written_at", "argv", "versions"):
            j.pop(key, None)
        for key in [k for k in j.get("stats", {}) if "wall" in k or k.endswith("_per_s")]:
            j["stats"].pop(key)
    assert ja["params"] == jb["params"]
    assert ja["status"] == jb["status"] == "ok"
    assert ja["final"] == jb["final"]
    npz = sorted(str(p.relative_to(a)) for p in a.rglob("*.npz"))
    assert npz and npz == sorted(str(p.relative_to(b)) for p in b.rglob("*.npz"))
    for name in npz:
        with np.load(a / name) as xa, np.load(b / name) as xb:
            assert sorted(xa.files) == sorted(xb.files)
            for k in xa.files:
                if "wall" not in k:
                    np.testing.assert_array_equal(xa[k], xb[k], err_msg=f"{name}:{k}")


@pytest.mark.parametrize("command", sorted(CASES))
@pytest.mark.slow
def test_a_spec_run_writes_what_the_command_writes(command: str, tmp_path: Path) -> None:
    spec_cls = spec_class(command)
    direct = tmp_path / "direct"
    spec = spec_cls.from_options({**CASES[command], "out": str(direct), "quiet": True})
    result = run_function(command)(spec)
    assert (result.status, result.exit_code, result.out) == ("ok", 0, direct)
    info = json.loads((direct / "run.json").read_text())
    assert info["argv"] == spec.command_line()
    assert info["argv"].startswith(f"flowsim {command} ")
    via_cli = tmp_path / "cli"
    assert _cli([command, *spec.replace(out=str(via_cli)).to_argv()]) == 0
    _same_run(direct, via_cli)


@pytest.mark.slow
def test_check_spec_runs_the_selected_claims(tmp_path: Path) -> None:
    from flowsim.runs.check import CheckSpec, run_check

    claim = next(iter(__import__("flowsim.theory.registry", fromlist=["x"]).load_builtin_claims()))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    with contextlib.redirect_stdout(io.StringIO()):
        result = run_check(CheckSpec(claim=[claim], quick=True, json=str(a), quiet=True))
    assert (result.status, result.exit_code, result.final["records"]) == ("ok", 0, 1)
    assert _cli(["check", *CheckSpec(claim=[claim], quick=True, json=str(b), quiet=True).to_argv()]) == 0
    ra, rb = (json.loads(p.read_text()) for p in (a, b))
    assert [r["id"] for r in ra] == [r["id"] for r in rb] == [claim]
    assert [r["residual"] for r in ra] == [r["residual"] for r in rb]


@pytest.mark.parametrize("command", sorted(RUNS))
def test_the_parser_and_the_spec_have_the_same_options_and_defaults(command: str) -> None:
    spec_cls = spec_class(command)
    args = _build_parser(command).parse_args([])
    assert list(vars(args)) == list(spec_cls.options())
    assert spec_cls.from_namespace(args) == spec_cls()


ROUND_TRIPS = {
    "simulate": {"size": "7x5", "observed": "all", "penalty": "ratio", "lam": 0.25, "flow": "adam-ode",
                 "t_end": 12.5, "max_steps": 900, "save_matrices": True, "out": "x y/z", "init_seed": 4},
    "train": {"optimizer": "rmsprop", "centered": True, "alpha": 0.5, "momentum": 0.1, "dtype": "float32",
              "no_plot": True, "iters": 77, "data": "ratings:u.data"},
    "validate": {"optimizer": "adam", "lrs": "0.3,0.1,0.03", "against": "adam-sign", "beta_scaling": "bb21",
                 "amsgrad": True, "model": "end-product"},
    "razin": {"depth": 4, "z": -2.0, "zp": 0.5, "eps": 0.01, "det": "neg", "init": "normal",
              "init_scale": 0.008, "gd": True, "family": True, "stop_loss": 1e-6, "gd_engine": "python"},
    "check": {"claim": ["a", "b"], "module": ["m.py"], "quick": True, "json": "r.json", "seed": 3},
}


@pytest.mark.parametrize("command", sorted(ROUND_TRIPS))
def test_to_argv_round_trips_through_the_parser(command: str) -> None:
    spec_cls = spec_class(command)
    spec = spec_cls.from_options(ROUND_TRIPS[command])
    assert spec != spec_cls()
    args = _build_parser(command).parse_args(spec.to_argv())
    assert spec_cls.from_namespace(args) == spec
    assert spec_cls().to_argv() == []


BAD = [
    ("simulate", {"rank": 0}, "argument --rank: must be a positive integer, got '0'"),
    ("simulate", {"size": "3x"}, "argument --size: must be M or MxN with positive integers, got '3x'"),
    ("simulate", {"flow": "nope"}, "argument --flow: invalid choice: 'nope' (choose from "),
    ("simulate", {"beta1": 1.0}, "argument --beta1: must be a number in [0, 1), got '1.0'"),
    ("simulate", {"penalty": "bogus"}, "argument --penalty: "),
    ("train", {"lr": 0}, "argument --lr: must be a finite number > 0, got '0'"),
    ("train", {"beta1": "x"}, "argument --beta1: invalid float value: 'x'"),
    ("validate", {"lrs": "0.1"}, "argument --lrs: needs at least two finite step sizes > 0, got '0.1'"),
    ("razin", {"z": "inf"}, "argument --z: must be a finite number, got 'inf'"),
    ("check", {"seed": -1}, "argument --seed: must be an integer ≥ 0, got '-1'"),
]


@pytest.mark.parametrize("command, options, message", BAD, ids=[f"{c}-{next(iter(o))}" for c, o, _ in BAD])
def test_a_bad_value_fails_in_the_spec_layer_with_the_cli_message(command: str, options: dict,
                                                                    message: str, tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as caught:
        spec_class(command).from_options(options)
    assert str(caught.value).startswith(message)
    argv = [command]
    for k, v in options.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([*argv, "--out", str(tmp_path / "never")] if command != "check" else argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    assert code == 2
    assert err.getvalue().strip() == f"flowsim {command}: error: {caught.value}"
    assert not (tmp_path / "never").exists()


def test_unknown_options_and_flags_are_refused_by_the_spec() -> None:
    from flowsim.runs.simulate import SimulateSpec

    with pytest.raises(BadInputError, match="unknown option 'colour' for flowsim simulate"):
        SimulateSpec.from_options({"colour": 1})
    with pytest.raises(BadInputError, match="option 'quiet' is a flag"):
        SimulateSpec.from_options({"quiet": "yes"})
    with pytest.raises(BadInputError, match="option 'rank' takes a value"):
        SimulateSpec.from_options({"rank": True})
    spec = SimulateSpec.from_options({"--t-end": "10", "n-save": 5, "save_matrices": False})
    assert (spec.t_end, spec.n_save, spec.save_matrices) == (10.0, 5, False)
    assert dataclasses.is_dataclass(spec) and spec.replace(depth=2).depth == 2
