"""Exceptions and exit codes shared by every command (docs/contract.md §5)."""

from __future__ import annotations

import math

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class BadInputError(ValueError):
    """Invalid user input. The CLI prints the message as one line on stderr and exits 2."""


class RunFailedError(RuntimeError):
    """A run diverged or failed mid-way; partial results are kept and the CLI exits 3."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every ``except KeyboardInterrupt`` that keeps
    partial results handles it too; the CLI then exits 143 instead of 130."""


def check_positive(name: str, value: float) -> float:
    """``value`` as a float when it is a finite number > 0; otherwise :class:`BadInputError` with the message
    ``{name} must be a finite number > 0, got {value!r}`` (``name`` is the option's CLI spelling)."""
    if not (math.isfinite(value) and value > 0):
        raise BadInputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
