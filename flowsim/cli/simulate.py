"""``flowsim simulate``: integrate a continuous-time model on a completion problem (SPEC §3, §7)."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ..flows import FLOW_NAMES, MODEL_NAMES, make_flow
from ..integrator import SOLVERS, log_time_grid
from ..simulate import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_T_END, simulate
from .budget import add_allow_large_arg, check_horizon, check_model, check_saved, note_slow_setup
from .common import (
    add_model_args,
    add_no_plot_arg,
    add_output_args,
    add_problem_args,
    exit_code_for,
    factors_from_args,
    make_parser,
    params_from_args,
    penalty_from_args,
    positive_float,
    positive_int,
    prepare_out_dir,
    problem_from_args,
    record_tolerances,
    unit_interval_float,
    write_run_and_plot,
)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = make_parser(prog, "Integrate the end-product or layer-wise dynamics of a depth-N linear network "
                          "on a matrix-completion problem; write run.json, trajectory.npz and a plot.")
    add_problem_args(p)
    add_model_args(p)
    g = p.add_argument_group("dynamics and integration")
    g.add_argument("--flow", choices=FLOW_NAMES, default="gf", help="continuous-time model (SPEC §3)")
    g.add_argument("--model", choices=MODEL_NAMES, default="auto",
                   help="state: end product W (§3.1), layer factors (§3.3), or auto: the cheaper exact one "
                        "(--flow gf; recorded in run.json stats.formulation)")
    g.add_argument("--lr", type=positive_float, default=0.01, metavar="E",
                   help="step size η of the discrete optimizer a flow models (gd-modified, adam-*)")
    g.add_argument("--beta1", type=unit_interval_float,
                   default=0.9, help="Adam β₁ in [0, 1) (adam-* flows)")
    g.add_argument("--beta2", type=unit_interval_float,
                   default=0.999, help="Adam β₂ in [0, 1) (adam-* flows)")
    g.add_argument("--adam-eps", type=positive_float, default=1e-8, help="Adam ε (adam-* flows)")
    g.add_argument("--t-end", type=positive_float, default=DEFAULT_T_END, metavar="T", help="horizon")
    g.add_argument("--n-save", type=positive_int, default=200, help="number of log-spaced saving times")
    g.add_argument("--rtol", type=positive_float, default=DEFAULT_RTOL, help="relative tolerance")
    g.add_argument("--atol", type=positive_float, default=DEFAULT_ATOL, help="absolute tolerance")
    g.add_argument("--method", choices=tuple(SOLVERS), default="DOP853", help="scipy solver")
    g.add_argument("--max-steps", type=positive_int, default=None, help="step budget")
    g.add_argument("--max-wall-time", type=positive_float, default=None, metavar="SECONDS",
                   help="wall-time budget")
    g.add_argument("--save-matrices", action="store_true", help="also save W(t) at every saved time")
    add_output_args(p)
    add_no_plot_arg(p)
    add_allow_large_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    # Build and validate everything before the run directory exists (bad input leaves nothing behind).
    check_horizon(args.t_end, args.allow_large)
    if args.w_star is None:
        check_model(args.size, args.depth, args.allow_large)
        note_slow_setup(args.size, args.quiet)
    problem = problem_from_args(args)
    check_model(problem.shape, args.depth, args.allow_large)
    penalty = penalty_from_args(args)
    flow = make_flow(args.flow, problem, args.depth, penalty, args.lam, args.model, lr=args.lr,
                     beta1=args.beta1, beta2=args.beta2, eps=args.adam_eps)
    factors = factors_from_args(args, problem.shape)
    check_saved("--n-save", args.n_save, problem.shape, flow.initial_state(factors).size, args.save_matrices,
                args.allow_large)
    log_time_grid(args.t_end, args.n_save, None, flow.t0)
    out = prepare_out_dir(args.out, "simulate")
    traj = simulate(flow, factors, args.t_end, n_save=args.n_save, method=args.method, rtol=args.rtol,
                    atol=args.atol, max_steps=args.max_steps, max_wall_time=args.max_wall_time,
                    progress=False if args.quiet else None, save_matrices=args.save_matrices)
    params = params_from_args(args)
    params["problem"] = problem.description
    params["flow_description"] = flow.describe()
    record_tolerances(params, traj.stats)
    wall = time.perf_counter() - start
    png = write_run_and_plot(out, traj, command="simulate", params=params, wall_time_s=wall,
                             no_plot=args.no_plot)
    if not args.quiet:
        print(summary(traj, out, wall, png))
    elif traj.status != "ok":
        print(f"flowsim simulate: {traj.status}: {traj.message}", file=sys.stderr)
    return exit_code_for(traj.status)


def summary(traj, out, wall: float, png) -> str:
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
