"""``simulate`` as a typed run: :class:`SimulateSpec` and :func:`run_simulate` integrate a continuous-time
model (the end-product flow of ``docs/math.md`` §4, the layer-wise flow §6, the modified flow §7, the Adam
flows §8, the non-smooth flows §9) on a completion problem and write its run directory."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..flows import FLOW_NAMES, MODEL_NAMES
from ..integrator import SOLVERS
from ..simulate import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_T_END
from .common import ProblemModelSpec, RunResult
from .options import option, positive_float, positive_int, provenance_field, unit_interval_float


@dataclass(frozen=True)
class SimulateSpec(ProblemModelSpec):
    """The options of ``flowsim simulate`` (names and defaults of ``flowsim simulate --help``)."""

    command: ClassVar[str] = "simulate"

    flow: str = option("gf", choices=FLOW_NAMES)
    model: str = option("auto", choices=MODEL_NAMES)
    lr: float = option(0.01, positive_float)
    beta1: float = option(0.9, unit_interval_float)
    beta2: float = option(0.999, unit_interval_float)
    adam_eps: float = option(1e-8, positive_float)
    t_end: float = option(DEFAULT_T_END, positive_float)
    n_save: int = option(200, positive_int)
    rtol: float = option(DEFAULT_RTOL, positive_float)
    atol: float = option(DEFAULT_ATOL, positive_float)
    method: str = option("DOP853", choices=tuple(SOLVERS))
    max_steps: int | None = option(None, positive_int)
    max_wall_time: float | None = option(None, positive_float)
    save_matrices: bool = option(False, flag=True)
    out: str | None = option(None)
    quiet: bool = option(False, flag=True)
    no_plot: bool = option(False, flag=True)
    allow_large: bool = option(False, flag=True)
    provenance: str | None = provenance_field()


def prepare_simulation(spec: SimulateSpec, *, note_slow: bool = True) -> tuple[Any, Any, list[np.ndarray]]:
    """(problem, flow, initial factors) of ``spec``, after every check of its values and sizes (horizon,
    model size, saved-state memory, the saving grid); raises :class:`flowsim.errors.BadInputError` before
    anything is written. Shared by :func:`run_simulate` and the sweep's batched simulate points."""
    from ..flows import make_flow
    from ..integrator import log_time_grid
    from .budget import check_horizon, check_saved
    from .common import checked_problem, factors_from_args, penalty_from_args

    check_horizon(spec.t_end, spec.allow_large)
    problem = checked_problem(spec, note_slow=note_slow)
    penalty = penalty_from_args(spec)
    flow = make_flow(spec.flow, problem, spec.depth, penalty, spec.lam, spec.model, lr=spec.lr,
                     beta1=spec.beta1, beta2=spec.beta2, eps=spec.adam_eps)
    factors = factors_from_args(spec, problem.shape)
    check_saved("--n-save", spec.n_save, problem.shape, flow.initial_state(factors).size, spec.save_matrices,
                spec.allow_large)
    log_time_grid(spec.t_end, spec.n_save, None, flow.t0)
    return problem, flow, factors


def run_simulate(spec: SimulateSpec) -> RunResult:
    """Integrate the flow of ``spec`` and write ``run.json``, ``trajectory.npz`` and (unless ``no_plot``)
    ``trajectory.png`` into ``spec.out``; print the summary unless ``quiet``. Bad input raises
    :class:`flowsim.errors.BadInputError` before the run directory exists."""
    from ..simulate import simulate
    from .common import exit_code_for, prepare_out_dir

    start = time.perf_counter()
    # Build and validate everything before the run directory exists (bad input leaves nothing behind).
    problem, flow, factors = prepare_simulation(spec)
    out = prepare_out_dir(spec.out, "simulate")
    traj = simulate(flow, factors, spec.t_end, n_save=spec.n_save, method=spec.method, rtol=spec.rtol,
                    atol=spec.atol, max_steps=spec.max_steps, max_wall_time=spec.max_wall_time,
                    progress=False if spec.quiet else None, save_matrices=spec.save_matrices)
    wall = time.perf_counter() - start
    png = write_simulation(out, spec, problem, flow, traj, wall)
    if not spec.quiet:
        print(summary(traj, out, wall, png))
    elif traj.status != "ok":
        print(f"flowsim simulate: {traj.status}: {traj.message}", file=sys.stderr)
    return RunResult(traj.status, traj.message, exit_code_for(traj.status), out, traj.final_metrics(), wall)


def write_simulation(out: Path, spec: SimulateSpec, problem: Any, flow: Any, traj: Any, wall_time_s: float,
                     extra_info: dict[str, Any] | None = None) -> Path | None:
    """Write the run directory of a finished simulation (``run.json`` with the spec's parameters, the
    problem and flow descriptions and the tolerances used; ``trajectory.npz``; the plot unless
    ``spec.no_plot``), recording the spec's command line. Returns the plot's path."""
    from .common import record_tolerances, recording, write_run_and_plot

    params = spec.params()
    params["problem"] = problem.description
    params["flow_description"] = flow.describe()
    record_tolerances(params, traj.stats)
    with recording(spec):
        return write_run_and_plot(out, traj, command="simulate", params=params, wall_time_s=wall_time_s,
                                  no_plot=spec.no_plot, extra_info=extra_info)


def summary(traj: Any, out: Path, wall: float, png: Path | None) -> str:
    """A short human-readable summary of a finished run."""
    f = traj.final_metrics()
    top = ", ".join(f"{v:.4g}" for v in np.asarray(f.get("sigma_top", []))[:6])
    lines = [
        f"status       {traj.status} ({traj.message})",
        f"final t      {f.get('t', float('nan')):.4g}",
        f"loss         {f.get('loss', float('nan')):.4e}",
        f"test error   {f.get('test_error', float('nan')):.4e} (relative), "
        f"RMSE {f.get('test_rmse', float('nan')):.4e}",
        f"erank        {f.get('erank', float('nan')):.4f}",
        f"top σ        {top}",
        f"nfev         {traj.stats.get('nfev')}   steps {traj.stats.get('steps')}",
        f"wall time    {wall:.2f} s",
        f"output       {out}" + (f"  (plot {png.name})" if png else ""),
    ]
    return "\n".join(lines)
