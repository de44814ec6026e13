"""Ratings data as a completion problem with an explicit test set (Zhao22 Sec. 5.2, Table 2 protocol).

A ratings file is a list of (user, item, rating) triplets: MovieLens ``u.data`` (tab-separated user, item,
rating, timestamp), or plain CSV/TSV triplets with an optional header line. Users and items are relabelled
0…U−1 and 0…I−1 in the order of their first appearance. The observed ratings are split at random into a
training set Ω and a test set T (``test_fraction`` of the ratings, seeded); the problem's "ground truth"
holds the known ratings on Ω ∪ T and 0 elsewhere, its mask is Ω and its ``test_mask`` is T, so the test
metrics are computed on the held-out ratings only:

    test RMSE = ( Σ_{(i,j)∈T} (W_ij − r_ij)² / |T| )^{1/2}          (Zhao22 Table 2 metric)

``block=(u, i)`` keeps the u users and i items with the most ratings (a CPU-sized sub-problem) before the
split.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInputError
from .problems import CompletionProblem


@dataclass(frozen=True)
class Ratings:
    """Triplets with 0-based user and item indices; ``users``/``items`` give the original labels."""

    user: np.ndarray  # (R,) int
    item: np.ndarray  # (R,) int
    rating: np.ndarray  # (R,) float
    users: tuple[str, ...]
    items: tuple[str, ...]
    source: str

    @property
    def shape(self) -> tuple[int, int]:
        """(number of users, number of items)."""
        return len(self.users), len(self.items)

    def __len__(self) -> int:
        return int(self.rating.size)


def _rows(text: str, path: Path) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise BadInputError(f"ratings file {path} has no rating")
    first = lines[0]
    delim = "\t" if "\t" in first else "," if "," in first else None
    if delim is None:
        return [ln.split() for ln in lines]
    return [[c.strip() for c in row] for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delim)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_ratings(path: str | Path) -> Ratings:
    """Read (user, item, rating[, timestamp]) triplets from MovieLens ``u.data`` or a CSV/TSV file.

    The delimiter is a tab, a comma or whitespace (from the first line); a first line whose rating field is
    not a number is a header. Every line needs 3 or 4 fields and a finite rating; a duplicated
    (user, item) pair, a file with no rating or an unreadable file is bad input (one clear line).
    """
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"ratings file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"ratings file {p} is not readable text ({type(exc).__name__})") from None
    rows = _rows(text, p)
    if len(rows[0]) >= 3 and not _is_number(rows[0][2]):
        rows = rows[1:]
    if not rows:
        raise BadInputError(f"ratings file {p} has a header and no rating")
    user_ix: dict[str, int] = {}
    item_ix: dict[str, int] = {}
    u, i, r = [], [], []
    for line_no, row in enumerate(rows, start=1):
        if len(row) not in (3, 4):
            raise BadInputError(f"ratings file {p}: rating {line_no} has {len(row)} fields, expected "
                                "user, item, rating[, timestamp]")
        try:
            value = float(row[2])
        except ValueError:
            raise BadInputError(f"ratings file {p}: rating {line_no} is not a number: {row[2]!r}") from None
        if not np.isfinite(value):
            raise BadInputError(f"ratings file {p}: rating {line_no} is not finite: {row[2]!r}")
        u.append(user_ix.setdefault(row[0], len(user_ix)))
        i.append(item_ix.setdefault(row[1], len(item_ix)))
        r.append(value)
    user, item = np.array(u, dtype=np.int64), np.array(i, dtype=np.int64)
    flat = user * len(item_ix) + item
    uniq, counts = np.unique(flat, return_counts=True)
    if uniq.size != flat.size:
        dup = int(uniq[np.argmax(counts > 1)])
        who = list(user_ix)[dup // len(item_ix)], list(item_ix)[dup % len(item_ix)]
        raise BadInputError(f"ratings file {p}: user {who[0]} rates item {who[1]} more than once")
    return Ratings(user, item, np.array(r, dtype=float), tuple(user_ix), tuple(item_ix), str(p))


def top_block(data: Ratings, n_users: int, n_items: int) -> Ratings:
    """The ratings among the ``n_users`` users and ``n_items`` items with the most ratings (ties: first
    seen), relabelled 0…n−1 in that order."""
    U, I = data.shape
    if not (1 <= n_users and 1 <= n_items):
        raise BadInputError(f"the block must be at least 1×1, got {n_users}×{n_items}")
    n_users, n_items = min(n_users, U), min(n_items, I)
    top_u = np.argsort(-np.bincount(data.user, minlength=U), kind="stable")[:n_users]
    top_i = np.argsort(-np.bincount(data.item, minlength=I), kind="stable")[:n_items]
    new_u = np.full(U, -1)
    new_u[top_u] = np.arange(n_users)
    new_i = np.full(I, -1)
    new_i[top_i] = np.arange(n_items)
    keep = (new_u[data.user] >= 0) & (new_i[data.item] >= 0)
    if not keep.any():
        raise BadInputError(f"the {n_users}×{n_items} block of {data.source} holds no rating")
    return Ratings(new_u[data.user[keep]], new_i[data.item[keep]], data.rating[keep],
                   tuple(data.users[k] for k in top_u), tuple(data.items[k] for k in top_i), data.source)


def split_ratings(n_ratings: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) of a seeded random split: round(test_fraction · R) ratings are held
    out, drawn without replacement from ``default_rng([seed, 2])``; both parts are sorted and disjoint."""
    if not 0 < test_fraction < 1:
        raise BadInputError(f"--test-fraction must lie in (0, 1), got {test_fraction!r}")
    n_test = int(round(test_fraction * n_ratings))
    if n_test < 1 or n_test >= n_ratings:
        raise BadInputError(f"--test-fraction {test_fraction} of {n_ratings} ratings leaves no training or "
                            "no test rating")
    perm = np.random.default_rng([int(seed), 2]).permutation(n_ratings)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def ratings_problem(
    path: str | Path,
    test_fraction: float = 0.1,
    seed: int = 0,
    *,
    block: tuple[int, int] | None = None,
    reduction: str = "mean",
    scale: float = 1.0,
) -> CompletionProblem:
    """The completion problem of a ratings file: W* holds the ratings (0 where unknown), Ω the training
    ratings and ``test_mask`` the held-out ones (:func:`split_ratings`); ``block`` restricts it first
    (:func:`top_block`)."""
    data = load_ratings(path)
    if block is not None:
        data = top_block(data, *block)
    train, test = split_ratings(len(data), test_fraction, seed)
    W = np.zeros(data.shape)
    W[data.user, data.item] = data.rating
    mask = np.zeros(data.shape, dtype=bool)
    mask[data.user[train], data.item[train]] = True
    test_mask = np.zeros(data.shape, dtype=bool)
    test_mask[data.user[test], data.item[test]] = True
    desc = {"kind": "ratings", "path": str(path), "users": data.shape[0], "items": data.shape[1],
            "ratings": len(data), "train": int(train.size), "test": int(test.size),
            "test_fraction": float(test_fraction), "split_seed": int(seed),
            "block": None if block is None else list(block),
            "test_metric": "test_rmse over the held-out ratings (explicit test set)"}
    return CompletionProblem(W, mask, reduction, scale, desc, test_mask=test_mask)


