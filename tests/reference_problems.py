"""The reference completion problems of the test suite, defined once.

Synthetic instances of docs/math.md §2 (``synthetic_problem``: a ground truth of the given rank and
``observed`` entries of the mask, both drawn with ``seed``). Tests take them as the fixtures of the same
names (tests/conftest.py); a module that needs one at import time (a module-level constant) calls the
function here.
"""

from __future__ import annotations

from flowsim.problems import CompletionProblem, synthetic_problem


def small_problem() -> CompletionProblem:
    """The README's reference problem: 10×10, rank 2, 60 observed entries, seed 0."""
    return synthetic_problem(10, 10, rank=2, observed=60, seed=0)


def rank1_problem() -> CompletionProblem:
    """10×10, rank 1, 50 observed entries, seed 0."""
    return synthetic_problem(10, 10, rank=1, observed=50, seed=0)


def square_problem() -> CompletionProblem:
    """8×8, rank 2, 30 observed entries, seed 1."""
    return synthetic_problem(8, 8, rank=2, observed=30, seed=1)


def rect_problem(seed: int = 3) -> CompletionProblem:
    """A non-square problem: 8×6, rank 2, 30 observed entries, seed 3 (other seeds: a batch of its kind)."""
    return synthetic_problem(8, 6, rank=2, observed=30, seed=seed)


def tiny_problem() -> CompletionProblem:
    """5×5, rank 1, 15 observed entries, seed 0: for runs where only the code path matters."""
    return synthetic_problem(5, 5, rank=1, observed=15, seed=0)


def reproduction_protocol(
    size: int = 8, rank: int = 1, observed: int = 30, *, max_iters: int = 200, window: int = 100,
    rtol: float = 1e-5, optimizers: tuple[str, ...] = ("adam", "gd"), extra_stopping: str = "",
) -> str:
    """A small protocol file of the reproduction scripts (experiments/table1/run.py; configs/table1.toml's
    layout): two seeds, the ratio penalty and none at depths 1 and 3, selection runs of 100 iterations."""
    grids = {"adam": "[1e-3, 1e-2]", "gd": "[0.5, 2.0]"}
    return "\n".join([
        "[problem]", f"size = {size}", f"rank = {rank}", f"observed = {observed}", 'init = "gaussian"',
        "init_scale = 1e-3",
        "[protocol]", "seeds = [0, 1]", "val_fraction = 0.2", 'lam = { "1" = 1e-2, "3" = 1e-4 }',
        "[stopping]", f"max_iters = {max_iters}", f"check_every = {50 if max_iters < 1000 else 500}",
        f"window = {window}", f"rtol = {rtol}", *([extra_stopping] if extra_stopping else []),
        "[selection]", "max_iters = 100", "check_every = 50", "window = 50", "rtol = 1e-4",
        "[lr_grid]", *(f"{o} = {grids[o]}" for o in optimizers),
        "[grid]", "optimizers = [" + ", ".join(f'"{o}"' for o in optimizers) + "]", "depths = [1, 3]",
        'penalties = ["ratio", "none"]', "",
    ])
