"""Bad input to the other commands (``train``, ``validate``, ``razin``, ``check``, ``sweep``;
docs/contract.md §5): one line on stderr naming the option and the accepted values, exit 2, no traceback,
no run directory. Plus the discrete-run counterparts of the core robustness tests (divergence → exit 3,
float32 runs).

The cases feed ``docs/bad_input.md`` too (see ``tests/cli/test_robustness_bad_input.py``). A command whose
module is not importable is skipped, not failed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from test_robustness_bad_input import Case, _call, assert_bad_input, make_bad_files

TRAIN = ("train", "--size", "6", "--rank", "2", "--observed", "20", "--depth", "2", "--iters", "5", "--quiet")
VALIDATE = (
    "validate",
    "--size",
    "6",
    "--rank",
    "2",
    "--observed",
    "20",
    "--depth",
    "2",
    "--t-end",
    "0.1",
    "--quiet",
)
RAZIN = ("razin", "--t-end", "10", "--quiet")


def _case(base: tuple[str, ...], name: str, extra: list[str], expect: str, **kw) -> Case:
    return Case(name, (*base, *extra), expect, **kw)


TRAIN_CASES = [
    _case(TRAIN, "depth 0", ["--depth", "0"], "--depth: must be a positive integer"),
    _case(TRAIN, "rank > min(m, n)", ["--rank", "9"], "--rank must be an integer in [1, min(m, n) = 6]"),
    _case(TRAIN, "observed > m*n", ["--observed", "99"], "--observed must be an integer in [1, m*n = 36]"),
    _case(TRAIN, "lam negative", ["--lam", "-1"], "--lam: must be a finite number ≥ 0"),
    _case(TRAIN, "penalty schatten P = 0", ["--penalty", "schatten:0:1"], "needs P > 0 and Q > 0"),
    _case(TRAIN, "lr 0", ["--lr", "0"], "--lr: must be a finite number > 0"),
    _case(TRAIN, "lr negative", ["--lr", "-1e-2"], "--lr: must be a finite number > 0"),
    _case(TRAIN, "lr NaN", ["--lr", "nan"], "--lr: must be a finite number"),
    _case(TRAIN, "iters 0", ["--iters", "0"], "--iters: must be a positive integer"),
    _case(TRAIN, "iters negative", ["--iters", "-3"], "--iters: must be a positive integer"),
    _case(
        TRAIN, "optimizer unknown", ["--optimizer", "sgd"], "--optimizer: invalid choice: 'sgd' (choose from"
    ),
    _case(TRAIN, "device unknown", ["--device", "tpu"], "--device: invalid choice: 'tpu' (choose from"),
    _case(TRAIN, "dtype unknown", ["--dtype", "float16"], "--dtype: invalid choice: 'float16'"),
    _case(
        TRAIN, "beta1 outside [0, 1)", ["--optimizer", "adam", "--beta1", "1.5"],
        "--beta1 must lie in [0, 1), got 1.5",
    ),
    _case(TRAIN, "eps negative", ["--eps", "-1"], "--eps: must be a finite number ≥ 0"),
    _case(TRAIN, "check-every 0", ["--check-every", "0"], "--check-every: must be a positive integer"),
    _case(TRAIN, "w-star contains NaN", ["--w-star", "{tmp}/nan.npy"], "--w-star contains NaN or inf"),
    _case(
        TRAIN,
        "mask with no observed entry",
        ["--w-star", "{tmp}/w.npy", "--mask", "{tmp}/mask_empty.npy"],
        "--mask has no observed entry",
    ),
    _case(TRAIN, "init-scale 0 at depth ≥ 2 (saddle)", ["--init-scale", "0"], "starts at the saddle W = 0"),
    _case(
        TRAIN,
        "out is an existing file",
        ["--out", "{tmp}/a_file"],
        "exists and is not a directory",
        out_option=False,
    ),
    _case(TRAIN, "iters beyond 2^53", ["--iters", "100000000000000000000"], "is beyond 2^53"),
    _case(TRAIN, "iters beyond the limit", ["--iters", "1000000000"], "--iters needs 1e+09 iterations"),
    _case(TRAIN, "n-save beyond the limit", ["--iters", "10", "--n-save", "100000000"],
          "--n-save needs 1e+08 saved times"),
    _case(TRAIN, "out holds another command's run", ["--out", "{tmp}/validate_run"],
          "holds a flowsim validate run", out_option=False),
]

VALIDATE_CASES = [
    _case(VALIDATE, "lrs not numbers", ["--lrs", "0.1,abc"], "--lrs: must be comma-separated numbers"),
    _case(VALIDATE, "lrs only one", ["--lrs", "0.1"], "--lrs: needs at least two finite step sizes > 0"),
    _case(VALIDATE, "lrs negative", ["--lrs", "0.1,-0.2"], "--lrs: needs at least two finite step sizes > 0"),
    _case(VALIDATE, "against unknown", ["--against", "foo"], "--against: invalid choice: 'foo' (choose from"),
    _case(VALIDATE, "optimizer unsupported", ["--optimizer", "rmsprop"], "--optimizer: invalid choice"),
    _case(VALIDATE, "t-end 0", ["--t-end", "0"], "--t-end: must be a finite number > 0"),
    _case(VALIDATE, "depth 0", ["--depth", "0"], "--depth: must be a positive integer"),
    _case(VALIDATE, "lrs so small that t_end/η is beyond 2^53", ["--lrs", "1e-300,1e-299"], "is beyond 2^53"),
    _case(VALIDATE, "iterations beyond the limit", ["--lrs", "1e-9,2e-9"], "iterations in all"),
    _case(
        VALIDATE,
        "out is an existing file",
        ["--lrs", "0.1,0.05", "--out", "{tmp}/a_file"],
        "exists and is not a directory",
        out_option=False,
    ),
]

RAZIN_CASES = [
    _case(RAZIN, "depth 1", ["--depth", "1"], "--depth must be an integer ≥ 2"),
    _case(RAZIN, "depth 0", ["--depth", "0"], "--depth must be an integer ≥ 2"),
    _case(RAZIN, "t-end 0", ["--t-end", "0"], "--t-end must be a finite number > 0"),
    _case(RAZIN, "t-end NaN", ["--t-end", "nan"], "--t-end must be a finite number > 0"),
    _case(
        RAZIN, "det unknown", ["--det", "zero"], "--det: invalid choice: 'zero' (choose from 'pos', 'neg')"
    ),
    _case(RAZIN, "init-scale 0", ["--init-scale", "0"], "--init-scale: must be a finite number > 0"),
    _case(RAZIN, "rtol 0", ["--rtol", "0"], "--rtol: must be a finite number > 0"),
    _case(RAZIN, "z NaN", ["--z", "nan"], "--z: must be a finite number"),
    _case(RAZIN, "z zero", ["--z", "0"], "--z must be nonzero"),
    _case(RAZIN, "zp zero", ["--zp", "0"], "--zp must be nonzero"),
    _case(RAZIN, "method not stiff", ["--method", "DOP853"], "--method: invalid choice: 'DOP853'"),
    _case(RAZIN, "depth beyond the limit", ["--depth", "100000000"], "--depth needs 1e+08 layers"),
    _case(RAZIN, "n-save beyond the limit", ["--n-save", "100000000"], "--n-save needs 1e+08 saved times"),
    _case(RAZIN, "gd-max-iter beyond the limit", ["--gd", "--gd-max-iter", "1000000000000"],
          "--gd-max-iter needs 1e+12 iterations"),
    _case(
        RAZIN,
        "out is an existing file",
        ["--out", "{tmp}/a_file"],
        "exists and is not a directory",
        out_option=False,
    ),
]

CHECK_CASES = [
    Case(
        "unknown claim id",
        ("check", "--claim", "no-such-claim", "--quiet"),
        "unknown claim id(s) no-such-claim",
        out_option=False,
        doc_cut="known ids:",
    ),
    Case(
        "json folder missing",
        ("check", "--claim", "BALANCEDNESS", "--quick", "--quiet", "--json", "{tmp}/nowhere/x.json"),
        "--json {tmp}/nowhere/x.json: folder",
        out_option=False,
    ),
    Case(
        "module file missing",
        ("check", "--module", "{tmp}/missing.py", "--list"),
        "--module",
        out_option=False,
    ),
    Case("seed negative", ("check", "--seed", "-1"), "--seed: must be an integer ≥ 0", out_option=False),
    Case("module calls sys.exit at import", ("check", "--module", "{tmp}/exits.py", "--list"),
         "importing it called sys.exit(0)", out_option=False),
    Case("claim id with '|'", ("check", "--module", "{tmp}/pipe_id.py", "--list"), "line breaks or '|'",
         out_option=False),
    Case("json file name too long", ("check", "--json", "{tmp}/" + "j" * 300 + ".json"),
         "--json: file name too long", out_option=False),
]

SWEEP_CASES = [
    Case("config file missing", ("sweep", "{tmp}/nope.toml"), "configuration file not found"),
    Case("TOML syntax error", ("sweep", "{tmp}/syntax.toml"), "invalid TOML"),
    Case("unknown top-level key", ("sweep", "{tmp}/unknown_key.toml"), "unknown key(s) ['foo']"),
    Case("unknown option in grid", ("sweep", "{tmp}/unknown_opt.toml"), "unknown option 'depthh'"),
    Case("empty grid list", ("sweep", "{tmp}/empty_grid.toml"), "grid.depth: empty list of values"),
    Case("no grid table", ("sweep", "{tmp}/no_grid.toml"), "no [grid] table"),
    Case("command not sweepable", ("sweep", "{tmp}/bad_cmd.toml"), "'command' must be one of"),
    Case(
        "bad value in a grid point", ("sweep", "{tmp}/bad_value.toml"), "--depth: must be a positive integer"
    ),
    Case(
        "workers 0", ("sweep", "{tmp}/good.toml", "--workers", "0"), "--workers: must be a positive integer"
    ),
    Case(
        "out is an existing file",
        ("sweep", "{tmp}/good.toml", "--out", "{tmp}/a_file"),
        "--out",
        out_option=False,
    ),
    Case(
        "out missing",
        ("sweep", "{tmp}/good.toml"),
        "the following arguments are required: --out",
        out_option=False,
    ),
    Case("grid beyond the point limit", ("sweep", "{tmp}/big_grid.toml"), "--allow-large"),
    Case("range too long for one axis", ("sweep", "{tmp}/huge_range.toml"), "values on one axis"),
    Case("[quick] grid not a table", ("sweep", "{tmp}/quick_grid5.toml", "--quick"),
         "[quick] grid must be a table"),
    Case("[quick] fixed not a table", ("sweep", "{tmp}/quick_fixed_str.toml", "--quick"),
         "[quick] fixed must be a table"),
    Case("logspace count not finite", ("sweep", "{tmp}/logspace_inf.toml"), "with finite numbers"),
]

TOML_FILES = {
    "syntax.toml": 'command = "simulate"\n[grid\ndepth = [1]\n',
    "unknown_key.toml": 'command = "simulate"\nfoo = 1\n[grid]\ndepth = [1]\n',
    "unknown_opt.toml": 'command = "simulate"\n[grid]\ndepthh = [1]\n',
    "empty_grid.toml": 'command = "simulate"\n[grid]\ndepth = []\n',
    "no_grid.toml": 'command = "simulate"\n[fixed]\ndepth = 1\n',
    "bad_cmd.toml": 'command = "plot"\n[grid]\ndepth = [1]\n',
    "bad_value.toml": 'command = "simulate"\n[grid]\ndepth = [0]\n',
    "good.toml": 'command = "simulate"\n[fixed]\nsize = "5"\nt-end = 1\n[grid]\ndepth = [1, 2]\n',
    "big_grid.toml": 'command = "simulate"\n[grid]\nseed = {range = [0, 1000]}\n'
                     'depth = {range = [1, 1001]}\n',
    "huge_range.toml": 'command = "simulate"\n[grid]\nseed = {range = [0, 1e300]}\n',
    "quick_grid5.toml": 'command = "simulate"\n[grid]\ndepth = [1]\n[quick]\ngrid = 5\n',
    "quick_fixed_str.toml": 'command = "simulate"\n[grid]\ndepth = [1]\n[quick]\nfixed = "abc"\n',
    "logspace_inf.toml": 'command = "simulate"\n[grid]\nlam = {logspace = [0, 1, inf]}\n',
}

MODULE_FILES = {
    "exits.py": "import sys\nsys.exit(0)\n",
    "pipe_id.py": 'from flowsim.theory.registry import claim\n\n\n@claim("A|B", source="s", statement="s", '
                  'tolerance=1.0)\ndef t(config):\n    pass\n',
}


def make_command_files(tmp: Path) -> None:
    """The sweep configurations the cases refer to."""
    for name, text in {**TOML_FILES, **MODULE_FILES}.items():
        (tmp / name).write_text(text)


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


MODULES = {
    "train": "flowsim.cli.train",
    "validate": "flowsim.cli.validate",
    "razin": "flowsim.cli.razin",
    "check": "flowsim.cli.check",
    "sweep": "flowsim.cli.sweep",
}

COMMAND_SECTIONS = [
    (f"flowsim {cmd}", cases)
    for cmd, cases in (
        ("train", TRAIN_CASES),
        ("validate", VALIDATE_CASES),
        ("razin", RAZIN_CASES),
        ("check", CHECK_CASES),
        ("sweep", SWEEP_CASES),
    )
    if _available(MODULES[cmd])
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bad_input_commands")
    make_bad_files(tmp)
    make_command_files(tmp)
    return tmp


ALL = TRAIN_CASES + VALIDATE_CASES + RAZIN_CASES + CHECK_CASES + SWEEP_CASES


@pytest.mark.parametrize("case", ALL, ids=lambda c: f"{c.command}: {c.name}")
def test_other_commands_bad_input(case: Case, files: Path) -> None:
    if not _available(MODULES[case.command]):
        pytest.skip(f"flowsim {case.command} is not available")
    assert_bad_input(case, files)


def test_every_issue_case_for_other_commands_is_covered() -> None:
    names = {(c.command, c.name) for c in ALL}
    for needed in (
        ("train", "lr 0"),
        ("train", "iters 0"),
        ("train", "device unknown"),
        ("sweep", "TOML syntax error"),
        ("sweep", "unknown top-level key"),
        ("sweep", "empty grid list"),
        ("check", "unknown claim id"),
    ):
        assert needed in names


@pytest.mark.skipif(not _available("flowsim.cli.train"), reason="flowsim train is not available")
def test_train_cuda_without_a_gpu_is_bad_input(files: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = files / "out" / "cuda"
    code, err, _ = _call([*TRAIN, "--device", "cuda", "--out", str(out)])
    assert code == 2 and "--device cuda" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.skipif(not _available("flowsim.cli.train"), reason="flowsim train is not available")
@pytest.mark.slow
def test_train_divergence_exit_3_keeps_partial_run(tmp_path: Path) -> None:
    """GD with a step far above 2/L: the loss overflows; the run stops with exit 3 and says at which
    iteration, keeping what was recorded."""
    import numpy as np

    out = tmp_path / "run"
    code, err, _ = _call(
        [
            "train",
            "--size",
            "6",
            "--rank",
            "2",
            "--observed",
            "20",
            "--depth",
            "3",
            "--init-scale",
            "1",
            "--lr",
            "50",
            "--iters",
            "2000",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 3, err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "diverged" and "iteration" in info["message"]
    with np.load(out / "trajectory.npz") as z:
        assert z["t"].size >= 1 and np.all(np.isfinite(z["loss"]))


@pytest.mark.skipif(not _available("flowsim.cli.train"), reason="flowsim train is not available")
@pytest.mark.slow
def test_train_float32_runs_and_records_finite_metrics(tmp_path: Path) -> None:
    import numpy as np

    out = tmp_path / "run"
    code, err, _ = _call(
        [
            "train",
            "--size",
            "6",
            "--rank",
            "2",
            "--observed",
            "20",
            "--depth",
            "3",
            "--init-scale",
            "0.1",
            "--lr",
            "0.1",
            "--iters",
            "200",
            "--dtype",
            "float32",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0, err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "ok" and info["params"]["dtype"] == "float32"
    with np.load(out / "trajectory.npz") as z:
        loss = z["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
