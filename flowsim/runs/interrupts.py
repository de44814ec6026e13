"""One way to stop every command: SIGINT and SIGTERM raise inside the running code, partial results are kept.

SIGINT raises :class:`KeyboardInterrupt` (Python's default) and SIGTERM raises
:class:`flowsim.errors.Terminated`, a subclass, so the code that keeps what was computed on Ctrl-C
(integrators, training loops, the claim checker) handles both. Code that swallowed the exception into a
status ``interrupted`` can still ask :func:`interrupt_requested` and stop the remaining work (sub-runs,
claims, sweep points): an interrupt is never a result. :func:`exit_code` is 130 after SIGINT and 143 after
SIGTERM. :func:`deferred` holds signals while final results are written, then raises.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from ..errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated

_state: dict[str, Any] = {"signal": None, "deferring": False, "pending": None}


def _raise_for(signum: int) -> None:
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def _handler(signum: int, frame: FrameType | None) -> None:
    _state["signal"] = signum
    if _state["deferring"]:
        _state["pending"] = signum
        return
    _raise_for(signum)


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Install the SIGINT/SIGTERM handlers for the duration of one command (main thread only; elsewhere,
    e.g. on a Dask worker thread, nothing is installed) and restore the previous ones afterwards."""
    reset()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in saved:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def reset() -> None:
    """Forget an earlier interrupt (a new command starts)."""
    _state.update(signal=None, deferring=False, pending=None)


def note_interrupt(exc: BaseException | None = None) -> None:
    """Record an interrupt that arrived without our handler (e.g. a KeyboardInterrupt raised directly)."""
    if _state["signal"] is None:
        _state["signal"] = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT


def interrupt_requested() -> bool:
    """True once SIGINT or SIGTERM arrived during this command."""
    return _state["signal"] is not None


def check_interrupt() -> None:
    """Raise the pending interrupt again when some inner code turned it into a status (stop the rest)."""
    if _state["signal"] is not None:
        _raise_for(int(_state["signal"]))


def exit_code() -> int:
    """130 after SIGINT (or a KeyboardInterrupt), 143 after SIGTERM."""
    return EXIT_TERMINATED if _state["signal"] == signal.SIGTERM else EXIT_INTERRUPTED


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block writes results (a write is never cut in half by the user); a
    signal that arrived meanwhile is raised when the block ends."""
    if _state["deferring"]:
        yield
        return
    _state["deferring"] = True
    try:
        yield
    finally:
        _state["deferring"] = False
        pending, _state["pending"] = _state["pending"], None
        if pending is not None:
            _raise_for(int(pending))
