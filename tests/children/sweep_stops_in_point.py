"""Child process of the sweep kill tests: ``flowsim sweep`` whose first point to finish stops just before its
``run.json`` is renamed into place, so the test kills a worker (or the whole sweep) in the middle of a point,
never by luck.

usage: python sweep_stops_in_point.py FLAG FLOWSIM_ARGS...

Runs ``flowsim FLOWSIM_ARGS...`` (exit code passed on). The sweep's workers are spawned processes that
import this script again (as ``__mp_main__``), so the audit hook below is installed in each of them. The
first worker that is about to rename a point's ``run.json`` into place (a folder holding ``point.json``)
creates the file FLAG (exclusively: exactly one worker ever stops), writes ``inside-point PID RUN_DIR`` to
file descriptor 1 (the sweep redirects ``sys.stdout`` into the point's log) and waits until it is killed.
A point rerun after the kill finds FLAG and goes on normally. Nothing in flowsim is patched.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from pathlib import Path

FLAG = Path(sys.argv[1])  # the spawned workers get the sweep's sys.argv


def stop_in_first_point(event: str, args: tuple) -> None:
    """Audit hook: a worker's first rename onto a point's run.json reports itself and waits to be killed."""
    if event != "os.rename" or multiprocessing.parent_process() is None:
        return
    dst = Path(os.fsdecode(args[1]))
    if dst.name != "run.json" or not (dst.parent / "point.json").is_file():
        return
    try:
        os.close(os.open(FLAG, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.write(1, f"inside-point {os.getpid()} {dst.parent}\n".encode())
    threading.Event().wait()  # until the test's SIGKILL


sys.addaudithook(stop_in_first_point)

if __name__ == "__main__":
    from flowsim.cli import main as flowsim_main

    sys.exit(flowsim_main(sys.argv[2:]))
