"""Shared test fixtures: the reference completion problems (tests/reference_problems.py) and the ``flowsim``
CLI in-process.

Each problem fixture builds its problem afresh, so a test may change the arrays it gets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
import reference_problems

from flowsim.problems import CompletionProblem


@pytest.fixture(name="small_problem")
def _small_problem() -> CompletionProblem:
    """The README's reference problem: 10×10, rank 2, 60 observed entries, seed 0."""
    return reference_problems.small_problem()


@pytest.fixture(name="rank1_problem")
def _rank1_problem() -> CompletionProblem:
    """10×10, rank 1, 50 observed entries, seed 0."""
    return reference_problems.rank1_problem()


@pytest.fixture(name="square_problem")
def _square_problem() -> CompletionProblem:
    """8×8, rank 2, 30 observed entries, seed 1."""
    return reference_problems.square_problem()


@pytest.fixture(name="rect_problem")
def _rect_problem() -> CompletionProblem:
    """A non-square problem: 8×6, rank 2, 30 observed entries, seed 3."""
    return reference_problems.rect_problem()


@pytest.fixture(name="tiny_problem")
def _tiny_problem() -> CompletionProblem:
    """5×5, rank 1, 15 observed entries, seed 0."""
    return reference_problems.tiny_problem()


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
