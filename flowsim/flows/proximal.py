"""Proximal gradient descent on ℓ + λR at depth 1: the discrete scheme whose η → 0 limit is the Filippov
(minimal-norm-subgradient) flow of :mod:`flowsim.flows.filippov`, and the reference it is tested against
(docs/math.md, "Non-smooth penalties at depth 1").

One step (forward–backward splitting, CP11; for the nuclear norm it is singular value thresholding, CCS10):

    X = W − η(∇ℓ(W) + λ∇_smooth R(W)),   W⁺ = prox_{ηλ R_sing}(X) = A diag(prox(x_i)) Bᵀ,   X = A diag(x) Bᵀ,

where R's coefficients that are smooth at σ = 0 (the 1/‖W‖_F of the ratio, the norms' outer powers) are
frozen at W and the part that is singular at σ = 0 is taken implicitly. The prox of Σ_i φ(σ_i) is spectral
and separable for any φ (von Neumann's trace inequality: ‖Y − X‖_F ≥ ‖σ(Y) − σ(X)‖₂), so it acts on
each x_i by the scalar prox of φ. Unlike the subgradient step, which makes a zero singular value chatter
at amplitude O(η), this keeps sliding singular values exactly at 0; as η → 0 it converges to the
gradient flow of the convex case (Brezis 1973; the implicit part is Crandall–Liggett's exponential formula)
and, with frozen smooth factors, to the minimal-norm-subgradient flow of the ratio-type penalties.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..penalties import (
    NuclearPenalty,
    Penalty,
    RatioPenalty,
    SchattenRatioPenalty,
    _schatten,
    ratio_spectral_grad,
)
from ..problems import CompletionProblem

#: most Newton iterations of the scalar prox of the Schatten-ratio step (it stops once converged)
NEWTON_ITERATIONS = 60


def _schatten_prox(x: np.ndarray, a: float, b: float, p: float, q: float) -> np.ndarray:
    """argmin_{s ≥ 0} ½(s − x)² + a s^p/p − b s^q/q for each x_i ≥ 0 (0 < p < q): the largest stationary
    point, by Newton from s = x on ψ(s) = s + a s^{p−1} − b s^{q−1} = x (ψ is convex and → +∞ at 0+, so the
    iterates decrease to the root, or reach ψ' ≤ 0 when there is none), compared with s = 0."""
    s = x.copy()
    alive = s > 0
    for _ in range(NEWTON_ITERATIONS):
        sa = np.where(alive, s, 1.0)
        g = sa - x + a * sa ** (p - 1) - b * sa ** (q - 1)
        h = 1.0 + a * (p - 1) * sa ** (p - 2) - b * (q - 1) * sa ** (q - 2)
        alive &= h > 0  # past the minimum of s + a s^{p−1} − b s^{q−1}: no root to its right, s = 0
        step = g / np.where(alive, h, 1.0)
        new = sa - step
        alive &= new > 0
        s = np.where(alive, new, 0.0)
        if np.all(np.abs(step[alive]) <= 1e-15 * np.maximum(np.abs(x[alive]), 1e-300)):
            break
    sa = np.where(alive, s, 1.0)
    value = 0.5 * (sa - x) ** 2 + a * sa**p / p - b * sa**q / q
    return np.where(alive & (value < 0.5 * x**2), s, 0.0)


def proximal_gradient_step(
    W: np.ndarray, problem: CompletionProblem, penalty: Penalty, lam: float, lr: float
) -> np.ndarray:
    """W⁺ = prox_{ηλR_sing}(W − η(∇ℓ(W) + λ∇_smooth R(W))) (CP11 forward–backward; CCS10 for the nuclear
    part). Nuclear: SVT at ηλ. Ratio (Zhao22 Sec. 3): smooth part −‖W‖_*W/‖W‖_F³, SVT at ηλ/‖W‖_F.
    Schatten p = 1 < q: smooth part −‖W‖_*∇‖W‖_{S_q}/‖W‖_{S_q}², SVT at ηλ/‖W‖_{S_q}. Schatten p < 1, p < q
    (Zhao22 Table 1): scalar prox of a s^p/p − b s^q/q, a = ηλ‖σ‖_p^{1−p}/‖σ‖_q, b = ηλ‖σ‖_p‖σ‖_q^{−1−q}."""
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    step = problem.grad(W)
    if isinstance(penalty, NuclearPenalty):
        threshold, smooth = lam, None
    elif isinstance(penalty, RatioPenalty):
        threshold = lam * penalty.null_threshold(s)  # λ/‖W‖_F
        smooth = lam * ratio_spectral_grad(s, np.zeros_like(s))  # −λ‖W‖_*σ/‖W‖_F³
    elif isinstance(penalty, SchattenRatioPenalty) and penalty.p == 1.0 and penalty.q > 1.0:
        sq, nuc = _schatten(s, penalty.q), float(np.sum(s))
        threshold, smooth = lam / sq, -lam * nuc * sq ** (1 - penalty.q) * s ** (penalty.q - 1) / sq**2
    elif isinstance(penalty, SchattenRatioPenalty) and penalty.sticks_at_zero:
        p, q = penalty.p, penalty.q
        pos = s[s > 0]
        sp, sq = _schatten(pos, p), _schatten(pos, q)
        A, x, Bt = np.linalg.svd(W - lr * step, full_matrices=False)
        a = lr * lam * sp ** (1 - p) / sq
        b = lr * lam * sp * sq ** (-1 - q)
        return (A * _schatten_prox(x, a, b, p, q)) @ Bt
    else:
        raise ValueError(f"no proximal step for the penalty {penalty.spec()}")
    if smooth is not None:
        step = step + (U * smooth) @ Vt
    A, x, Bt = np.linalg.svd(W - lr * step, full_matrices=False)
    return (A * np.maximum(x - lr * threshold, 0.0)) @ Bt


def proximal_gradient_run(
    problem: CompletionProblem, W0: np.ndarray, penalty: Penalty, lam: float, lr: float,
    save_times: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Iterate :func:`proximal_gradient_step` from W0 with step η = ``lr`` (time t = kη) and return the
    times kη nearest to ``save_times`` and the iterates there (shape (T, m, n))."""
    targets = np.round(np.asarray(save_times, dtype=float) / lr).astype(int)
    W = np.array(W0, dtype=float)
    out, k = [], 0
    for target in targets:
        while k < target:
            W = proximal_gradient_step(W, problem, penalty, lam, lr)
            k += 1
        out.append(W.copy())
    return targets * lr, np.array(out)
