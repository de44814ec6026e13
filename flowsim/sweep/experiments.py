"""The reproduction experiments' cells (Zhao22 Table 1, Fig. 4, Table 2) on the sweep's process pool.

:func:`run_cells` runs :func:`flowsim.validation.reproduce_jobs.run_jobs` on a
:class:`~flowsim.sweep.runner.LocalBackend` (spawned workers that exit when the parent dies, torch limited to
one thread each) when more than one worker is asked for, or on a Dask cluster
(:class:`~flowsim.sweep.runner.DaskBackend`); :func:`interrupted` is the scripts' answer to
SIGINT/SIGTERM: the finished cells are kept and the same command resumes; :func:`run_guarded` is the scripts'
one mapping of what stops a run to its exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import EXIT_BAD_INPUT, EXIT_RUN_FAILED, BadInputError, RunFailedError
from ..runs.interrupts import exit_code, handling_signals
from ..validation.reproduce_jobs import run_jobs
from .runner import DaskBackend, LocalBackend

T = TypeVar("T")


def run_cells(
    cells: Sequence[dict[str, Any]],
    job: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
    proto: dict[str, Any],
    out: Path,
    workers: int = 1,
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """``job(cell, proto)`` for every cell not yet recorded in ``out/cells/``: ``workers`` local processes at
    a time, or as futures on the Dask scheduler at ``scheduler`` (``out`` must be on a file system the
    workers share; bad addresses are bad input)."""
    backend: LocalBackend | DaskBackend | None = None
    if scheduler is not None:
        backend = DaskBackend(scheduler)
    elif workers > 1 and len(cells) > 1:
        backend = LocalBackend(workers)
    return run_jobs(cells, job, proto, out, backend=backend)


def interrupted(prog: str, out: Path) -> int:
    """Say on stderr that the run was interrupted and what was kept; return the exit code (130 after SIGINT,
    143 after SIGTERM)."""
    done = len(list((out / "cells").glob("*.json"))) if (out / "cells").is_dir() else 0
    print(f"{prog}: interrupted; {done} finished cells are kept in {out / 'cells'} "
          "(the same command resumes)", file=sys.stderr)
    return exit_code()


def run_guarded(prog: str, out: Path, work: Callable[[], T]) -> tuple[T | None, int]:
    """``work()`` with SIGINT/SIGTERM handled: (its result, 0), or (None, the exit code) after one line on
    stderr — 130/143 when interrupted (:func:`interrupted`), 2 for bad input (e.g. a ``--scheduler`` that
    cannot be reached), 3 when cells failed (:class:`flowsim.errors.RunFailedError`)."""
    try:
        with handling_signals():
            return work(), 0
    except KeyboardInterrupt:
        return None, interrupted(prog, out)
    except BadInputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None, EXIT_BAD_INPUT
    except RunFailedError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None, EXIT_RUN_FAILED
