"""Metrics recorded along trajectories (docs/math.md §2)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .problems import CompletionProblem

METRIC_KEYS = ("loss", "test_error", "test_rmse", "erank", "norm_fro", "norm_nuc", "norm_spec")
#: matrix entries per block of snapshots in :func:`metrics_along` (2²⁰ doubles = 8 MiB per stacked copy)
METRICS_BLOCK_ENTRIES = 2**20


def effective_rank(s: np.ndarray) -> float:
    """erank(W) = exp(−Σ p_i log p_i), p_i = σ_i/Σσ, with 0·log 0 = 0 (RV07;
    docs/math.md §2). NaN for W = 0."""
    s = np.asarray(s, dtype=float)
    total = s.sum()
    if not total > 0:
        return float("nan")
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def matrix_metrics(
    W: np.ndarray, problem: CompletionProblem, s: np.ndarray | None = None
) -> dict[str, float]:
    """Scalar metrics of docs/math.md §2 at W: loss, relative test error, test RMSE,
    erank, norms, det (square)."""
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
    """Arrays of the metrics of :func:`matrix_metrics` plus ``sigma`` (T, min(m, n)) over snapshots.

    Same definitions as :func:`matrix_metrics`, evaluated on blocks of stacked snapshots (one batched SVD
    and one batched determinant per block instead of one Python-level call per snapshot); a block holds at
    most ``METRICS_BLOCK_ENTRIES`` matrix entries, so the extra memory stays bounded for large matrices."""
    m, n = problem.shape
    if len(Ws) == 0:
        out = {k: np.zeros(0) for k in METRIC_KEYS}
        out["sigma"] = np.zeros((0, min(m, n)))
        return out
    step = max(1, METRICS_BLOCK_ENTRIES // (m * n))
    blocks = [_block_metrics(Ws[i:i + step], problem) for i in range(0, len(Ws), step)]
    return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}


def _block_metrics(Ws: Sequence[np.ndarray], problem: CompletionProblem) -> dict[str, np.ndarray]:
    m, n = problem.shape
    T = len(Ws)
    stack = np.asarray(Ws, dtype=float).reshape(T, m, n)
    s = np.linalg.svd(stack, compute_uv=False).reshape(T, min(m, n))
    diff = stack - problem.W_star
    r = (diff * problem.mask).reshape(T, -1)
    out = {"loss": problem.scale * np.einsum("ij,ij->i", r, r) / problem.denominator}
    if problem.has_test_set:
        test = diff[:, problem.test_set]  # Ωᶜ, or the explicit held-out set (ratings)
        num = np.sqrt(np.einsum("ij,ij->i", test, test))
        den = float(np.linalg.norm(problem.W_star[problem.test_set]))
        out["test_error"] = num / den if den > 0 else np.where(num > 0, np.inf, 0.0)
        out["test_rmse"] = num / np.sqrt(test.shape[1])
    else:
        out["test_error"] = out["test_rmse"] = np.full(T, np.nan)
    out["erank"] = np.array([effective_rank(row) for row in s])
    out["norm_fro"] = np.sqrt(np.sum(s**2, axis=1))
    out["norm_nuc"] = np.sum(s, axis=1)
    out["norm_spec"] = s[:, 0] if s.shape[1] else np.zeros(T)
    if m == n:
        out["det"] = np.linalg.det(stack)
    out["sigma"] = s
    return out
