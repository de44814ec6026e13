"""Child process of the signal tests: ``flowsim`` in a process that stops inside the integration, so that the
parent's signal lands there (never by luck).

usage: python stop_in_velocity.py T_MARK FLOWSIM_ARGS...

Runs ``flowsim FLOWSIM_ARGS...`` (exit code passed on). The first time the end-product gradient-flow field
(:class:`flowsim.flows.gf.EndProductFlow`, ``--model end-product``) is evaluated at a time t > T_MARK, it
prints ``inside-velocity t=<t>`` and blocks reading stdin: the integration has made progress up to about
T_MARK and is in the middle of a step, and stays there until the parent's signal (SIGINT, SIGTERM) raises
out of the read. If the field is never evaluated beyond T_MARK it says so on stderr and exits 97.
"""

from __future__ import annotations

import os
import sys

from flowsim.cli import main as flowsim_main
from flowsim.flows.gf import EndProductFlow

EXIT_NEVER_STOPPED = 97


def stop_after(t_mark: float) -> list[float]:
    """Patch the field to print the marker and block on its first evaluation beyond ``t_mark``; the list
    gets the marker's time."""
    field = EndProductFlow.__call__
    stopped: list[float] = []

    def stopping_field(self, t, y):
        if t > t_mark and not stopped:
            stopped.append(float(t))
            print(f"inside-velocity t={float(t)!r}", flush=True)
            sys.stdin.read()  # the parent's signal raises out of this read
            os._exit(EXIT_NEVER_STOPPED)  # stdin closed without a signal: the parent gave up
        return field(self, t, y)

    EndProductFlow.__call__ = stopping_field  # type: ignore[method-assign]
    return stopped


if __name__ == "__main__":
    stopped = stop_after(float(sys.argv[1]))
    code = flowsim_main(sys.argv[2:])
    if not stopped:
        print(f"stop_in_velocity: the field was never evaluated beyond t={sys.argv[1]}", file=sys.stderr)
        sys.exit(EXIT_NEVER_STOPPED)
    sys.exit(code)
