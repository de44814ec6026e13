"""``flowsim train``: a discrete run (GD/Adam/Adagrad/Adamax/RMSprop) of the layer factors (``docs/math.md``
§11). The options parse into a :class:`flowsim.runs.train.TrainSpec`; :func:`flowsim.runs.train.run_train`
does the run."""

from __future__ import annotations

import argparse

from ..io import command_line
from ..runs.train import DEVICE_NAMES, DTYPES, OPTIMIZER_NAMES, TrainSpec, hyper_from_args, run_train
from .common import (
    add_allow_large_arg,
    add_model_args,
    add_no_plot_arg,
    add_output_args,
    add_problem_args,
    make_parser,
    nonneg_float,
    positive_float,
    positive_int,
)

__all__ = ["add_device_args", "add_optimizer_args", "build_parser", "hyper_from_args", "run",
           "spec_from_args"]


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
    g.add_argument("--device", choices=DEVICE_NAMES, default="auto", help="torch device")
    g.add_argument("--dtype", choices=tuple(DTYPES), default="float64", help="floating-point precision")


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


def spec_from_args(args: argparse.Namespace) -> TrainSpec:
    """The spec of parsed arguments; ``run.json`` records this process's command line as typed."""
    return TrainSpec.from_namespace(args, provenance=command_line())


def run(args: argparse.Namespace) -> int:
    return run_train(spec_from_args(args)).exit_code
