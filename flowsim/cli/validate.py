"""``flowsim validate``: discrete runs against a flow over step sizes, errors and slopes (``docs/math.md``
§11). The options parse into a :class:`flowsim.runs.validate.ValidateSpec`;
:func:`flowsim.runs.validate.run_validate` does the run."""

from __future__ import annotations

import argparse

from ..flows import MODEL_NAMES
from ..integrator import SOLVERS
from ..io import command_line
from ..runs.validate import AGAINST, BETA_SCALINGS, FLOWS, ValidateSpec, run_validate
from .common import (
    add_allow_large_arg,
    add_model_args,
    add_output_args,
    add_problem_args,
    lrs_arg,
    make_parser,
    positive_float,
    positive_int,
)
from .train import add_device_args, add_optimizer_args

__all__ = ["build_parser", "lrs_arg", "run", "spec_from_args"]


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


def spec_from_args(args: argparse.Namespace) -> ValidateSpec:
    """The spec of parsed arguments; ``run.json`` records this process's command line as typed."""
    return ValidateSpec.from_namespace(args, provenance=command_line())


def run(args: argparse.Namespace) -> int:
    return run_validate(spec_from_args(args)).exit_code
