"""Child process of the atomic-write tests: writes files with flowsim's atomic writers and stops inside one
chosen write, so that the parent kills it exactly there (never by luck).

usage: python atomic_writer.py FOLDER TARGET N PHASE [BYTES]

It writes version k = 1, 2, ... of ``trajectory.npz`` (:func:`flowsim.io.atomic_savez`), ``run.json``
(:func:`flowsim.io.atomic_write_json`) and ``blob.bin`` (:func:`flowsim.io.atomic_write_bytes`) into FOLDER,
in that order; the contents of version k are :func:`contents`. During the N-th write of TARGET (version
k = N) it stops, by PHASE:

``before-rename``
    the temporary file is complete and the rename onto TARGET is the next thing to happen: it prints
    ``inside-write before-rename TMP`` and blocks reading stdin until the parent kills it (SIGKILL).
``in-write``
    it prints ``inside-write in-write TMP`` when the temporary file is opened and sets RLIMIT_FSIZE to
    BYTES with SIGXFSZ at its default action: the kernel kills it inside ``write(2)`` once the temporary
    file holds exactly BYTES bytes (0: created, nothing written).

The write is observed through Python's audit events (``open`` of a new file in FOLDER, ``os.rename`` onto
TARGET, which ``os.replace`` raises as well), so nothing in flowsim is patched. If the chosen write never
happens (no temporary file in FOLDER, or no rename onto TARGET) it says so on stderr and exits 97.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from pathlib import Path

import numpy as np

from flowsim.io import atomic_savez, atomic_write_bytes, atomic_write_json

TARGETS = ("trajectory.npz", "run.json", "blob.bin")
N_DATA = 300_000  # float64 entries of trajectory.npz["data"] (2.4 MB)
N_PAYLOAD = 20_000  # entries of run.json["payload"]
N_BLOB = 1_000_000  # int64 entries of blob.bin (8 MB)
EXIT_NEVER_ARMED = 97


def contents(name: str, k: int) -> object:
    """Version ``k`` of file ``name``: what :func:`write` writes and what a complete file must hold."""
    if name == "trajectory.npz":
        return {"k": np.array(k), "data": np.arange(N_DATA, dtype=float) + k}
    if name == "run.json":
        return {"k": k, "payload": list(range(N_PAYLOAD))}
    return np.full(N_BLOB, k, dtype=np.int64).tobytes()


def write(folder: Path, name: str, k: int) -> None:
    """Write version ``k`` of ``name`` with flowsim's atomic writer for that kind of file."""
    data = contents(name, k)
    if name == "trajectory.npz":
        atomic_savez(folder / name, data)  # type: ignore[arg-type]
    elif name == "run.json":
        atomic_write_json(folder / name, data)
    else:
        atomic_write_bytes(folder / name, data)  # type: ignore[arg-type]


class StopInsideWrite:
    """Audit hook: finds the N-th temporary file written for TARGET and stops there (see the module doc)."""

    def __init__(self, folder: Path, target: str, n: int, phase: str, nbytes: int) -> None:
        self.folder, self.target, self.n, self.phase, self.nbytes = folder.resolve(), target, n, phase, nbytes
        self.writing: str | None = None  # the file the main loop is writing now
        self.seen = 0  # temporary files opened while writing TARGET
        self.tmp: Path | None = None  # the armed write's temporary file

    def __call__(self, event: str, args: tuple) -> None:
        if event == "open" and self.tmp is None and self.writing == self.target:
            path, flags = args[0], args[2]
            if isinstance(path, (str, bytes, os.PathLike)) and flags & (os.O_WRONLY | os.O_RDWR):
                p = Path(os.fsdecode(path)).resolve()
                if p.parent == self.folder and p.name not in TARGETS:
                    self.seen += 1
                    if self.seen == self.n:
                        self.tmp = p
                        if self.phase == "in-write":
                            self._die_inside_write(p)
        elif (event == "os.rename" and self.tmp is not None and self.phase == "before-rename"
              and Path(os.fsdecode(args[1])).name == self.target):
            print(f"inside-write before-rename {args[0]}", flush=True)
            sys.stdin.read()  # blocks until the parent's SIGKILL
            os._exit(EXIT_NEVER_ARMED)  # stdin closed without a kill: the parent gave up

    def _die_inside_write(self, tmp: Path) -> None:
        print(f"inside-write in-write {tmp}", flush=True)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the default kills the process
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.nbytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def main(argv: list[str]) -> int:
    folder, target, n, phase = Path(argv[0]), argv[1], int(argv[2]), argv[3]
    nbytes = int(argv[4]) if len(argv) > 4 else 0
    if target not in TARGETS or phase not in ("before-rename", "in-write") or n < 1:
        print(f"usage: atomic_writer.py FOLDER {{{'|'.join(TARGETS)}}} N {{before-rename|in-write}} [BYTES]",
              file=sys.stderr)
        return 2
    sys.dont_write_bytecode = True  # no other file is written by this process
    hook = StopInsideWrite(folder, target, n, phase, nbytes)
    sys.addaudithook(hook)
    for k in range(1, n + 2):
        for name in TARGETS:
            hook.writing = name
            write(folder, name, k)
            hook.writing = None
    where = "no temporary file was opened in FOLDER" if hook.tmp is None else f"no rename of {hook.tmp}"
    print(f"atomic_writer: write {n} of {target} was never stopped: {where}", file=sys.stderr)
    return EXIT_NEVER_ARMED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
