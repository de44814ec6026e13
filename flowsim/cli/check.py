"""``flowsim check``: run the claims registry (:mod:`flowsim.theory.registry`) and print the verdict table.

Options: ``--quick`` (reduced instance set, < 60 s), ``--json FILE`` (the claim records), ``--markdown FILE``
(the table of ``docs/claims.md``), ``--claim ID`` (repeatable), ``--list``, ``--module PATH_OR_NAME``
(repeatable; user claims registered with :func:`flowsim.theory.registry.claim` or
:func:`flowsim.theory.registry.formula_claim`), ``--seed S`` (the instances). The options parse into a
:class:`flowsim.runs.check.CheckSpec`; :func:`flowsim.runs.check.run_check` does the run (its module
docstring lists the exit codes).
"""

from __future__ import annotations

import argparse

from ..io import command_line
from ..runs.check import CheckSpec, run_check, select_claims
from .common import make_parser, nonneg_int

__all__ = ["build_parser", "run", "select_claims", "spec_from_args"]


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The ``flowsim check`` parser."""
    p = make_parser(prog, "Check published theorem statements (ACH18, Zhao22, RC20, ...) numerically: each "
                          "claim's residual against an exact route, its tolerance and verdict.")
    p.add_argument("--quick", action="store_true", help="reduced set of instances (< 60 s on 2 cores)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the claim records as JSON")
    p.add_argument("--markdown", default=None, metavar="FILE", help="write the Markdown table")
    p.add_argument("--claim", action="append", default=None, metavar="ID",
                   help="check only this claim (repeatable)")
    p.add_argument("--list", action="store_true", help="list the registered claims and exit")
    p.add_argument("--module", action="append", default=[], metavar="PATH_OR_NAME",
                   help="also load the claims of a user module (.py file or importable name; repeatable)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the random instances")
    p.add_argument("--quiet", action="store_true", help="print only the table")
    return p


def spec_from_args(args: argparse.Namespace) -> CheckSpec:
    """The spec of parsed arguments."""
    return CheckSpec.from_namespace(args, provenance=command_line())


def run(args: argparse.Namespace) -> int:
    """Run the selected claims and report (exit codes: :mod:`flowsim.runs.check`)."""
    return run_check(spec_from_args(args)).exit_code
