"""``flowsim plot DIR``: the standard four-panel plot of a run directory (plus command-specific plots)."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from ..errors import BadInputError
from ..runs.common import plot_title
from .common import make_parser

#: commands whose runs have extra plots: command -> "module:function(run_dir) -> list of paths"
EXTRA_PLOTTERS = {
    "razin": "flowsim.theory.razin_plots:plot_run",
    "validate": "flowsim.validation.plots:plot_run",
}


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = make_parser(prog, "Plot a run directory written by simulate/train/razin/validate.")
    p.add_argument("dir", help="run directory")
    p.add_argument("--output", default=None, help="PNG path (default DIR/trajectory.png)")
    return p


def plot_run_dir(run_dir: str | Path, output: str | Path | None = None) -> list[Path]:
    """Plot ``run_dir``; returns the PNG paths written."""
    from ..io import read_json
    from ..plotting import plot_trajectory
    from ..trajectory import RUN_JSON, TRAJECTORY_NPZ, load_run

    d = Path(run_dir)
    if not d.is_dir():
        raise BadInputError(f"{d} is not a directory")
    info_path = d / RUN_JSON
    if not info_path.is_file():
        if (d / "sweep.json").is_file():
            raise BadInputError(f"{d} is a sweep folder; plot one of its points: flowsim plot "
                                f"{d / 'points' / 'ID'}")
        raise BadInputError(f"{d} is not a run directory (no {RUN_JSON})")
    if output is not None:
        _check_output(Path(output))
    try:
        info = read_json(info_path)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{info_path} is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(info, dict):
        raise BadInputError(f"{info_path} does not hold a JSON object")
    cmd = info.get("command")
    written: list[Path] = []
    if (d / TRAJECTORY_NPZ).is_file():
        try:
            traj, info = load_run(d)
        except KeyError as exc:
            raise BadInputError(f"{d / TRAJECTORY_NPZ} lacks the array {exc.args[0]!r}") from None
        except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file is bad input
            raise BadInputError(f"{d / TRAJECTORY_NPZ} is unreadable or truncated "
                                f"({type(exc).__name__}: {exc})") from None
        written.append(plot_trajectory(traj, output or d / "trajectory.png", title=plot_title(info),
                                       time_label="t = kη" if cmd == "train" else "t (flow time)"))
    if cmd in EXTRA_PLOTTERS:
        mod, fn = EXTRA_PLOTTERS[cmd].split(":")
        try:
            written += list(getattr(importlib.import_module(mod), fn)(d))
        except ModuleNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, IndexError, EOFError) as exc:  # corrupt files of the command
            raise BadInputError(f"{d}: its {cmd} files are unreadable or truncated "
                                f"({type(exc).__name__}: {exc})") from None
    if not written:
        status = info.get("status")
        why = f": the run {status} before recording anything ({info.get('message')})" if status not in (
            None, "ok") else ""
        raise BadInputError(f"{d} holds nothing to plot{why}")
    return written


def _check_output(path: Path) -> None:
    """``--output`` must name a PNG file in an existing, writable folder."""
    if len(path.name.encode()) > 255 - 16:  # the temporary name adds up to 16 bytes
        raise BadInputError(f"--output {path}: file name too long")
    if path.is_dir():
        raise BadInputError(f"--output {path} is a directory, expected a PNG file name")
    if path.suffix.lower() != ".png":  # never over a run's data files (run.json, trajectory.npz, ...)
        raise BadInputError(f"--output {path} must be a .png file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise BadInputError(f"--output {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"--output {path}: folder {parent} is not writable")


def run(args: argparse.Namespace) -> int:
    for path in plot_run_dir(args.dir, args.output):
        print(path)
    return 0
