"""The ``flowsim`` command line (docs/contract.md). Each subcommand lives in its own module, imported lazily.

A subcommand module provides ``build_parser(prog) -> argparse.ArgumentParser`` and
``run(args) -> int`` (the exit code): it parses the options into the command's run spec and calls its run
function (:mod:`flowsim.runs`). This package is the only one that knows every command.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from ..errors import EXIT_BAD_INPUT, EXIT_RUN_FAILED, BadInputError

COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("flowsim.cli.simulate", "integrate a continuous-time model (gradient flow, Adam flows)"),
    "train": ("flowsim.cli.train", "discrete run (GD/Adam/...) of the layer factors in torch"),
    "validate": ("flowsim.cli.validate", "compare a flow with discrete runs over step sizes"),
    "razin": ("flowsim.cli.razin", "Razin–Cohen 2×2 counterexample with checks C1–C8"),
    "check": ("flowsim.cli.check", "check published theorem statements numerically"),
    "plot": ("flowsim.cli.plot", "plot a run directory"),
    "sweep": ("flowsim.cli.sweep", "run a parameter grid (local processes or Dask)"),
    "figures": ("flowsim.cli.figures", "regenerate the README gallery"),
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

    from ..runs.options import nonneg_int

    try:
        n = nonneg_int(os.environ.get("FLOWSIM_BLAS_THREADS", "1"))
    except BadInputError as exc:
        raise BadInputError(f"FLOWSIM_BLAS_THREADS {exc}") from None
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
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # the filters in force still apply
        code = _run(module, name, rest)
    if code != EXIT_RUN_FAILED:  # a failed run's stderr is its one status line; the warnings are its echo
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return code


def _run(module, name: str, rest: list[str]) -> int:
    """Parse and run one command; every way it can end becomes an exit code and at most one line."""
    from ..runs import interrupts, outdir

    outdir.begin()
    try:
        with interrupts.handling_signals():
            args = module.build_parser(f"flowsim {name}").parse_args(rest)
            with blas_thread_limit():
                return int(module.run(args))
    except BadInputError as exc:
        print(f"flowsim {name}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        interrupts.note_interrupt(exc)
        print(f"flowsim {name}: interrupted", file=sys.stderr)
        return interrupts.exit_code()
    except (OSError, MemoryError) as exc:
        # an OS refusal (no space, name too long, permission) or memory exhaustion: one line; before the
        # output folder was claimed it is bad input (nothing written), after it a failed run (exit 3)
        code = EXIT_RUN_FAILED if outdir.work_started() else EXIT_BAD_INPUT
        print(f"flowsim {name}: error: {_os_error_text(exc)}", file=sys.stderr)
        return code
    finally:
        outdir.reset()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n"))


def _os_error_text(exc: BaseException) -> str:
    """``cannot write PATH: No space left on device`` style text for an OSError or MemoryError."""
    if isinstance(exc, MemoryError):
        return f"out of memory ({exc or 'MemoryError'}); use smaller sizes or counts"
    where = getattr(exc, "filename", None)
    reason = _one_line(getattr(exc, "strerror", None) or exc) or type(exc).__name__
    return f"{where}: {reason}" if where else reason
