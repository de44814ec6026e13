"""``flowsim train``: a discrete run (GD/Adam/Adagrad/Adamax/RMSprop) of the layer factors (SPEC §5, §7)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

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
    add_no_plot_arg,
    add_output_args,
    add_problem_args,
    exit_code_for,
    factors_from_args,
    make_parser,
    nonneg_float,
    params_from_args,
    penalty_from_args,
    positive_float,
    positive_int,
    prepare_out_dir,
    problem_from_args,
    write_run_and_plot,
)

from .batched import DTYPES, resolve_device, resolve_dtype
from .optimizers import DEFAULTS, OPTIMIZER_NAMES, make_optimizer
from .train import record_iterations, train

#: CLI option (dest) -> hyper-parameter name, for the optimizers that accept it
HYPER_OPTIONS = {
    "beta1": "beta1",
    "beta2": "beta2",
    "eps": "eps",
    "momentum": "momentum",
    "dampening": "dampening",
    "weight_decay": "weight_decay",
    "alpha": "alpha",
    "lr_decay": "lr_decay",
    "amsgrad": "amsgrad",
    "nesterov": "nesterov",
    "centered": "centered",
}


def add_optimizer_args(
    p: argparse.ArgumentParser, *, choices: tuple[str, ...] = OPTIMIZER_NAMES, default_lr: float = 0.01
) -> None:
    """--optimizer, --lr and the torch.optim hyper-parameters (unset ones keep torch's defaults)."""
    g = p.add_argument_group("optimizer (torch.optim semantics)")
    g.add_argument("--optimizer", choices=choices, default="gd", help="discrete optimizer")
    g.add_argument("--lr", type=positive_float, default=default_lr, metavar="E", help="step size η")
    g.add_argument("--beta1", type=float, default=None, help="Adam/Adamax β₁ (default 0.9)")
    g.add_argument("--beta2", type=float, default=None, help="Adam/Adamax β₂ (default 0.999)")
    g.add_argument("--eps", type=nonneg_float, default=None, help="ε (torch default of the optimizer)")
    g.add_argument("--momentum", type=nonneg_float, default=None, help="GD/RMSprop momentum (default 0)")
    g.add_argument("--dampening", type=nonneg_float, default=None, help="GD momentum dampening (default 0)")
    g.add_argument("--weight-decay", type=nonneg_float, default=None, help="L2 weight decay (default 0)")
    g.add_argument("--alpha", type=float, default=None, help="RMSprop smoothing α (default 0.99)")
    g.add_argument(
        "--lr-decay", type=nonneg_float, default=None, help="Adagrad learning-rate decay (default 0)"
    )
    g.add_argument("--amsgrad", action="store_true", default=None, help="Adam: AMSGrad variant")
    g.add_argument("--nesterov", action="store_true", default=None, help="GD: Nesterov momentum")
    g.add_argument("--centered", action="store_true", default=None, help="RMSprop: centered variant")


def add_device_args(p: argparse.ArgumentParser) -> None:
    """--device and --dtype."""
    g = p.add_argument_group("device")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device")
    g.add_argument("--dtype", choices=tuple(DTYPES), default="float64", help="floating-point precision")


def hyper_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The hyper-parameters given on the command line (each must apply to ``args.optimizer``)."""
    from flowsim.errors import BadInputError

    accepted = DEFAULTS[args.optimizer]
    out = {}
    for dest, key in HYPER_OPTIONS.items():
        v = getattr(args, dest, None)
        if v is None:
            continue
        if key not in accepted:
            raise BadInputError(f"--{dest.replace('_', '-')} does not apply to --optimizer {args.optimizer}")
        out[key] = v
    if args.optimizer == "gd" and out.get("nesterov") and not out.get("momentum"):
        raise BadInputError("--nesterov needs --momentum > 0")
    # validate the values now (bad input before any output exists)
    make_optimizer(args.optimizer, [torch.zeros(1, 1, dtype=torch.float64)], args.lr, **out)
    return out


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "Train the layer factors of a depth-N linear network with a discrete optimizer "
        "(torch, full batch) on a matrix-completion problem; write run.json, "
        "trajectory.npz (t_k = kη) and a plot.",
    )
    add_problem_args(p)
    add_model_args(p)
    add_optimizer_args(p)
    g = p.add_argument_group("run")
    g.add_argument("--iters", type=positive_int, default=10000, metavar="K", help="number of steps")
    g.add_argument(
        "--n-save", type=positive_int, default=200, help="number of log-spaced recorded iterations"
    )
    g.add_argument("--check-every", type=positive_int, default=50, help="divergence check interval (steps)")
    g.add_argument("--save-matrices", action="store_true", help="also save W at every recorded iteration")
    add_device_args(p)
    add_output_args(p)
    add_no_plot_arg(p)
    add_allow_large_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    check_count("--iters", args.iters, MAX_ITERATIONS, args.allow_large, "iterations")
    if args.w_star is None:
        check_model(args.size, args.depth, args.allow_large)
        note_slow_setup(args.size, args.quiet)
    problem = problem_from_args(args)
    check_model(problem.shape, args.depth, args.allow_large)
    check_saved("--n-save", args.n_save, problem.shape, 0, args.save_matrices, args.allow_large)
    penalty = penalty_from_args(args)
    factors = factors_from_args(args, problem.shape)
    hyper = hyper_from_args(args)
    device = resolve_device(args.device)
    resolve_dtype(args.dtype)
    record_iterations(args.iters, args.n_save)
    out = prepare_out_dir(args.out, "train")
    traj = train(
        problem,
        factors,
        optimizer=args.optimizer,
        lr=args.lr,
        iters=args.iters,
        penalty=penalty,
        lam=args.lam,
        hyper=hyper,
        n_record=args.n_save,
        device=str(device),
        dtype=args.dtype,
        save_matrices=args.save_matrices,
        check_every=args.check_every,
        progress=False if args.quiet else None,
    )
    params = params_from_args(args)
    params["problem"] = problem.description
    params["hyper"] = hyper
    params["device_used"] = str(device)
    wall = time.perf_counter() - start
    png = write_run_and_plot(out, traj, command="train", params=params, wall_time_s=wall,
                             no_plot=args.no_plot, time_label="t = kη",
                             extra_info={"time_map": "t_k = k * lr"})
    if not args.quiet:
        from flowsim.cli.simulate import summary

        text = summary(traj, out, wall, png).splitlines()
        text = [ln for ln in text if not ln.startswith("nfev")]
        text.insert(
            -2,
            f"iterations   {traj.stats.get('iterations')} on {device} "
            f"({traj.stats.get('iterations_per_s', float('nan')):.0f} it/s)",
        )
        print("\n".join(text))
    elif traj.status != "ok":
        print(f"flowsim train: {traj.status}: {traj.message}", file=sys.stderr)
    return exit_code_for(traj.status)
