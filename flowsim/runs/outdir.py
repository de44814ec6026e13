"""Ownership of output folders: one run writes a folder at a time, and never over another run's files.

A run folder is *claimed* by :func:`claim_out_dir` before anything is written into it:

* it takes an exclusive lock (``fcntl.flock`` on the folder itself, held until the command ends); a second
  writer gets bad input (exit 2);
* an existing folder is accepted only when it is empty, or when it holds an earlier run of the *same*
  command, whose files are removed first (the new run replaces it; nothing of the two runs is mixed). A
  folder that holds another command's run, a sweep, or files flowsim did not write is refused.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from ..errors import BadInputError

#: files a sweep keeps in a point's folder around the command's own outputs
SWEEP_BOOKKEEPING = ("point.json", "log.txt")
#: what each command writes into its run folder (names, or ``*.png`` patterns)
OUTPUTS: dict[str, tuple[str, ...]] = {
    "simulate": ("run.json", "trajectory.npz", "trajectory.png"),
    "train": ("run.json", "trajectory.npz", "trajectory.png"),
    "razin": ("run.json", "trajectory.npz", "gd.npz", "family.npz", "razin.png", "razin_family.png",
              "trajectory.png"),
    "validate": ("run.json", "validation.json", "validation.png", "runs"),
}

_held: dict[str, int] = {}  # resolved folder -> file descriptor of its held lock
_started: list[bool] = [False]


def work_started() -> bool:
    """True once this command claimed its output folder (an OS error after that is a failed run, exit 3)."""
    return _started[0]


def begin() -> None:
    """A command starts: no work done yet (locks held by earlier direct callers are kept)."""
    _started[0] = False


def reset() -> None:
    """Release every lock this process holds and forget that work started (a command ends)."""
    import fcntl

    for fd in _held.values():
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()
    _started[0] = False


def release_dir(path: Path) -> None:
    """Release the lock this process holds on ``path`` (a sweep worker finished its point)."""
    import fcntl

    fd = _held.pop(str(Path(path).resolve()), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            os.close(fd)


def lock_dir(path: Path, flag: str = "--out") -> None:
    """Hold an exclusive lock on the folder ``path`` itself (``flock`` on a descriptor of the folder, so no
    file is added to it) for the rest of this command; re-entrant within the process."""
    import fcntl

    key = str(path.resolve())
    if key in _held:
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise BadInputError(f"{flag} {path}: cannot be opened ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise BadInputError(f"{flag} {path} is in use by another flowsim run (it holds the folder's lock); "
                            f"wait for it or choose another folder") from None
    _held[key] = fd


def _recorded_command(path: Path) -> str | None:
    from ..io import read_json

    try:
        info = read_json(path / "run.json")
    except (OSError, ValueError):
        return None
    return info.get("command") if isinstance(info, dict) and isinstance(info.get("command"), str) else None


def check_reusable(path: Path, command: str, flag: str = "--out") -> list[Path]:
    """The files of an earlier run of ``command`` in ``path`` that a new run replaces; refuses (bad input)
    a folder holding anything else. Reads only."""
    if not path.is_dir():
        return []
    names = [c for c in path.iterdir() if c.name not in SWEEP_BOOKKEEPING]
    if not names:
        return []
    if command not in OUTPUTS:
        raise BadInputError(f"{flag} {path} is a non-empty folder; choose a new or empty folder")
    recorded = _recorded_command(path)
    if recorded is None and (path / "sweep.json").is_file():
        recorded = "sweep"
    if recorded is not None and recorded != command:
        raise BadInputError(f"{flag} {path} holds a flowsim {recorded} run; a {command} run would mix with "
                            f"its files: choose a new or empty folder")
    foreign = [c.name for c in names if c.name not in OUTPUTS[command]
               and not (c.name.startswith(".") and ".tmp" in c.name)]
    if recorded is None or foreign:
        shown = ", ".join(sorted(foreign or [c.name for c in names])[:3])
        raise BadInputError(f"{flag} {path} is a non-empty folder that holds no flowsim {command} run "
                            f"({shown}); choose a new or empty folder")
    return names


def claim_out_dir(path: Path, command: str, flag: str = "--out") -> None:
    """Check, lock and clear ``path`` for a new run of ``command`` (see the module docstring). A sweep
    folder is only locked: the sweep resumes in it and checks it itself."""
    if command == "sweep":
        path.mkdir(parents=True, exist_ok=True)
        lock_dir(path, flag)
        _started[0] = True
        return
    check_reusable(path, command, flag)
    path.mkdir(parents=True, exist_ok=True)
    lock_dir(path, flag)
    for old in check_reusable(path, command, flag):  # again under the lock
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    _started[0] = True
