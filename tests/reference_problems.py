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
