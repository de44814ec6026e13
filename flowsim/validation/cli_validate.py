"""``flowsim validate``: discrete runs against a flow over step sizes, errors and slopes (SPEC §5, §7)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from flowsim.cli.budget import (
    MAX_ITERATIONS,
    add_allow_large_arg,
    check_count,
    check_model,
    check_saved,
    note_slow_setup,
)
from flowsim.cli.common import (
    add_model_args,
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
)
from flowsim.cli.interrupts import deferred
from flowsim.errors import BadInputError
from flowsim.flows import MODEL_NAMES, make_flow
from flowsim.integrator import SOLVERS
from flowsim.io import atomic_write_json, command_line, package_versions
from flowsim.trajectory import write_run

from .batched import resolve_device, resolve_dtype
from .cli_train import add_device_args, add_optimizer_args, hyper_from_args
from .plots import VALIDATION_JSON, lr_dir, plot_run
from .validate import AGAINST, BETA_SCALINGS, DEFAULT_AGAINST, ValidationResult, check_pairing, validate

FLOWS = tuple(f for fs in AGAINST.values() for f in fs)


def lrs_arg(text: str) -> list[float]:
    """A comma-separated list of step sizes > 0."""
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None
    if len(vals) < 2 or any(not (math.isfinite(v) and v > 0) for v in vals):
        raise argparse.ArgumentTypeError(f"needs at least two finite step sizes > 0, got {text!r}")
    return vals


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Run a discrete optimizer and a continuous-time model from the same factors for "
        "several step sizes; write validation.json (errors e_σ, e_W, gaps, log-log slopes) "
        "and validation.png.",
    )
    add_problem_args(p)
    add_model_args(p)
    add_optimizer_args(p, choices=tuple(AGAINST), default_lr=0.01)
    g = p.add_argument_group("validation")
    g.add_argument(
        "--lrs",
        type=lrs_arg,
        default=[0.4, 0.2, 0.1, 0.05],
        metavar="E1,E2,...",
        help="step sizes (≥ 2; ≥ 4 for a convergence order)",
    )
    g.add_argument(
        "--against",
        choices=FLOWS,
        default=None,
        help="flow to compare with (default: gf for gd, adam-ode for adam)",
    )
    g.add_argument("--model", choices=MODEL_NAMES, default="layers", help="state of the gf flow")
    g.add_argument(
        "--convention",
        choices=("row-major", "col-major"),
        default="row-major",
        help="vec convention of adam-printed",
    )
    g.add_argument(
        "--beta-scaling",
        choices=BETA_SCALINGS,
        default="fixed",
        help="Adam: fixed β, or bb21: β_i(η) = 1 − (1 − β_i)η/η_max (a, b of the ODE fixed)",
    )
    g.add_argument("--t-end", type=positive_float, default=50.0, metavar="T", help="horizon in flow time")
    g.add_argument("--n-save", type=positive_int, default=60, help="recorded iterations per step size")
    g.add_argument("--rtol", type=positive_float, default=1e-10, help="relative tolerance of the flow")
    g.add_argument("--atol", type=positive_float, default=1e-13, help="absolute tolerance of the flow")
    g.add_argument("--method", choices=tuple(SOLVERS), default="DOP853", help="scipy solver")
    g.add_argument(
        "--max-wall-time",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="wall-time budget of each flow integration",
    )
    add_device_args(p)
    add_output_args(p)
    add_allow_large_arg(p)
    return p


def _write(out: Path, res: ValidationResult, params: dict, start: float, final: bool) -> None:
    """validation.json, run.json and the per-η run folders written so far."""
    doc = res.to_json(
        {"t_end": params["t_end"], "model": params["model"], "beta_scaling": params["beta_scaling"]}
    )
    atomic_write_json(out / VALIDATION_JSON, doc)
    for row, disc, flow in zip(res.rows, res.discrete, res.flows):
        sub = lr_dir(out, row["lr"])
        for kind, traj in (("discrete", disc), ("flow", flow)):
            if traj is None or (sub / kind / "run.json").is_file():
                continue
            W, traj.W = traj.W, None  # the matrices are not kept on disk
            write_run(
                sub / kind,
                traj,
                command="train" if kind == "discrete" else "simulate",
                params={**params, "lr": row["lr"], "part_of": "validate"},
                wall_time_s=0.0,
            )
            traj.W = W
    status = res.status if final or res.status != "ok" else "running"
    info = {
        "command": "validate",
        "argv": command_line(),
        "params": params,
        "seed": params.get("seed"),
        "status": status,
        "message": res.message,
        "wall_time_s": time.perf_counter() - start,
        "stats": {"details": res.details},
        "final": {k: doc[k] for k in ("slope_e_sigma", "slope_e_W")} | {"rows": doc["rows"]},
        "versions": package_versions(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out / "run.json", info)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    against = args.against or DEFAULT_AGAINST[args.optimizer]
    check_pairing(args.optimizer, against)
    if len(set(args.lrs)) < 2:
        raise BadInputError("--lrs needs at least two distinct step sizes")
    iters = sum(math.ceil(args.t_end / lr) for lr in args.lrs) if all(
        args.t_end / lr < 1e300 for lr in args.lrs) else math.inf
    check_count(f"--t-end {args.t_end:g} with --lrs {min(args.lrs):g}…", iters, MAX_ITERATIONS,
                args.allow_large, "iterations in all (t_end/η per step size)")
    if args.w_star is None:
        check_model(args.size, args.depth, args.allow_large)
        note_slow_setup(args.size, args.quiet)
    problem = problem_from_args(args)
    check_model(problem.shape, args.depth, args.allow_large)
    check_saved("--n-save", args.n_save * 2 * len(args.lrs), problem.shape, 0, True, args.allow_large)
    penalty = penalty_from_args(args)
    factors = factors_from_args(args, problem.shape)
    hyper = hyper_from_args(args)
    device = resolve_device(args.device)
    resolve_dtype(args.dtype)
    # every flow is built (and its options checked) before the run directory exists
    from .validate import scaled_hyper

    for lr in set(args.lrs):
        h = scaled_hyper(hyper, lr, max(args.lrs), args.beta_scaling, args.optimizer)
        make_flow(against, problem, args.depth, penalty, args.lam, args.model, lr=lr,
                  convention=args.convention, beta1=h.get("beta1", 0.9), beta2=h.get("beta2", 0.999),
                  eps=h.get("eps", 1e-8))
    if args.beta_scaling == "bb21" and args.optimizer != "adam":
        raise BadInputError("--beta-scaling bb21 applies to --optimizer adam only")
    params = params_from_args(args)
    params.update(against=against, problem=problem.description, hyper=hyper, device_used=str(device))
    out = prepare_out_dir(args.out, "validate")

    def on_row(res: ValidationResult) -> None:
        _write(out, res, params, start, final=False)
        if not args.quiet:
            r = res.rows[-1]
            print(
                f"lr={r['lr']:<10g} e_sigma={r['e_sigma']:.3e}  e_W={r['e_W']:.3e}  "
                f"erank_gap={r['erank_gap']:.3e}  test_error_gap={r['test_error_gap']:.3e}",
                flush=True,
            )

    res = validate(
        problem,
        factors,
        optimizer=args.optimizer,
        against=against,
        lrs=args.lrs,
        t_end=args.t_end,
        penalty=penalty,
        lam=args.lam,
        hyper=hyper,
        model=args.model,
        convention=args.convention,
        beta_scaling=args.beta_scaling,
        n_record=args.n_save,
        method=args.method,
        rtol=args.rtol,
        atol=args.atol,
        device=str(device),
        dtype=args.dtype,
        max_wall_time=args.max_wall_time,
        on_row=on_row,
    )
    with deferred():  # the final files are written whole even when Ctrl-C arrives meanwhile
        _write(out, res, params, start, final=True)
    png = plot_run(out)[0] if res.rows else None
    if not args.quiet:
        sl = res.slopes()
        print(
            f"{args.optimizer} vs {against}: slope e_sigma {sl['slope_e_sigma']:.3f}, slope e_W "
            f"{sl['slope_e_W']:.3f}  ({res.status}: {res.message})"
        )
        print(f"output       {out}" + (f"  (plot {png.name})" if png else ""))
    elif res.status != "ok":
        print(f"flowsim validate: {res.status}: {res.message}", file=sys.stderr)
    return exit_code_for(res.status)
