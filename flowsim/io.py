"""Atomic file writes, run metadata (``run.json``) and package versions (docs/contract.md §2)."""

from __future__ import annotations

import contextlib
import contextvars
import csv
import io
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

VERSIONED_PACKAGES = ("flowsim", "numpy", "scipy", "sympy", "torch", "matplotlib")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename.

    A crash (even SIGKILL) at any moment leaves either the previous file or the complete new one,
    never a truncated file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return repr(obj)  # complex numbers and other objects: their text, never a lost file


def _finite_or_str(obj: Any) -> Any:
    """Replace non-finite floats by the strings 'nan'/'inf'/'-inf' so the JSON stays standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, np.floating) and not np.isfinite(obj):
        return str(float(obj))
    if isinstance(obj, Mapping):
        return {str(k): _finite_or_str(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_str(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_finite_or_str(v) for v in obj), key=repr)
    if isinstance(obj, (complex, np.complexfloating)):
        return repr(complex(obj))
    if isinstance(obj, np.ndarray):
        return [_finite_or_str(v) for v in obj.tolist()]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically; NaN/inf become strings."""
    text = json.dumps(_finite_or_str(obj), indent=2, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def atomic_write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows (dicts) as CSV, columns in first-seen order, written atomically."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def atomic_savez(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Save arrays as an uncompressed ``.npz`` atomically."""
    buf = io.BytesIO()
    # numpy's stub lets ``**`` fill ``allow_pickle``: every key here is an array name
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    atomic_write_bytes(path, buf.getvalue())


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a run's numbers depend on (without importing them)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


#: the command line a run function records (its spec's), set by :func:`recorded_command_line`
_RECORDED: contextvars.ContextVar[str | None] = contextvars.ContextVar("flowsim_command_line", default=None)


@contextlib.contextmanager
def recorded_command_line(text: str) -> Iterator[None]:
    """Within the block, :func:`command_line` returns ``text`` (the command line of the run spec being run,
    e.g. ``flowsim train --lr 0.1 --out DIR --quiet`` for a sweep point) instead of this process's."""
    token = _RECORDED.set(text)
    try:
        yield
    finally:
        _RECORDED.reset(token)


def command_line() -> str:
    """The command line recorded in ``run.json``: the running spec's (:func:`recorded_command_line`), else
    this process's."""
    recorded = _RECORDED.get()
    if recorded is not None:
        return recorded
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
