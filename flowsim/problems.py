"""Matrix-completion problems and their loss (docs/math.md §2).

Loss (docs/math.md §2; ACHL19 public code, Zhao22 Eq. 1 up to the reduction):

    ℓ(W) = c · Σ_{(i,j)∈Ω} (W_ij − W*_ij)² / D,     D = |Ω| ("mean") or 1 ("sum"),
    ∇ℓ(W) = (2c/D) · P_Ω(W − W*).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadInputError

REDUCTIONS = ("mean", "sum")


@dataclass(frozen=True)
class CompletionProblem:
    """A matrix-completion problem: ground truth ``W_star`` (m×n), boolean ``mask`` of observed entries Ω.

    ``reduction`` is ``"mean"`` (divide by |Ω|, the default of the papers' public code) or ``"sum"``;
    ``scale`` is the constant c in front of the squared error (docs/math.md §2).
    ``test_mask`` (optional) is an explicit test set T, disjoint from Ω, for data whose entries outside
    Ω ∪ T are unknown (held-out ratings); without it the test set is every unobserved entry, Ωᶜ.
    """

    W_star: np.ndarray
    mask: np.ndarray
    reduction: str = "mean"
    scale: float = 1.0
    description: dict = field(default_factory=dict, compare=False)
    test_mask: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        W_star = np.asarray(self.W_star, dtype=float)
        mask = np.asarray(self.mask, dtype=bool)
        if W_star.ndim != 2:
            raise BadInputError(f"W* must be a 2-D matrix, got shape {W_star.shape}")
        if mask.shape != W_star.shape:
            raise BadInputError(f"mask shape {mask.shape} does not match W* shape {W_star.shape}")
        if not np.all(np.isfinite(W_star)):
            raise BadInputError("W* contains NaN or inf")
        if not mask.any():
            raise BadInputError("the mask has no observed entry")
        if self.reduction not in REDUCTIONS:
            raise BadInputError(f"--reduction must be one of {'|'.join(REDUCTIONS)}, got {self.reduction!r}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise BadInputError(f"loss scale c must be positive, got {self.scale}")
        if self.test_mask is not None:
            test_mask = np.asarray(self.test_mask, dtype=bool)
            if test_mask.shape != W_star.shape:
                raise BadInputError(
                    f"test mask shape {test_mask.shape} does not match W* shape {W_star.shape}")
            if np.any(test_mask & mask):
                raise BadInputError("the test set and the observed entries overlap")
            object.__setattr__(self, "test_mask", test_mask)
        object.__setattr__(self, "W_star", W_star)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "_weight", mask.astype(float))
        object.__setattr__(self, "_n_observed", int(mask.sum()))  # read by every loss gradient

    @property
    def shape(self) -> tuple[int, int]:
        """(m, n)."""
        return self.W_star.shape

    @property
    def n_observed(self) -> int:
        """|Ω|."""
        return self._n_observed  # type: ignore[attr-defined]

    @property
    def denominator(self) -> float:
        """D = |Ω| for "mean", 1 for "sum"."""
        return float(self.n_observed) if self.reduction == "mean" else 1.0

    @property
    def test_set(self) -> np.ndarray:
        """The boolean test set: the explicit ``test_mask`` T when given, else Ωᶜ."""
        return ~self.mask if self.test_mask is None else self.test_mask

    @property
    def test_set_kind(self) -> str:
        """Which entries the test metrics use: ``"held-out"`` (explicit T) or ``"unobserved"`` (Ωᶜ)."""
        return "unobserved" if self.test_mask is None else "held-out"

    @property
    def has_test_set(self) -> bool:
        """True when the test set (T, else Ωᶜ) is non-empty."""
        return bool(self.test_set.any())

    def residual(self, W: np.ndarray) -> np.ndarray:
        """P_Ω(W − W*)."""
        return self._weight * (W - self.W_star)  # type: ignore[attr-defined]

    def loss(self, W: np.ndarray) -> float:
        """ℓ(W) = c Σ_Ω (W_ij − W*_ij)² / D (docs/math.md §2)."""
        r = self.residual(W)
        return float(self.scale * np.vdot(r, r) / self.denominator)

    def grad(self, W: np.ndarray) -> np.ndarray:
        """∇ℓ(W) = (2c/D) P_Ω(W − W*) (docs/math.md §2)."""
        return (2.0 * self.scale / self.denominator) * self.residual(W)

    def test_errors(self, W: np.ndarray) -> tuple[float, float]:
        """(relative test error ‖P_T(W − W*)‖_F/‖P_T(W*)‖_F, RMSE over T) with T = Ωᶜ, or the
        explicit ``test_mask`` when given (held-out ratings: the RMSE is then Zhao22's Table 2 metric).

        Both are NaN when the test set is empty (every entry observed, no explicit test set).
        """
        if not self.has_test_set:
            return float("nan"), float("nan")
        test = self.test_set
        diff = (W - self.W_star)[test]
        num = float(np.linalg.norm(diff))
        den = float(np.linalg.norm(self.W_star[test]))
        rel = num / den if den > 0 else float("inf") if num > 0 else 0.0
        return rel, num / np.sqrt(diff.size)


def ground_truth(m: int, n: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """W* = A Bᵀ/√r with A, B i.i.d. N(0, 1), rescaled so ‖W*‖_F = √(mn) (RMS entry 1; docs/math.md §2)."""
    A = rng.standard_normal((m, rank))
    B = rng.standard_normal((n, rank))
    W = A @ B.T / np.sqrt(rank)
    return W * (np.sqrt(m * n) / np.linalg.norm(W))


def random_mask(m: int, n: int, observed: int, rng: np.random.Generator) -> np.ndarray:
    """Ω: ``observed`` entries drawn uniformly without replacement (flat row-major index; docs/math.md §2)."""
    idx = rng.choice(m * n, size=observed, replace=False)
    mask = np.zeros(m * n, dtype=bool)
    mask[idx] = True
    return mask.reshape(m, n)


def validate_problem_sizes(m: int, n: int, rank: int, observed: int | None) -> None:
    """Raise :class:`BadInputError` for sizes that define no valid problem."""
    for name, v in (("--size", m), ("--size", n)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise BadInputError(f"{name} must be positive integers M or MxN, got {v!r}")
    if not isinstance(rank, (int, np.integer)) or not 1 <= rank <= min(m, n):
        raise BadInputError(f"--rank must be an integer in [1, min(m, n) = {min(m, n)}], got {rank!r}")
    if observed is not None and (not isinstance(observed, (int, np.integer)) or not 1 <= observed <= m * n):
        raise BadInputError(f"--observed must be an integer in [1, m*n = {m * n}] or 'all', got {observed!r}")


def synthetic_problem(
    m: int = 100,
    n: int = 100,
    rank: int = 5,
    observed: int | None = 2000,
    seed: int = 0,
    reduction: str = "mean",
    scale: float = 1.0,
) -> CompletionProblem:
    """The papers' synthetic completion problem (docs/math.md §2, defaults of ACHL19/Zhao22).

    ``observed=None`` observes every entry (full observation). The ground truth and the mask are drawn
    from ``numpy.random.default_rng([seed, 0])`` (the initialization uses stream ``[seed, 1]``).
    """
    validate_problem_sizes(m, n, rank, observed)
    rng = np.random.default_rng([int(seed), 0])
    W_star = ground_truth(m, n, rank, rng)
    mask = np.ones((m, n), dtype=bool) if observed is None else random_mask(m, n, observed, rng)
    desc = {"kind": "synthetic", "m": m, "n": n, "rank": rank,
            "observed": "all" if observed is None else int(observed), "seed": int(seed)}
    return CompletionProblem(W_star, mask, reduction, scale, desc)


def full_observation_problem(
    W_star: np.ndarray, reduction: str = "sum", scale: float = 0.5
) -> CompletionProblem:
    """Every entry observed; with the defaults the loss is ½‖W − W*‖_F²
    (docs/math.md §12 analytic setting)."""
    W_star = np.asarray(W_star, dtype=float)
    return CompletionProblem(W_star, np.ones(W_star.shape, dtype=bool), reduction, scale, {"kind": "full"})


def _load_npy(path: str | Path, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{what} file not found: {p}")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any loader error is bad input
        raise BadInputError(f"{what} file {p} is not a readable .npy array ({type(exc).__name__})") from None
    if not isinstance(arr, np.ndarray):
        raise BadInputError(f"{what} file {p} must hold a single array (.npy), not an archive")
    return arr


def problem_from_files(
    w_star_path: str | Path, mask_path: str | Path | None = None, reduction: str = "mean", scale: float = 1.0
) -> CompletionProblem:
    """A user-supplied problem: W* from a 2-D float ``.npy``; mask from a 2-D bool (or 0/1) ``.npy``.

    Without a mask every entry is observed. Shapes, dtypes, NaN/inf and an empty mask are checked.
    """
    W = _load_npy(w_star_path, "--w-star")
    if W.ndim != 2 or 0 in W.shape:
        raise BadInputError(f"--w-star must hold a non-empty 2-D matrix, got shape {W.shape}")
    if not (np.issubdtype(W.dtype, np.floating) or np.issubdtype(W.dtype, np.integer)):
        raise BadInputError(f"--w-star must hold real numbers, got dtype {W.dtype}")
    if not np.all(np.isfinite(W)):
        raise BadInputError("--w-star contains NaN or inf")
    if mask_path is None:
        mask = np.ones(W.shape, dtype=bool)
    else:
        M = _load_npy(mask_path, "--mask")
        if M.shape != W.shape:
            raise BadInputError(f"--mask shape {M.shape} does not match --w-star shape {W.shape}")
        if M.dtype == bool:
            mask = M
        elif np.issubdtype(M.dtype, np.number) and np.all(np.isin(M, (0, 1))):
            mask = M.astype(bool)
        else:
            raise BadInputError(f"--mask must be boolean or 0/1, got dtype {M.dtype}")
        if not mask.any():
            raise BadInputError("--mask has no observed entry")
    desc = {"kind": "files", "w_star": str(w_star_path),
            "mask": None if mask_path is None else str(mask_path)}
    return CompletionProblem(W.astype(float), mask, reduction, scale, desc)
