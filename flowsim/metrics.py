"""Metrics recorded along trajectories (SPEC §1.3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .problems import CompletionProblem

METRIC_KEYS = ("loss", "test_error", "test_rmse", "erank", "norm_fro", "norm_nuc", "norm_spec")


def effective_rank(s: np.ndarray) -> float:
    """erank(W) = exp(−Σ p_i log p_i), p_i = σ_i/Σσ, with 0·log 0 = 0 (RV07; SPEC §1.3). NaN for W = 0."""
    s = np.asarray(s, dtype=float)
    total = s.sum()
    if not total > 0:
        return float("nan")
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def matrix_metrics(
    W: np.ndarray, problem: CompletionProblem, s: np.ndarray | None = None
) -> dict[str, float]:
    """Scalar metrics of SPEC §1.3 at W: loss, relative test error, test RMSE, erank, norms, det (square)."""
    if s is None:
        s = np.linalg.svd(W, compute_uv=False)
    rel, rmse = problem.test_errors(W)
    out = {
        "loss": problem.loss(W), "test_error": rel, "test_rmse": rmse, "erank": effective_rank(s),
        "norm_fro": float(np.sqrt(np.sum(s**2))), "norm_nuc": float(np.sum(s)),
        "norm_spec": float(s[0]) if s.size else 0.0,
    }
    if W.shape[0] == W.shape[1]:
        out["det"] = float(np.linalg.det(W))
    return out


def metrics_along(Ws: Sequence[np.ndarray], problem: CompletionProblem) -> dict[str, np.ndarray]:
    """Arrays of the metrics of :func:`matrix_metrics` plus ``sigma`` (T, min(m, n)) over snapshots."""
    sig, rows = [], []
    for W in Ws:
        s = np.linalg.svd(W, compute_uv=False)
        sig.append(s)
        rows.append(matrix_metrics(W, problem, s))
    keys = rows[0].keys() if rows else METRIC_KEYS
    out = {k: np.array([r[k] for r in rows], dtype=float) for k in keys}
    out["sigma"] = np.array(sig, dtype=float).reshape(len(sig), min(problem.shape))
    return out
