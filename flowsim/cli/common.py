"""Options and helpers shared by the subcommands: problem, model and output options, run directories."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ..errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED, BadInputError
from ..initializations import INIT_NAMES, init_factors
from ..penalties import PENALTY_NAMES, Penalty, make_penalty
from ..problems import REDUCTIONS, CompletionProblem, problem_from_files, synthetic_problem


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2 (no usage dump).

    Values such as ``-1e-3`` or ``-inf`` are read as (negative) numbers, not as unknown options, so that
    ``--atol -1e-3`` is reported as an out-of-range value rather than as a missing argument.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def make_parser(prog: str, description: str) -> OneLineParser:
    """A parser for one subcommand."""
    return OneLineParser(prog=prog, description=description,
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)


_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


# ---- argument types: each raises ArgumentTypeError -> one line, exit 2 ---------------------------------

def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    """An integer ≥ 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 0, got {text!r}")
    return v


def _finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0."""
    v = _finite(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


def nonneg_float(text: str) -> float:
    """A finite number ≥ 0."""
    v = _finite(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text!r}")
    return v


def finite_float(text: str) -> float:
    """Any finite number."""
    return _finite(text)


def unit_interval_float(text: str) -> float:
    """A number in [0, 1) (Adam's β₁, β₂)."""
    v = _finite(text)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return v


def size_arg(text: str) -> tuple[int, int]:
    """``M`` (square) or ``MxN``."""
    parts = text.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be M or MxN with positive integers, got {text!r}") from None
    if len(dims) not in (1, 2) or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"must be M or MxN with positive integers, got {text!r}")
    return (dims[0], dims[0]) if len(dims) == 1 else (dims[0], dims[1])


def observed_arg(text: str) -> int | None:
    """A positive count of observed entries, or ``all`` (None)."""
    if text.lower() == "all":
        return None
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'all', got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'all', got {text!r}")
    return v


def penalty_arg(text: str) -> str:
    """A penalty spelling validated by :func:`flowsim.penalties.make_penalty`."""
    try:
        return make_penalty(text).spec()
    except BadInputError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--penalty ", "")) from None


# ---- option groups ------------------------------------------------------------------------------------

def add_problem_args(p: argparse.ArgumentParser) -> None:
    """Problem options (SPEC §1.1, §7)."""
    g = p.add_argument_group("problem (SPEC §1.1)")
    g.add_argument("--size", type=size_arg, default=(100, 100), metavar="M|MxN", help="matrix size")
    g.add_argument("--rank", type=positive_int, default=5, help="rank r of the ground truth")
    g.add_argument("--observed", type=observed_arg, default=2000, metavar="K|all",
                   help="number of observed entries, or 'all'")
    g.add_argument("--seed", type=nonneg_int, default=0, help="seed of the problem and initialization")
    g.add_argument("--reduction", choices=REDUCTIONS, default="mean", help="loss reduction over Ω")
    g.add_argument("--loss-scale", type=positive_float, default=1.0, metavar="C",
                   help="constant c of the loss")
    g.add_argument("--w-star", default=None, metavar="FILE.npy",
                   help="user ground truth (overrides --size/--rank)")
    g.add_argument("--mask", default=None, metavar="FILE.npy", help="user observation mask (with --w-star)")
    g.add_argument("--data", default=None, metavar="ratings:PATH",
                   help="ratings (MovieLens u.data, CSV/TSV user,item,rating); overrides --size/--rank")
    g.add_argument("--test-fraction", type=positive_float, default=0.1, metavar="F",
                   help="with --data: fraction of the ratings held out as the test set (seeded by --seed)")


