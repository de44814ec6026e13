"""Initial layer factors (docs/math.md §13).

* ``identity``: W_j = α^{1/N} I (rectangular identities, hidden width min(m, n)); end product αI. Balanced.
* ``gaussian``: per-layer i.i.d. N(0, std²) with std = α^{1/N}/√n (ACHL19 public code), so that the end
  product has ‖W‖_F ≈ α√n. Not balanced: the end-product model is then only an approximation.
* ``balanced-gaussian``: a Gaussian end product W0 with i.i.d. N(0, α²/n) entries (‖W0‖_F ≈ α√m), split
  by the canonical balanced factorization (docs/math.md §1). Exact for the end-product flow.

Hidden widths are min(m, n) unless ``width`` is given (identity and gaussian only). Random draws use
``numpy.random.default_rng([seed, 1])`` (the problem uses stream ``[seed, 0]``).
"""

from __future__ import annotations

import numpy as np

from .errors import BadInputError
from .factors import canonical_balanced_factors

INIT_NAMES = ("identity", "gaussian", "balanced-gaussian")


def init_rng(seed: int) -> np.random.Generator:
    """The generator used for initializations: ``default_rng([seed, 1])``."""
    return np.random.default_rng([int(seed), 1])


def _dims(shape: tuple[int, int], depth: int, width: int | None) -> list[int]:
    m, n = shape
    h = min(m, n) if width is None else int(width)
    return [n, *([h] * (depth - 1)), m]


def init_factors(
    kind: str, shape: tuple[int, int], depth: int, scale: float, seed: int = 0, width: int | None = None
) -> list[np.ndarray]:
    """Initial factors [W_1, …, W_N] for an m×n end product (docs/math.md §13). See the module docstring."""
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise BadInputError(f"--depth must be an integer ≥ 1, got {depth!r}")
    if not (np.isfinite(scale) and scale >= 0):
        raise BadInputError(f"--init-scale must be a finite number ≥ 0, got {scale!r}")
    if width is not None and width < 1:
        raise BadInputError(f"hidden width must be ≥ 1, got {width!r}")
    m, n = shape
    if kind == "identity":
        a = scale ** (1.0 / depth)
        dims = _dims(shape, depth, width)
        return [a * np.eye(dims[j + 1], dims[j]) for j in range(depth)]
    if kind == "gaussian":
        rng = init_rng(seed)
        dims = _dims(shape, depth, width)
        std = scale ** (1.0 / depth) / np.sqrt(n)
        return [std * rng.standard_normal((dims[j + 1], dims[j])) for j in range(depth)]
    if kind == "balanced-gaussian":
        if width is not None and width != min(m, n):
            raise BadInputError("balanced-gaussian factors have hidden width min(m, n)")
        rng = init_rng(seed)
        W0 = (scale / np.sqrt(n)) * rng.standard_normal((m, n))
        return canonical_balanced_factors(W0, depth)
    raise BadInputError(f"--init must be one of {'|'.join(INIT_NAMES)}, got {kind!r}")
