"""Deterministic signal tests: start a child process that prints a marker line when it is inside the phase
to be interrupted (and then waits there), read that line, and only then send the signal. No sleeps, no
elapsed-time thresholds: the outcome does not depend on the machine's load.

The child scripts live in ``tests/children/``; each documents its marker and what it does after printing it.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

CHILDREN = Path(__file__).parent / "children"
#: seconds to wait for a marker; only a broken child ever waits this long (then the test fails, not hangs)
MARKER_TIMEOUT_S = 300.0


class MarkedChild:
    """A child process whose stdout is read line by line on a thread, so a marker can be awaited."""

    def __init__(self, argv: list[str], **popen_kwargs: Any) -> None:
        pipe = subprocess.PIPE
        self.proc = subprocess.Popen(argv, stdin=pipe, stdout=pipe, stderr=pipe, text=True, **popen_kwargs)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output: the child exited

    def wait_for_marker(self, prefix: str, timeout: float = MARKER_TIMEOUT_S) -> str:
        """The first stdout line starting with ``prefix`` (without the prefix); fails with the child's
        stderr when it exits or times out first."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                raise AssertionError(f"no {prefix!r} line within {timeout:g} s; "
                                     f"stderr: {self.stderr()}") from None
            if line is None:
                raise AssertionError(f"the child exited ({self.proc.wait()}) before printing {prefix!r}; "
                                     f"stderr: {self.stderr()}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def finish(self, timeout: float = MARKER_TIMEOUT_S) -> tuple[int, str]:
        """Wait for the child to end; its exit code (−signal number when a signal ended it) and stderr."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the child did not end within {timeout:g} s") from None
        return code, self.stderr()

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        """SIGKILL the child if it still runs and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> MarkedChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self.pump.join(timeout=MARKER_TIMEOUT_S)  # the child is gone: its stdout ends
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def start_child(script: str, *args: object, **popen_kwargs: Any) -> MarkedChild:
    """``python tests/children/SCRIPT ARGS...`` with pipes on all three streams (stdin stays open, so a
    child can block reading it until it is signalled); ``popen_kwargs`` go to :class:`subprocess.Popen`
    (e.g. ``start_new_session=True`` to kill the child's whole process group)."""
    return MarkedChild([sys.executable, str(CHILDREN / script), *map(str, args)], **popen_kwargs)
