"""The ``flowsim`` command line (SPEC §7). Each subcommand lives in its own module, imported lazily.

A subcommand module provides ``build_parser(prog) -> argparse.ArgumentParser`` and
``run(args) -> int`` (the exit code).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from ..errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, BadInputError

COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("flowsim.cli.simulate", "integrate a continuous-time model (gradient flow, Adam flows)"),
    "train": ("validation.cli_train", "discrete run (GD/Adam/...) of the layer factors in torch"),
    "validate": ("validation.cli_validate", "compare a flow with discrete runs over step sizes"),
    "razin": ("theory.razin_cli", "Razin–Cohen 2×2 counterexample with checks C1–C8"),
    "check": ("theory.cli", "check published theorem statements numerically"),
    "plot": ("flowsim.cli.plot", "plot a run directory"),
    "sweep": ("flowsim.sweep.cli", "run a parameter grid (local processes or Dask)"),
    "figures": ("figures.cli", "regenerate the README gallery"),
}


def blas_thread_limit():
    """Limit BLAS/OpenMP to ``FLOWSIM_BLAS_THREADS`` threads (default 1; 0 = no limit).

    flowsim's matrices are small (≤ a few hundred): one BLAS thread is faster (default ``simulate``:
    5.8 s vs 6.9 s with two threads on an idle 2-core machine), and a second thread that competes with
    another busy process made the same run take 97 s.
    """
    import contextlib
    import os

    from threadpoolctl import threadpool_limits

    text = os.environ.get("FLOWSIM_BLAS_THREADS", "1")
    try:
        n = int(text)
    except ValueError:
        raise BadInputError(f"FLOWSIM_BLAS_THREADS must be an integer ≥ 0, got {text!r}") from None
    if n < 0:
        raise BadInputError(f"FLOWSIM_BLAS_THREADS must be an integer ≥ 0, got {text!r}")
    return contextlib.nullcontext() if n == 0 else threadpool_limits(limits=n)


def _usage() -> str:
    lines = ["usage: flowsim COMMAND [options]   (flowsim COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowsim`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_BAD_INPUT
    if argv[0] == "--version":
        from importlib.metadata import version

        print(version("flowsim"))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"flowsim: error: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as exc:
        if exc.name and COMMANDS[name][0].startswith(exc.name):
            print(f"flowsim {name}: error: this command is not yet available", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    try:
        args = module.build_parser(f"flowsim {name}").parse_args(rest)
        with blas_thread_limit():
            return int(module.run(args))
    except BadInputError as exc:
        print(f"flowsim {name}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"flowsim {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