def add_model_args(p: argparse.ArgumentParser, *, default_init: str = "balanced-gaussian") -> None:
    """Network, penalty and initialization options (SPEC §2, §8)."""
    g = p.add_argument_group("network, penalty, initialization")
    g.add_argument("--depth", type=positive_int, default=3, metavar="N", help="depth N ≥ 1")
    g.add_argument("--penalty", type=penalty_arg, default="none", metavar="|".join(PENALTY_NAMES),
                   help="explicit penalty R(W)")
    g.add_argument("--lam", type=nonneg_float, default=0.0, metavar="L", help="penalty strength λ ≥ 0")
    g.add_argument("--init", choices=INIT_NAMES, default=default_init, help="initialization (SPEC §8)")
    g.add_argument("--init-scale", type=nonneg_float, default=1e-3, metavar="A",
                   help="initialization scale α")
    g.add_argument("--init-seed", type=nonneg_int, default=None,
                   help="seed of the initialization (default --seed)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    """``--out`` and ``--quiet``."""
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run directory (default runs/COMMAND-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def add_no_plot_arg(p: argparse.ArgumentParser) -> None:
    """``--no-plot``: skip the PNG (``flowsim plot DIR`` makes it later); sweeps pass it."""
    p.add_argument("--no-plot", action="store_true", help="do not write trajectory.png")


def problem_from_args(args: argparse.Namespace) -> CompletionProblem:
    """Build the problem described by the problem options."""
    if args.mask is not None and args.w_star is None:
        raise BadInputError("--mask needs --w-star")
    if getattr(args, "data", None) is not None:
        from ..ratings import parse_data_spec, ratings_problem

        if args.w_star is not None:
            raise BadInputError("--data and --w-star are exclusive")
        return ratings_problem(parse_data_spec(args.data), args.test_fraction, args.seed,
                               reduction=args.reduction, scale=args.loss_scale)
    if args.w_star is not None:
        return problem_from_files(args.w_star, args.mask, args.reduction, args.loss_scale)
    m, n = args.size
    too_big = BadInputError(f"--size {m}x{n} does not fit in memory; use a smaller --size")
    if _MATRIX_COPIES * 8 * m * n > _physical_memory():
        raise too_big
    try:
        return synthetic_problem(m, n, args.rank, args.observed, args.seed, args.reduction, args.loss_scale)
    except MemoryError:
        raise too_big from None


#: m×n float64 arrays a run holds at once at least (W*, mask weights, W, gradient, SVD factors, solver stages)
_MATRIX_COPIES = 8


def _physical_memory() -> float:
    """Bytes of physical memory (inf where the platform does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return math.inf


def penalty_from_args(args: argparse.Namespace) -> Penalty:
    """The penalty object of ``--penalty``."""
    return make_penalty(args.penalty)


def factors_from_args(args: argparse.Namespace, shape: tuple[int, int]) -> list[np.ndarray]:
    """Initial factors of ``--init``/``--init-scale``/``--init-seed``; refuses the W = 0 saddle for N ≥ 2."""
    if args.init_scale == 0 and args.depth >= 2:
        raise BadInputError("--init-scale 0 with --depth ≥ 2 starts at the saddle W = 0, where the gradient "
                            "flow never moves; use a nonzero --init-scale")
    seed = args.seed if args.init_seed is None else args.init_seed
    return init_factors(args.init, shape, args.depth, args.init_scale, seed)


def prepare_out_dir(out: str | None, command: str) -> Path:
    """Check (and only then create) the run directory. An existing file, or a folder that cannot be
    written, is bad input. The default is ``runs/COMMAND-YYYYmmdd-HHMMSS`` (made unique)."""
    if out is None:
        base = Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, k = base, 1
        while path.exists():
            k += 1
            path = base.with_name(f"{base.name}-{k}")
    elif not str(out).strip():
        raise BadInputError("--out must be a folder path, got an empty string")
    else:
        path = Path(out)
    if path.exists() and not path.is_dir():
        raise BadInputError(f"--out {path} exists and is not a directory")
    parent = path if path.exists() else next((q for q in path.absolute().parents if q.exists()), Path("/"))
    if not parent.is_dir():
        raise BadInputError(f"--out {path} is not writable ({parent} is not a directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"--out {path} is not writable")
    from .outdir import claim_out_dir

    try:
        claim_out_dir(path, command)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BadInputError(f"--out {path} cannot be created ({reason})") from None
    return path


def write_run_and_plot(
    out: Path,
    traj: Any,
    *,
    command: str,
    params: dict[str, Any],
    wall_time_s: float,
    no_plot: bool = False,
    time_label: str = "t (flow time)",
    extra_info: dict[str, Any] | None = None,
) -> Path | None:
    """Write ``run.json`` + ``trajectory.npz`` (SPEC §7), then ``trajectory.png`` unless ``no_plot`` or the
    trajectory has a single point. Returns the PNG path or None."""
    from ..plotting import plot_trajectory
    from .plot import _title

    write_results(out, traj, command=command, params=params, wall_time_s=wall_time_s, extra_info=extra_info)
    if len(traj) <= 1 or no_plot:
        return None
    return plot_trajectory(traj, out / "trajectory.png", title=_title({"command": command, "params": params}),
                           time_label=time_label)


def write_results(out: Path, traj: Any, *, command: str, params: dict[str, Any], wall_time_s: float,
                  extra_info: dict[str, Any] | None = None) -> None:
    """``write_run`` with signals held until both files are written; when the file system refuses
    (no space, quota), a small ``run.json`` with status ``failed`` and the reason is still attempted, then
    the OSError propagates (the CLI prints one line and exits 3)."""
    from ..io import atomic_write_json, command_line
    from ..trajectory import write_run
    from .interrupts import deferred

    with deferred():
        try:
            write_run(out, traj, command=command, params=params, wall_time_s=wall_time_s,
                      extra_info=extra_info)
        except OSError as exc:
            with contextlib.suppress(OSError):
                atomic_write_json(out / "run.json", {
                    "command": command, "argv": command_line(), "params": params, "seed": params.get("seed"),
                    "status": "failed", "message": f"the results could not be written ({exc})",
                    "run_status": traj.status, "run_message": traj.message, "wall_time_s": wall_time_s,
                    "stats": traj.stats, "final": traj.final_metrics()})
            raise


def exit_code_for(status: str) -> int:
    """0 for ok, 3 for diverged/failed, 130 for interrupted by SIGINT and 143 by SIGTERM."""
    from .interrupts import exit_code

    return {"ok": EXIT_OK, "interrupted": exit_code()}.get(status, EXIT_RUN_FAILED)


def record_tolerances(params: dict[str, Any], stats: dict[str, Any]) -> None:
    """Add ``tolerances_used`` (the rtol/atol the solver actually used, from its statistics) to the
    recorded parameters; scipy raises an rtol below 100·eps, so the requested ``rtol`` may differ."""
    used = {k: stats[k] for k in ("rtol", "atol") if isinstance(stats.get(k), (int, float))}
    if used:
        params["tolerances_used"] = used


def params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Every parsed option, JSON-ready (the full parameters for ``run.json``)."""
    out = {}
    for k, v in vars(args).items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out
