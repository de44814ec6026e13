"""Parser pieces shared by the subcommands: the one-line parser, argument types, problem/model/output options.

The values are checked by the converters of :mod:`flowsim.runs.options` (the same checks and messages as a
spec built without the command line); the problem, penalty and factors of a spec come from
:mod:`flowsim.runs.common`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from ..errors import EXIT_BAD_INPUT, BadInputError
from ..initializations import INIT_NAMES
from ..penalties import PENALTY_NAMES
from ..problems import REDUCTIONS
from ..runs import options as opts
from ..runs.common import factors_from_args, penalty_from_args, problem_from_args


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


# ---- argument types: the converters of flowsim.runs.options; each error -> one line, exit 2 -------------

def _argtype(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` function from a converter of :mod:`flowsim.runs.options` (its
    :class:`BadInputError` becomes argparse's one-line ``argument --x: ...`` error)."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except BadInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = convert.__name__
    parse.__doc__ = convert.__doc__
    return parse


positive_int = _argtype(opts.positive_int)
nonneg_int = _argtype(opts.nonneg_int)
positive_float = _argtype(opts.positive_float)
nonneg_float = _argtype(opts.nonneg_float)
finite_float = _argtype(opts.finite_float)
unit_interval_float = _argtype(opts.unit_interval_float)
size_arg = _argtype(opts.size_arg)
observed_arg = _argtype(opts.observed_arg)
penalty_arg = _argtype(opts.penalty_arg)
lrs_arg = _argtype(opts.lrs_arg)


# ---- option groups ------------------------------------------------------------------------------------

def add_problem_args(p: argparse.ArgumentParser) -> None:
    """Problem options (docs/math.md §2; docs/contract.md)."""
    g = p.add_argument_group("problem (docs/math.md §2)")
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
    """Network, penalty and initialization options (docs/math.md §3, §13)."""
    g = p.add_argument_group("network, penalty, initialization")
    g.add_argument("--depth", type=positive_int, default=3, metavar="N", help="depth N ≥ 1")
    g.add_argument("--penalty", type=penalty_arg, default="none", metavar="|".join(PENALTY_NAMES),
                   help="explicit penalty R(W)")
    g.add_argument("--lam", type=nonneg_float, default=0.0, metavar="L", help="penalty strength λ ≥ 0")
    g.add_argument("--init", choices=INIT_NAMES, default=default_init,
                   help="initialization (docs/math.md §13)")
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


def add_allow_large_arg(p: argparse.ArgumentParser) -> None:
    """``--allow-large``: run beyond the soft limits of :mod:`flowsim.runs.budget`."""
    p.add_argument("--allow-large", action="store_true",
                   help="run beyond the size/count limits (the error message gives the estimate)")


__all__ = ["OneLineParser", "add_allow_large_arg", "add_model_args", "add_no_plot_arg", "add_output_args",
           "add_problem_args", "factors_from_args", "finite_float", "lrs_arg", "make_parser", "nonneg_float",
           "nonneg_int", "observed_arg", "penalty_arg", "penalty_from_args", "positive_float", "positive_int",
           "problem_from_args", "size_arg", "unit_interval_float"]