def parse_data_spec(spec: str) -> Path:
    """The path of ``ratings:PATH`` (the only data kind so far)."""
    kind, sep, rest = spec.partition(":")
    if kind != "ratings" or not sep or not rest:
        raise BadInputError(f"--data must be ratings:PATH, got {spec!r}")
    return Path(rest)


def write_synthetic_ratings(
    path: str | Path, users: int = 60, items: int = 80, rank: int = 3, density: float = 0.2,
    noise: float = 0.3, seed: int = 0,
) -> Path:
    """A MovieLens-format file (``user<TAB>item<TAB>rating<TAB>timestamp``, 1-based ids) of a synthetic
    low-rank + noise matrix: X = 3 + A Bᵀ/√r + noise·N(0, 1), A, B i.i.d. N(0, 1), rounded and clipped to
    1–5; ``density`` of the entries are rated (uniformly, every user and item at least once when possible).
    """
    rng = np.random.default_rng([int(seed), 4])
    A, B = rng.standard_normal((users, rank)), rng.standard_normal((items, rank))
    X = np.clip(np.round(3.0 + A @ B.T / np.sqrt(rank) + noise * rng.standard_normal((users, items))), 1, 5)
    rated = rng.random((users, items)) < density
    rated[np.arange(users), rng.integers(0, items, users)] = True
    rated[rng.integers(0, users, items), np.arange(items)] = True
    u, i = np.nonzero(rated)
    lines = [f"{a + 1}\t{b + 1}\t{int(X[a, b])}\t{874965758 + 17 * k}" for k, (a, b) in enumerate(zip(u, i))]
    from .io import atomic_write_bytes

    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return Path(path)
