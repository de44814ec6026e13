"""``flowsim simulate``: integrate a continuous-time model on a completion problem (``docs/math.md`` §4–§9).

The options parse into a :class:`flowsim.runs.simulate.SimulateSpec`;
:func:`flowsim.runs.simulate.run_simulate` does the run.
"""

from __future__ import annotations

import argparse

from ..flows import FLOW_NAMES, MODEL_NAMES
from ..integrator import SOLVERS
from ..io import command_line
from ..runs.simulate import SimulateSpec, run_simulate, summary
from ..simulate import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_T_END
from .common import (
    add_allow_large_arg,
    add_model_args,
    add_no_plot_arg,
    add_output_args,
    add_problem_args,
    make_parser,
    positive_float,
    positive_int,
    unit_interval_float,
)

__all__ = ["build_parser", "run", "spec_from_args", "summary"]


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = make_parser(prog, "Integrate the end-product or layer-wise dynamics of a depth-N linear network "
                          "on a matrix-completion problem; write run.json, trajectory.npz and a plot.")
    add_problem_args(p)
    add_model_args(p)
    g = p.add_argument_group("dynamics and integration")
    g.add_argument("--flow", choices=FLOW_NAMES, default="gf",
                   help="continuous-time model (docs/math.md §4–§9)")
    g.add_argument("--model", choices=MODEL_NAMES, default="auto",
                   help="state: end product W (docs/math.md §4), layer factors (§6), or auto: the cheaper "
                        "exact one (--flow gf; recorded in run.json stats.formulation)")
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


def spec_from_args(args: argparse.Namespace) -> SimulateSpec:
    """The spec of parsed arguments; ``run.json`` records this process's command line as typed."""
    return SimulateSpec.from_namespace(args, provenance=command_line())


def run(args: argparse.Namespace) -> int:
    return run_simulate(spec_from_args(args)).exit_code
