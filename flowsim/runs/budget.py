"""Bounded work: every size, count and horizon is checked against an estimate before any work starts.

Beyond a limit the command stops with bad input (exit 2) and the estimate in the message; ``--allow-large``
lifts the soft limits for those who mean it. Hard limits (numbers the code cannot represent exactly, such as
iteration counts beyond 2⁵³) hold always.
"""

from __future__ import annotations

import math
import os
import sys

from ..errors import BadInputError

#: soft limits (``--allow-large`` lifts them)
MAX_DEPTH = 10_000  # layers: a velocity evaluation loops over them in Python
MAX_SAVED = 1_000_000  # saved/recorded times: one SVD each for the metrics
MAX_ITERATIONS = 100_000_000  # discrete steps of one run
MAX_SVD_FLOPS = 8e9  # m·n·min(m, n) of one SVD (2000×2000); the flows need one per velocity evaluation
#: horizon of a flow: once the state has converged, explicit solvers still take steps in proportion to t_end
#: (measured: 263,168 DOP853 steps to reach t = 1.7e6 on a 6×6 depth-2 problem, and counting)
MAX_HORIZON = 1e8
#: hard limit: integers above 2⁵³ are not exact in float64 (times t_k = kη, record grids)
MAX_EXACT_INT = 2**53
#: SVD flops above which ``simulate``/``train`` say that the set-up may take a while
SLOW_SETUP_FLOPS = 1e9
FLOAT = 8


def memory_limit() -> float:
    """Bytes a run may plan to hold: half the physical memory (inf where the platform does not say)."""
    try:
        return 0.5 * float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return math.inf


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g} GB"


def _refuse(what: str, estimate: str, limit: str) -> BadInputError:
    return BadInputError(f"{what} needs {estimate} (limit {limit}); pass --allow-large to run it anyway")


def check_memory(what: str, nbytes: float, allow: bool) -> None:
    """Refuse a plan that would hold more than :func:`memory_limit` bytes (always when it exceeds the whole
    physical memory)."""
    limit = memory_limit()
    if nbytes > 2 * limit:
        raise BadInputError(f"{what} does not fit in memory: it needs about {_gb(nbytes)}, more than this "
                            f"machine has ({_gb(2 * limit)})")
    if nbytes > limit and not allow:
        raise _refuse(what, f"about {_gb(nbytes)} of memory", f"{_gb(limit)}, half the physical memory")


def check_count(what: str, n: float, limit: float, allow: bool, unit: str) -> None:
    """Refuse a count beyond its soft ``limit`` (always beyond :data:`MAX_EXACT_INT`)."""
    text = f"{n:.3g}" if n < 1e300 else "more than 1e300"
    if n > MAX_EXACT_INT:
        raise BadInputError(f"{what}: {text} {unit} is beyond 2^53 = {MAX_EXACT_INT:.3g}, where integers "
                            f"are no longer exact in float64")
    if n > limit and not allow:
        raise _refuse(what, f"{text} {unit}", f"{limit:.3g}")


def factor_floats(shape: tuple[int, int], depth: int) -> float:
    """Entries of the layer factors [n, h, …, h, m] with hidden width h = min(m, n)."""
    m, n = shape
    h = min(m, n)
    return float(h * n + m * h + max(depth - 2, 0) * h * h) if depth >= 2 else float(m * n)


def check_model(shape: tuple[int, int], depth: int, allow: bool, problem: str | None = None) -> None:
    """Depth, the factors' memory and the SVD cost of one velocity evaluation (``problem`` names the
    problem in messages; default ``--size MxN``)."""
    m, n = shape
    check_count("--depth", depth, MAX_DEPTH, allow, "layers")
    check_memory(f"{problem or f'--size {m}x{n}'} with --depth {depth} (the layer factors and their work "
                 f"copies)", 4 * FLOAT * factor_floats(shape, depth), allow)
    flops = float(m) * n * min(m, n)
    if flops > MAX_SVD_FLOPS and not allow:
        raise _refuse(f"--size {m}x{n}", f"about {flops:.2g} flops per SVD, one per velocity evaluation "
                      f"(hours for a run)", f"{MAX_SVD_FLOPS:.2g}, a 2000×2000 matrix")


def check_saved(flag: str, n_save: int, shape: tuple[int, int], state_floats: float, save_matrices: bool,
                allow: bool) -> None:
    """Saved times: their count and the memory of the states and metrics kept at each."""
    m, n = shape
    check_count(flag, n_save, MAX_SAVED, allow, "saved times (one SVD each)")
    per = state_floats + m * n + min(m, n) + 16 + (m * n if save_matrices else 0)
    check_memory(f"{flag} {n_save} (the saved states and metrics)", FLOAT * n_save * per, allow)


def note_slow_setup(shape: tuple[int, int], quiet: bool) -> None:
    """Say on stderr that a large problem's set-up (random low-rank W*, SVDs) takes a while."""
    m, n = shape
    flops = float(m) * n * min(m, n)
    if not quiet and flops > SLOW_SETUP_FLOPS:
        print(f"preparing a {m}×{n} problem: about {flops:.2g} flops per SVD, this may take a while ...",
              file=sys.stderr, flush=True)


def check_horizon(t_end: float, allow: bool) -> None:
    """Refuse a flow horizon beyond :data:`MAX_HORIZON` (the solver's steps grow with it)."""
    if t_end > MAX_HORIZON and not allow:
        raise _refuse(f"--t-end {t_end:g}", "solver steps in proportion to the horizon once the state has "
                      "converged (263,168 DOP853 steps to t = 1.7e6 on a 6×6 problem)", f"{MAX_HORIZON:g}")
