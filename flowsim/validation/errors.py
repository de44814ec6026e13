"""Errors between a discrete run and a flow at common times, and the convergence order (docs/math.md §11).

e_σ = max_k max_i |σ_i^{disc}(t_k) − σ_i^{flow}(t_k)| / σ_1^{flow}(t_k),
e_W = max_k ‖W^{disc}(t_k) − W^{flow}(t_k)‖_F / ‖W^{flow}(t_k)‖_F,
gaps: max_k |erank^{disc}(t_k) − erank^{flow}(t_k)| and the same for the relative test error;
convergence order: the least-squares slope of log e against log η.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sigma_errors(sigma_disc: np.ndarray, sigma_flow: np.ndarray) -> np.ndarray:
    """Per time: max_i |σ_i^{disc} − σ_i^{flow}| / σ_1^{flow} (docs/math.md §11). Arrays (T, r) → (T,)."""
    sd, sf = np.asarray(sigma_disc, dtype=float), np.asarray(sigma_flow, dtype=float)
    return np.max(np.abs(sd - sf), axis=1) / sf[:, 0]


def matrix_errors(W_disc: np.ndarray, W_flow: np.ndarray) -> np.ndarray:
    """Per time: ‖W^{disc} − W^{flow}‖_F / ‖W^{flow}‖_F (docs/math.md §11). Arrays (T, m, n) → (T,)."""
    Wd, Wf = np.asarray(W_disc, dtype=float), np.asarray(W_flow, dtype=float)
    return np.linalg.norm(Wd - Wf, axis=(1, 2)) / np.linalg.norm(Wf, axis=(1, 2))


def max_gap(a: np.ndarray, b: np.ndarray) -> float:
    """max_k |a_k − b_k|; NaN when the quantity is undefined (e.g. no test set)."""
    d = np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    return float(np.max(d)) if d.size and np.all(np.isfinite(d)) else float("nan")


def fit_loglog_slope(lrs: Sequence[float], errors: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line log e = slope·log η + intercept over the finite, positive
    errors; (NaN, NaN) with fewer than two such points."""
    x, y = np.asarray(lrs, dtype=float), np.asarray(errors, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)
