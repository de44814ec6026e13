"""``flowsim razin``: the Razin–Cohen 2×2 counterexample with checks C1–C8 (RC20; ``docs/math.md`` §10).

The options parse into a :class:`flowsim.runs.razin.RazinSpec`; :func:`flowsim.runs.razin.run_razin` does the
run (its module docstring lists the files written).
"""

from __future__ import annotations

import argparse

from ..io import command_line
from ..runs import razin as runs_razin
from ..runs.razin import RazinSpec, run_razin
from ..theory import razin as rz
from .common import add_allow_large_arg, finite_float, make_parser, nonneg_int, positive_float, positive_int

__all__ = ["build_parser", "run", "spec_from_args", "summary"]

summary = runs_razin.summary


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = make_parser(prog, "Gradient flow on the Razin–Cohen 2×2 completion problem (RC20): every norm → ∞ "
                          "while the rank is minimized; checks C1–C8 along the trajectory.")
    g = p.add_argument_group("problem and network (docs/math.md §10)")
    g.add_argument("--depth", type=int, default=3, metavar="N", help="depth N ≥ 2")
    g.add_argument("--z", type=finite_float, default=1.0, help="observed b₁₂")
    g.add_argument("--zp", type=finite_float, default=1.0, help="observed b₂₁")
    g.add_argument("--eps", type=finite_float, default=0.0, help="observed b₂₂")
    g.add_argument("--det", choices=("pos", "neg"), default="pos", help="sign of det W(0)")
    g.add_argument("--init", choices=rz.INITS, default="balanced",
                   help="balanced (product of scale A), identity (W_j = A^{1/N} I), normal (per-layer std A)")
    g.add_argument("--init-scale", type=positive_float, default=None, metavar="A",
                   help="default: 1e-5 (balanced, identity), 8e-3 (normal)")
    g.add_argument("--seed", type=nonneg_int, default=0, help="seed of the random initializations")
    g = p.add_argument_group("integration")
    g.add_argument("--t-end", type=float, default=rz.DEFAULT_T_END, metavar="T", help="horizon (> 0)")
    g.add_argument("--n-save", type=positive_int, default=300, help="number of log-spaced saved times")
    g.add_argument("--rtol", type=positive_float, default=rz.DEFAULT_RTOL, help="relative tolerance")
    g.add_argument("--atol", type=positive_float, default=rz.DEFAULT_ATOL, help="absolute tolerance")
    g.add_argument("--method", choices=("LSODA", "Radau", "BDF"), default="LSODA", help="stiff scipy solver")
    g.add_argument("--stop-loss", type=positive_float, default=None, metavar="L", help="stop once ℓ < L")
    g.add_argument("--max-wall-time", type=positive_float, default=None, metavar="SECONDS")
    g = p.add_argument_group("comparisons")
    g.add_argument("--gd", action="store_true",
                   help="also run discrete GD (RC20: η = 3e-3, stop at ℓ < 1e-4)")
    g.add_argument("--gd-lr", type=positive_float, default=3e-3, metavar="η")
    g.add_argument("--gd-stop-loss", type=positive_float, default=1e-4, metavar="L")
    g.add_argument("--gd-max-iter", type=positive_int, default=50_000_000)
    g.add_argument("--gd-engine", choices=("auto", "numba", "python"), default="auto")
    g.add_argument("--family", action="store_true",
                   help="also run the perturbed family (z, z′) = (−2, 0.5), ε ∈ {0, 0.01, 0.05, 0.1, 0.5}")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default runs/razin-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true", help="no summary")
    add_allow_large_arg(p)
    return p


def spec_from_args(args: argparse.Namespace) -> RazinSpec:
    """The spec of parsed arguments; ``run.json`` records this process's command line as typed."""
    return RazinSpec.from_namespace(args, provenance=command_line())


def run(args: argparse.Namespace) -> int:
    return run_razin(spec_from_args(args)).exit_code
