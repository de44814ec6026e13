"""Helpers shared by the bench/ scripts: BLAS thread setting, timing, the machine-load line, tables.

Import this module *before* numpy/torch: it pins the BLAS thread pools to ``FLOWSIM_BENCH_THREADS``
(default 1) unless the usual variables are already set. On a shared, loaded machine a multi-threaded
OpenBLAS spins against other processes and a 100×100 SVD becomes 10–40× slower (measured here: 4–6 ms with
one thread against 57–194 ms with two under a load of 8 on 2 cores); with one thread both sides of every
ratio run under the same, reproducible conditions.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

THREADS = os.environ.get("FLOWSIM_BENCH_THREADS", "1")
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)


def set_torch_threads() -> None:
    """Give torch the same number of intra-op threads as the BLAS pools."""
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def load_line() -> str:
    """'load 1/5/15 min: a, b, c on K cores' — printed with every table (timings under load are inflated)."""
    try:
        la = os.getloadavg()
        return f"load {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} cores"
    except OSError:  # pragma: no cover - not on every platform
        return f"load unknown on {os.cpu_count()} cores"


def header(title: str) -> str:
    """Title, command, versions, threads and load."""
    import numpy as np

    return "\n".join([
        f"# {title}",
        f"# command: python {' '.join(sys.argv)}",
        f"# python {platform.python_version()}, numpy {np.__version__}, BLAS threads "
        f"{os.environ.get('OPENBLAS_NUM_THREADS')}, {load_line()}",
    ])


def median_time(fn: Callable[[], object], repeat: int = 5, min_time: float = 0.2) -> float:
    """Median over ``repeat`` rounds of the mean wall time per call (s); each round runs ``fn`` enough
    times to last about ``min_time`` seconds."""
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(min_time / once))
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - t0) / number)
    return statistics.median(rounds)


def paired_times(fns: list[Callable[[], object]], repeat: int = 7, min_time: float = 0.1) -> list[float]:
    """Median time per call of each of ``fns``, measured in interleaved rounds (f1, f2, …, f1, f2, …) so
    that a drift of the machine load affects every side of a ratio alike."""
    numbers = []
    for fn in fns:
        t0 = time.perf_counter()
        fn()
        numbers.append(max(1, int(min_time / max(time.perf_counter() - t0, 1e-7))))
    rounds: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, (fn, number) in enumerate(zip(fns, numbers)):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            rounds[i].append((time.perf_counter() - t0) / number)
    return [statistics.median(r) for r in rounds]


def wall(fn: Callable[[], object]) -> tuple[float, object]:
    """(wall time in s, result) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def table(rows: list[tuple], headers: tuple[str, ...]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(x) for x in r) + " |")
    return "\n".join(lines)


def _fmt(x: object) -> str:
    if isinstance(x, float):
        if x != x:
            return "—"
        return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"
    return str(x)
