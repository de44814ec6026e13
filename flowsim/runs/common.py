"""What every run function shares: the problem, penalty and initial factors of a spec, the run directory,
the written results (``run.json``, ``trajectory.npz``, ``trajectory.png``) and the exit code of a status.

The ``*_from_args`` functions read the option names of the specs (:class:`ProblemModelSpec` and the
command specs), which are also the names of the parsed command-line arguments, so they accept either.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EXIT_OK, EXIT_RUN_FAILED, BadInputError
from ..initializations import INIT_NAMES, init_factors
from ..penalties import Penalty, make_penalty
from ..problems import REDUCTIONS, CompletionProblem, problem_from_files, synthetic_problem
from .options import (
    RunSpec,
    nonneg_float,
    nonneg_int,
    observed_arg,
    option,
    penalty_arg,
    positive_float,
    positive_int,
    size_arg,
)


@dataclass
class RunResult:
    """What a run function did: the run's ``status`` (ok, diverged, failed, interrupted), its message,
    the exit code the command line returns for it, the run directory and a few key numbers (``final``:
    the last recorded metrics, or the command's own summary numbers)."""

    status: str
    message: str
    exit_code: int
    out: Path | None
    final: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0


@contextlib.contextmanager
def recording(spec: Any) -> Iterator[None]:
    """Record ``spec.command_line()`` as the ``argv`` of every ``run.json`` written inside the block."""
    from ..io import recorded_command_line

    with recorded_command_line(spec.command_line()):
        yield


def problem_from_args(args: Any) -> CompletionProblem:
    """Build the problem described by the problem options (``size``, ``rank``, ``observed``, ``seed``,
    ``reduction``, ``loss_scale``, ``w_star``, ``mask``, ``data``, ``test_fraction``)."""
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


def checked_problem(spec: Any, *, note_slow: bool = True) -> CompletionProblem:
    """The completion problem of ``spec`` after the model-size checks of ``flowsim.runs.budget`` (before
    the synthetic problem is drawn, then on its actual shape): bad input raises before anything is
    computed or written. ``note_slow`` prints the slow-setup note of large sizes (unless ``spec.quiet``)."""
    from .budget import check_model, note_slow_setup

    if spec.w_star is None:
        check_model(spec.size, spec.depth, spec.allow_large)
        if note_slow:
            note_slow_setup(spec.size, spec.quiet)
    problem = problem_from_args(spec)
    check_model(problem.shape, spec.depth, spec.allow_large)
    return problem


def penalty_from_args(args: Any) -> Penalty:
    """The penalty object of ``penalty``."""
    return make_penalty(args.penalty)


def factors_from_args(args: Any, shape: tuple[int, int]) -> list[np.ndarray]:
    """Initial factors of ``init``/``init_scale``/``init_seed``; refuses the W = 0 saddle for N ≥ 2."""
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


def plot_title(info: dict) -> str:
    """The title of a run's ``trajectory.png``: command, size and the options that tell runs apart."""
    p = info.get("params", {})
    parts = [f"flowsim {info.get('command', '')}"]
    if "size" in p:
        parts.append(f"{p['size'][0]}×{p['size'][1]}")
    for k, label in (("flow", "flow"), ("optimizer", "opt"), ("depth", "N"), ("penalty", "R"), ("lam", "λ"),
                     ("init", "init"), ("init_scale", "α")):
        if p.get(k) is not None and not (k == "penalty" and p[k] == "none") and not (k == "lam" and not p[k]):
            parts.append(f"{label}={p[k]}")
    if p.get("optimizer") or (p.get("flow") not in (None, "gf")):
        parts.append(f"η={p.get('lr')}")
    return "  ".join(str(x) for x in parts)


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
    """Write ``run.json`` + ``trajectory.npz`` (the run-directory contract of ``docs/math.md``), then
    ``trajectory.png`` unless ``no_plot`` or the trajectory has a single point. Returns the PNG path or
    None."""
    from ..plotting import plot_trajectory

    write_results(out, traj, command=command, params=params, wall_time_s=wall_time_s, extra_info=extra_info)
    if len(traj) <= 1 or no_plot:
        return None
    title = plot_title({"command": command, "params": params})
    return plot_trajectory(traj, out / "trajectory.png", title=title, time_label=time_label)


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



# ---- the options of the problem and the network (simulate, train, validate) ------------------------------

@dataclass(frozen=True)
class ProblemModelSpec(RunSpec):
    """The problem options (size, rank, observed entries, seeds, loss, user data; ``docs/math.md`` §2) and
    the network, penalty (§3) and initialization options shared by ``simulate``, ``train`` and
    ``validate``."""

    size: tuple[int, int] = option((100, 100), size_arg)
    rank: int = option(5, positive_int)
    observed: int | None = option(2000, observed_arg, none_text="all")
    seed: int = option(0, nonneg_int)
    reduction: str = option("mean", choices=REDUCTIONS)
    loss_scale: float = option(1.0, positive_float)
    w_star: str | None = option(None)
    mask: str | None = option(None)
    data: str | None = option(None)
    test_fraction: float = option(0.1, positive_float)
    depth: int = option(3, positive_int)
    penalty: str = option("none", penalty_arg)
    lam: float = option(0.0, nonneg_float)
    init: str = option("balanced-gaussian", choices=INIT_NAMES)
    init_scale: float = option(1e-3, nonneg_float)
    init_seed: int | None = option(None, nonneg_int)
