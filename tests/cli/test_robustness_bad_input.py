"""Bad input to ``flowsim simulate`` / ``flowsim plot`` (docs/contract.md §5): one line on stderr naming
the option and the accepted values, exit code 2, no traceback, no output directory left behind.

The case table below is also the source of ``docs/bad_input.md``: regenerate it with

    python tests/cli/test_robustness_bad_input.py

and :func:`test_docs_bad_input_md_is_current` fails when the file no longer matches what the commands print.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "bad_input.md"

#: a small, fast simulate problem; each case appends its own options (the last occurrence wins)
SIM = ("simulate", "--size", "6", "--rank", "2", "--observed", "20", "--depth", "2", "--t-end", "1",
       "--n-save", "3", "--quiet")


@dataclass(frozen=True)
class Case:
    """One bad-input case: ``argv`` (with ``{tmp}`` for the folder of prepared files and ``{out}`` for the
    run directory that must not appear), and ``expect``, text the one-line message must contain (the
    option and the accepted values)."""

    name: str
    argv: tuple[str, ...]
    expect: str
    out_option: bool = True  # append ``--out {out}`` (simulate cases)
    deny_write: bool = False  # pretend the file system refuses writes (os.access -> False)
    doc_cut: str | None = None  # the doc cuts the message after this text (lists that grow: claim ids)

    @property
    def command(self) -> str:
        return self.argv[0] if self.argv else ""


def sim(name: str, extra: Sequence[str], expect: str, **kw) -> Case:
    return Case(name, (*SIM, *extra), expect, **kw)


SIMULATE_CASES: list[Case] = [
    sim("depth 0", ["--depth", "0"], "--depth: must be a positive integer"),
    sim("depth negative", ["--depth", "-2"], "--depth: must be a positive integer"),
    sim("depth not an integer", ["--depth", "2.5"], "--depth: must be a positive integer"),
    sim("depth not a number", ["--depth", "three"], "--depth: must be a positive integer"),
    sim("rank 0", ["--rank", "0"], "--rank: must be a positive integer"),
    sim("rank > min(m, n)", ["--rank", "7"], "--rank must be an integer in [1, min(m, n) = 6]"),
    sim("observed 0", ["--observed", "0"], "--observed: must be a positive integer or 'all'"),
    sim("observed negative", ["--observed", "-5"], "--observed: must be a positive integer or 'all'"),
    sim("observed > m*n", ["--observed", "37"], "--observed must be an integer in [1, m*n = 36]"),
    sim("observed not a number", ["--observed", "many"], "--observed: must be a positive integer or 'all'"),
    sim("size malformed (6x)", ["--size", "6x"], "--size: must be M or MxN with positive integers"),
    sim("size malformed (6x5x4)", ["--size", "6x5x4"], "--size: must be M or MxN with positive integers"),
    sim("size zero", ["--size", "0x5"], "--size: must be M or MxN with positive integers"),
    sim("size negative", ["--size", "-6"], "--size: must be M or MxN with positive integers"),
    sim("size letters", ["--size", "axb"], "--size: must be M or MxN with positive integers"),
    sim("size too large for memory", ["--size", "100000000", "--rank", "2"], "does not fit in memory",
        doc_cut="does not fit in memory"),
    sim("size beyond the SVD limit", ["--size", "5000", "--rank", "2"], "flops per SVD"),
    sim("depth beyond the limit", ["--depth", "100000000"], "--depth needs 1e+08 layers (limit 1e+04)"),
    sim("n-save beyond the limit", ["--n-save", "100000000"], "--n-save needs 1e+08 saved times"),
    sim("t-end beyond the horizon limit", ["--t-end", "1e300"], "--t-end 1e+300 needs solver steps"),
    sim("out holds another command's run", ["--out", "{tmp}/validate_run"], "holds a flowsim validate run",
        out_option=False),
    sim("out holds files flowsim did not write", ["--out", "{tmp}/user_dir"],
        "holds no flowsim simulate run (notes.txt)", out_option=False),
    sim("out name too long", ["--out", "{tmp}/" + "n" * 300], "File name too long", out_option=False),
    sim("lam negative", ["--lam", "-0.1"], "--lam: must be a finite number ≥ 0"),
    sim("lam negative (1e-3 form)", ["--lam", "-1e-3"], "--lam: must be a finite number ≥ 0"),
    sim("lam NaN", ["--lam", "nan"], "--lam: must be a finite number"),
    sim("penalty unknown", ["--penalty", "l1"], "--penalty: must be one of none|ratio|nuclear|schatten:P:Q"),
    sim("penalty schatten missing Q", ["--penalty", "schatten:1"], "schatten:P:Q"),
    sim("penalty schatten P = 0", ["--penalty", "schatten:0:2"], "needs P > 0 and Q > 0"),
    sim("penalty schatten Q < 0", ["--penalty", "schatten:1:-2"], "needs P > 0 and Q > 0"),
    sim("penalty schatten not numbers", ["--penalty", "schatten:a:b"], "needs numbers P and Q"),
    sim("penalty schatten 1/0", ["--penalty", "schatten:1/0:1"], "needs numbers P and Q"),
    sim("t-end 0", ["--t-end", "0"], "--t-end: must be a finite number > 0"),
    sim("t-end negative", ["--t-end", "-5"], "--t-end: must be a finite number > 0"),
    sim("t-end NaN", ["--t-end", "nan"], "--t-end: must be a finite number"),
    sim("t-end inf", ["--t-end", "inf"], "--t-end: must be a finite number"),
    sim("t-end -inf", ["--t-end", "-inf"], "--t-end: must be a finite number"),
    sim("rtol 0", ["--rtol", "0"], "--rtol: must be a finite number > 0"),
    sim("rtol negative", ["--rtol", "-1e-6"], "--rtol: must be a finite number > 0"),
    sim("atol 0", ["--atol", "0"], "--atol: must be a finite number > 0"),
    sim("atol negative", ["--atol", "-1e-3"], "--atol: must be a finite number > 0"),
    sim("atol NaN", ["--atol", "nan"], "--atol: must be a finite number"),
    sim("lr 0", ["--lr", "0"], "--lr: must be a finite number > 0"),
    sim("lr negative", ["--lr", "-0.01"], "--lr: must be a finite number > 0"),
    sim("beta1 outside [0, 1)", ["--beta1", "1"], "--beta1: must be a number in [0, 1)"),
    sim("beta2 negative", ["--beta2", "-0.5"], "--beta2: must be a number in [0, 1)"),
    sim("adam-eps 0", ["--adam-eps", "0"], "--adam-eps: must be a finite number > 0"),
    sim("n-save 0", ["--n-save", "0"], "--n-save: must be a positive integer"),
    sim("max-steps 0", ["--max-steps", "0"], "--max-steps: must be a positive integer"),
    sim("max-wall-time negative", ["--max-wall-time", "-1"], "--max-wall-time: must be a finite number > 0"),
    sim("seed negative", ["--seed", "-1"], "--seed: must be an integer ≥ 0"),
    sim("init-seed not a number", ["--init-seed", "x"], "--init-seed: must be an integer ≥ 0"),
    sim("init-scale negative", ["--init-scale", "-1e-3"], "--init-scale: must be a finite number ≥ 0"),
    sim("init-scale 0 at depth ≥ 2 (saddle)", ["--init-scale", "0"], "starts at the saddle W = 0"),
    sim("init unknown", ["--init", "orthogonal"], "--init: invalid choice: 'orthogonal' (choose from"),
    sim("flow unknown", ["--flow", "sgd"], "--flow: invalid choice: 'sgd' (choose from 'gf'"),
    sim("model unknown", ["--model", "tensor"], "--model: invalid choice: 'tensor' (choose from"),
    sim("method unknown", ["--method", "Euler"], "--method: invalid choice: 'Euler' (choose from 'DOP853'"),
    sim("reduction unknown", ["--reduction", "max"], "--reduction: invalid choice: 'max' (choose from"),
    sim("loss-scale 0", ["--loss-scale", "0"], "--loss-scale: must be a finite number > 0"),
    sim("unknown option", ["--depht", "3"], "unrecognized arguments: --depht 3"),
    sim("option without value", ["--depth"], "--depth: expected one argument"),
    sim("out is an existing file", ["--out", "{tmp}/a_file"],
        "--out {tmp}/a_file exists and is not a directory", out_option=False),
    sim("out below a file", ["--out", "{tmp}/a_file/run"],
        "is not writable ({tmp}/a_file is not a directory)", out_option=False),
    sim("out not writable", [], "--out {out} is not writable", deny_write=True),
    sim("out empty string", ["--out", ""], "--out must be a folder path", out_option=False),
    sim("w-star file missing", ["--w-star", "{tmp}/missing.npy"],
        "--w-star file not found: {tmp}/missing.npy"),
    sim("w-star not an .npy file", ["--w-star", "{tmp}/garbage.npy"], "is not a readable .npy array"),
    sim("w-star .npz archive", ["--w-star", "{tmp}/archive.npz"], "must hold a single array (.npy)"),
    sim("w-star pickled objects", ["--w-star", "{tmp}/objects.npy"], "is not a readable .npy array"),
    sim("w-star 1-D", ["--w-star", "{tmp}/vector.npy"], "--w-star must hold a non-empty 2-D matrix"),
    sim("w-star 3-D", ["--w-star", "{tmp}/cube.npy"], "--w-star must hold a non-empty 2-D matrix"),
    sim("w-star empty", ["--w-star", "{tmp}/empty.npy"], "--w-star must hold a non-empty 2-D matrix"),
    sim("w-star complex dtype", ["--w-star", "{tmp}/complex.npy"], "--w-star must hold real numbers"),
    sim("w-star string dtype", ["--w-star", "{tmp}/strings.npy"], "--w-star must hold real numbers"),
    sim("w-star contains NaN", ["--w-star", "{tmp}/nan.npy"], "--w-star contains NaN or inf"),
    sim("w-star contains inf", ["--w-star", "{tmp}/inf.npy"], "--w-star contains NaN or inf"),
    sim("mask without w-star", ["--mask", "{tmp}/mask.npy"], "--mask needs --w-star"),
    sim("mask file missing", ["--w-star", "{tmp}/w.npy", "--mask", "{tmp}/missing.npy"],
        "--mask file not found"),
    sim("mask wrong shape", ["--w-star", "{tmp}/w.npy", "--mask", "{tmp}/mask_transposed.npy"],
        "--mask shape (5, 4) does not match --w-star shape (4, 5)"),
    sim("mask wrong dtype", ["--w-star", "{tmp}/w.npy", "--mask", "{tmp}/mask_float.npy"],
        "--mask must be boolean or 0/1"),
    sim("mask with NaN", ["--w-star", "{tmp}/w.npy", "--mask", "{tmp}/mask_nan.npy"],
        "--mask must be boolean or 0/1"),
    sim("mask with no observed entry", ["--w-star", "{tmp}/w.npy", "--mask", "{tmp}/mask_empty.npy"],
        "--mask has no observed entry"),
]

PLOT_CASES: list[Case] = [
    Case("no directory given", ("plot",), "the following arguments are required: dir", out_option=False),
    Case("directory missing", ("plot", "{tmp}/nowhere"), "{tmp}/nowhere is not a directory",
         out_option=False),
    Case("a file, not a directory", ("plot", "{tmp}/a_file"), "{tmp}/a_file is not a directory",
         out_option=False),
    Case("not a run directory", ("plot", "{tmp}/empty_dir"), "is not a run directory (no run.json)",
         out_option=False),
    Case("run.json corrupt", ("plot", "{tmp}/run_bad_json"), "run.json is not valid JSON", out_option=False),
    Case("trajectory.npz truncated", ("plot", "{tmp}/run_truncated_npz"),
         "trajectory.npz is unreadable or truncated", out_option=False),
    Case("trajectory.npz lacks an array", ("plot", "{tmp}/run_missing_array"),
         "trajectory.npz lacks the array 'sigma'", out_option=False),
    Case("output folder missing", ("plot", "{tmp}/run_ok", "--output", "{tmp}/nowhere/plot.png"),
         "--output {tmp}/nowhere/plot.png: folder {tmp}/nowhere does not exist", out_option=False),
    Case("output is a folder", ("plot", "{tmp}/run_ok", "--output", "{tmp}/empty_dir"),
         "--output {tmp}/empty_dir is a directory", out_option=False),
    Case("output is a data file", ("plot", "{tmp}/run_ok", "--output", "{tmp}/run_ok/trajectory.npz"),
         "must be a .png file name", out_option=False),
    Case("a sweep folder", ("plot", "{tmp}/sweep_dir"), "is a sweep folder; plot one of its points",
         out_option=False),
    Case("a failed run that recorded nothing", ("plot", "{tmp}/failed_run"),
         "nothing to plot: the run failed before recording anything", out_option=False),
]

GENERAL_CASES: list[Case] = [
    Case("no command", (), "usage: flowsim COMMAND", out_option=False),
    Case("unknown command", ("simulat",), "unknown command 'simulat'; choose from simulate, train",
         out_option=False),
]


# ---- fixtures: the files the cases refer to --------------------------------------------------------------

def make_bad_files(tmp: Path) -> None:
    """Write every input file the cases use into ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    w = np.arange(20, dtype=float).reshape(4, 5)
    np.save(tmp / "w.npy", w)
    np.save(tmp / "vector.npy", np.ones(5))
    np.save(tmp / "cube.npy", np.ones((2, 2, 2)))
    np.save(tmp / "empty.npy", np.ones((0, 5)))
    np.save(tmp / "complex.npy", w + 1j)
    np.save(tmp / "strings.npy", np.full((4, 5), "x"))
    np.save(tmp / "nan.npy", np.where(w > 10, np.nan, w))
    np.save(tmp / "inf.npy", np.where(w > 10, np.inf, w))
    np.save(tmp / "objects.npy", np.array([{"a": 1}] * 20, dtype=object).reshape(4, 5), allow_pickle=True)
    np.savez(tmp / "archive.npz", w=w)
    (tmp / "garbage.npy").write_bytes(b"not an npy file")
    np.save(tmp / "mask.npy", np.ones((4, 5), dtype=bool))
    np.save(tmp / "mask_transposed.npy", np.ones((5, 4), dtype=bool))
    np.save(tmp / "mask_float.npy", np.full((4, 5), 0.5))
    np.save(tmp / "mask_nan.npy", np.full((4, 5), np.nan))
    np.save(tmp / "mask_empty.npy", np.zeros((4, 5), dtype=bool))
    (tmp / "a_file").write_text("a file, not a folder\n")
    (tmp / "empty_dir").mkdir(exist_ok=True)
    (tmp / "validate_run" / "runs").mkdir(parents=True, exist_ok=True)
    (tmp / "validate_run" / "run.json").write_text('{"command": "validate", "status": "ok"}\n')
    (tmp / "validate_run" / "validation.json").write_text("{}\n")
    (tmp / "user_dir").mkdir(exist_ok=True)
    (tmp / "user_dir" / "notes.txt").write_text("not flowsim's\n")
    (tmp / "sweep_dir").mkdir(exist_ok=True)
    (tmp / "sweep_dir" / "sweep.json").write_text('{"points": []}\n')
    (tmp / "failed_run").mkdir(exist_ok=True)
    (tmp / "failed_run" / "run.json").write_text(
        '{"command": "train", "status": "failed", "message": "bad input: --w-star file not found"}\n')
    ok = tmp / "run_ok"
    _run_simulate_quietly(ok)
    for name in ("run_bad_json", "run_truncated_npz", "run_missing_array"):
        shutil.copytree(ok, tmp / name, dirs_exist_ok=True)
    (tmp / "run_bad_json" / "run.json").write_text('{"command": "simulate", "status": ')
    npz = (ok / "trajectory.npz").read_bytes()
    (tmp / "run_truncated_npz" / "trajectory.npz").write_bytes(npz[: len(npz) // 2])
    with np.load(ok / "trajectory.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "sigma"}
    np.savez(tmp / "run_missing_array" / "trajectory.npz", **arrays)


def _run_simulate_quietly(out: Path) -> None:
    code, err, _ = _call([*SIM, "--out", str(out)])
    assert code == 0, err


def _call(argv: Sequence[str], deny_write: bool = False) -> tuple[int, str, str]:
    """Run ``flowsim.cli.main(argv)`` in-process; return (exit code, stderr, stdout)."""
    from flowsim.cli import main

    err, out = io.StringIO(), io.StringIO()
    patch = mock.patch("flowsim.runs.common.os.access", return_value=False) if deny_write else (
        contextlib.nullcontext())
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), patch:
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return int(code), err.getvalue(), out.getvalue()


def expand(case: Case, tmp: Path) -> tuple[list[str], Path]:
    """The case's argv with ``{tmp}``/``{out}`` filled in, and the run directory that must not appear."""
    out = tmp / "out" / case.name.replace(" ", "_")
    argv = [a.format(tmp=tmp, out=out) for a in case.argv]
    if case.out_option:
        argv += ["--out", str(out)]
    return argv, out


def run_case(case: Case, tmp: Path) -> tuple[int, str, bool]:
    """(exit code, stderr, whether the run directory was created) for ``case``."""
    argv, out = expand(case, tmp)
    code, err, _ = _call(argv, case.deny_write)
    return code, err, out.exists()


def assert_bad_input(case: Case, tmp: Path) -> str:
    """The bad-input contract for one case; returns the message."""
    code, err, created = run_case(case, tmp)
    expect = case.expect.format(tmp=tmp, out=expand(case, tmp)[1])
    assert code == 2, (case.name, code, err)
    assert "Traceback" not in err
    if case.argv:  # every command's message is exactly one line naming the command
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith((f"flowsim {case.command}: error: ", "flowsim: error: "))
    assert expect in err, (expect, err)
    assert not created, f"{case.name}: the run directory was created"
    return err.strip()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bad_input")
    make_bad_files(tmp)
    return tmp


@pytest.mark.parametrize("case", SIMULATE_CASES + PLOT_CASES + GENERAL_CASES, ids=lambda c: c.name)
def test_bad_input_one_line_exit_2(case: Case, bad_files: Path) -> None:
    assert_bad_input(case, bad_files)


def test_every_issue_case_is_covered() -> None:
    """The bad-input list of the robustness work (simulate/plot part) is in the table."""
    names = {c.name for c in SIMULATE_CASES}
    for needed in ("depth 0", "depth negative", "depth not an integer", "rank 0", "rank > min(m, n)",
                   "observed 0", "observed negative", "observed > m*n", "size malformed (6x)", "lam negative",
                   "penalty unknown", "penalty schatten P = 0", "penalty schatten Q < 0", "t-end 0",
                   "t-end NaN",
                   "rtol 0", "atol negative", "lr 0", "out is an existing file", "out not writable",
                   "w-star file missing", "w-star 1-D", "w-star complex dtype", "w-star contains NaN",
                   "w-star contains inf", "mask wrong shape", "mask with no observed entry"):
        assert needed in names


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write into a read-only folder")
def test_out_in_read_only_folder_for_real(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, err, _ = _call([*SIM, "--out", str(ro / "run")])
    finally:
        ro.chmod(0o755)
    assert code == 2 and "is not writable" in err and not (ro / "run").exists()


def test_out_that_cannot_be_created_is_bad_input(tmp_path: Path) -> None:
    """mkdir failing after the permission check (here: inside /proc) is still one line and exit 2."""
    code, err, _ = _call([*SIM, "--out", "/proc/flowsim-robustness-test/run"])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "--out /proc/flowsim-robustness-test/run" in err


@pytest.mark.parametrize("extra", [["--depth", "0"], ["--penalty", "schatten:0:1"],
                                   ["--w-star", "/nonexistent/w.npy"], ["--t-end", "nan"]])
@pytest.mark.slow
def test_bad_input_end_to_end_subprocess(tmp_path: Path, extra: list[str]) -> None:
    """The real console entry point: one stderr line, exit 2, nothing on stdout, no run directory."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "flowsim", *SIM, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("flowsim simulate: error: ")
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_default_out_dir_not_created_on_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --out the default runs/simulate-* folder must not appear either."""
    monkeypatch.chdir(tmp_path)
    code, _, _ = _call([*SIM, "--rank", "9"])
    assert code == 2
    assert not (tmp_path / "runs").exists()


# ---- docs/bad_input.md ---------------------------------------------------------------------------------

def all_cases() -> list[tuple[str, list[Case]]]:
    """Sections of the document: the core commands here, the other commands from
    ``test_robustness_commands`` when it is importable."""
    sections = [("flowsim (dispatcher)", GENERAL_CASES), ("flowsim simulate", SIMULATE_CASES),
                ("flowsim plot", PLOT_CASES)]
    try:
        from test_robustness_commands import COMMAND_SECTIONS
    except ImportError:
        return sections
    return sections + list(COMMAND_SECTIONS)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown() -> str:
    """Run every case in a scratch folder and render the table of messages (paths shown as ``TMP``)."""
    tmp = Path(tempfile.mkdtemp(prefix="flowsim-bad-input-"))
    try:
        make_bad_files(tmp)
        try:
            from test_robustness_commands import make_command_files
        except ImportError:
            pass
        else:
            make_command_files(tmp)
        lines = [
            "# Bad input: every case and the message it prints",
            "",
            "Generated by `python tests/cli/test_robustness_bad_input.py` from the case tables of",
            "`tests/cli/test_robustness_bad_input.py` and `tests/cli/test_robustness_commands.py`; the test",
            "`test_docs_bad_input_md_is_current` fails when this file is out of date. Every case exits with",
            "code 2, prints one line on stderr (no traceback) and leaves no run directory behind, unless the",
            "*exit* column says otherwise. `TMP` stands for a scratch folder holding the bad files; the base",
            f"simulate command is `flowsim {' '.join(SIM)}`.",
            "",
        ]
        for title, cases in all_cases():
            lines += [f"## {title}", "", "| case | arguments | exit | message (stderr) |",
                      "|---|---|---|---|"]
            for case in cases:
                code, err, created = run_case(case, tmp)
                argv = list(case.argv)
                if argv[: len(SIM)] == list(SIM):
                    argv = ["…", *argv[len(SIM):]]
                msg = err.strip().splitlines()[0] if err.strip() else "(nothing on stderr)"
                if case.doc_cut and case.doc_cut in msg:
                    msg = msg[: msg.index(case.doc_cut) + len(case.doc_cut)] + " …"
                if len(err.strip().splitlines()) > 1:
                    msg += f" (+{len(err.strip().splitlines()) - 1} more lines)"
                exit_cell = str(code) + (" (run dir created!)" if created else "")
                shown = " ".join(a if a else "''" for a in argv)
                shown = shown.replace(str(tmp), "TMP").replace("{tmp}", "TMP")
                lines.append(f"| {_md(case.name)} | `{_md(shown)}` | {exit_cell} | "
                             f"{_md(msg.replace(str(tmp), 'TMP'))} |")
            lines.append("")
        return "\n".join(lines)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_docs_bad_input_md_is_current() -> None:
    assert DOC_PATH.is_file(), "run: python tests/cli/test_robustness_bad_input.py"
    assert DOC_PATH.read_text() == render_markdown(), "docs/bad_input.md is stale: python " \
        "tests/cli/test_robustness_bad_input.py"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(render_markdown())
    print(f"wrote {DOC_PATH}")
