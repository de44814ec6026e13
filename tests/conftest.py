"""Shared test fixtures (kept small): run the ``flowsim`` CLI in-process and capture its output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    """Exit code and captured streams of one in-process ``flowsim`` call."""

    code: int
    out: str
    err: str


def run_cli_inprocess(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    """``flowsim.cli.main(argv)``; a ``SystemExit`` raised by argparse becomes the exit code."""
    from flowsim.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors exit through OneLineParser.error
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return CliResult(int(code), captured.out, captured.err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """``cli("simulate", "--size", "6", ...)`` runs ``flowsim`` in-process; returns a :class:`CliResult`."""

    def call(*argv: str) -> CliResult:
        return run_cli_inprocess(argv, capsys)

    return call
