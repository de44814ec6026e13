"""The sliding rule of the Adam-type layer flows where a singular value of W sits at the kink of a
nuclear-type penalty (``docs/math.md``, "Adam-type flows at the kink of a spectral penalty").

Where σ_min(W) = 0 the subdifferential of the ratio/nuclear penalty carries a ball on the null block,
λ∂R ∋ λc(σ)·U₀ZV₀ᵀ with ‖Z‖₂ ≤ 1 (docs/math.md §9). The entry-wise normalized fields of ``adam-sign`` and
``adam-layer`` are not affine in Z, so the sliding condition alone does not fix the sliding velocity.
Discrete Adam with fixed β and η → 0 chatters across σ = 0 within its moment windows: its first moment
averages g and its second moment g⊙g over the chattering. For a 1×1 null block (one zero singular value of a
square W, null pair u₀, v₀) the chattering is a sign z = ±1 of mean μ, and the *moment-averaged* rule is

    Ẇ_j = −E[g_j] / (√E[g_j⊙g_j] + ε),          (adam-sign; adam-layer: the variance form of §8.2)
    E[g_j] = g⁰_j + λcμ·a_j b_jᵀ,   E[g_j⊙g_j] = E[g_j]⊙E[g_j] + (λc)²(1 − μ²)·(a_j⊙a_j)(b_j⊙b_j)ᵀ,
    a_j = W_{N:j+1}ᵀu₀,  b_j = W_{j−1:1}v₀,  g⁰_j = W_{N:j+1}ᵀ(∇ℓ + λU_r diag(∂f/∂σ_r)V_rᵀ)W_{j−1:1}ᵀ,

with μ ∈ [−1, 1] the root of the sliding condition u₀ᵀẆv₀ = Σ_j a_jᵀẆ_j b_j = 0. Measured against tiny-η
discrete Adam, this is the velocity Adam follows; Filippov's convex hull and the equivalent control (μ with
the un-averaged field −g(μ)/(|g(μ)| + ε)) are not (docs/math.md). Null blocks larger than 1×1 (two zero
singular values, or any zero singular value of a non-square W) have no validated rule: the chattering sign
becomes a random partial isometry whose second moments the sliding condition does not determine; the field
there is the penalty's gradient, and the driver records where that began (:func:`kink_supported`,
:func:`kink_margin`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..factors import prefix_products, suffix_products
from ..penalties import Penalty

#: a singular value σ_i ≤ NULL_TOL·σ₁ of W is at the kink (the sliding rule); above it the penalty's gradient.
#: Well above the solvers' tolerances: at 1e-9 the stage states of an implicit step crossed it, the field
#: switched within a step and Radau rebuilt its Jacobian at 70 % of its steps (4×4, depth 1: 418 Radau steps
#: to t = 0.45 against 199 DOP853 steps, no stiffness, at 1e-7); the switch moves W by ≤ NULL_TOL·σ₁
NULL_TOL = 1e-7
#: tolerance of the root μ of the sliding condition
CONTROL_XTOL = 1e-14
#: rate (per unit flow time) at which the sliding rule pulls the null block's residual singular value to 0
#: (Baumgarte's drift correction: u₀ᵀẆv₀ = −DRIFT_RATE·σ_min instead of 0). It keeps σ_min far below
#: NULL_TOL·σ₁ when σ₁ shrinks, so that the rule does not switch off and on at the threshold; it changes the
#: solution by O(σ_min) ≤ NULL_TOL·σ₁
DRIFT_RATE = 100.0


@dataclass
class NullBlock:
    """The split of W = U_r diag(σ_r) V_rᵀ + 0·U₀V₀ᵀ at the kink: the range part, the null bases and the
    penalty's null-block radius λc(σ_r) (``Penalty.null_threshold``)."""

    U_r: np.ndarray
    s_r: np.ndarray
    Vt_r: np.ndarray
    U0: np.ndarray
    V0: np.ndarray
    radius: float
    s0: np.ndarray  # the null block's own (tiny) singular values, σ_{r+1}, ...
    square: bool  # W is square (else the null spaces are larger than the thin SVD's pairs)

    @property
    def shape(self) -> tuple[int, int]:
        return self.U0.shape[1], self.V0.shape[1]


def null_block(W: np.ndarray, penalty: Penalty, lam: float, tol: float = NULL_TOL, rank: int | None = None,
               svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> NullBlock | None:
    """The null block of W when some σ_i ≤ tol·σ₁ (or, with ``rank``, the block below the ``rank`` largest
    singular values: a smooth function of W near a point where it is the null block, for Jacobians) and the
    penalty has a finite null-block radius there; None otherwise (the field is the penalty's gradient).
    ``svd`` is a thin SVD of W already at hand; U₀, V₀ hold the thin SVD's pairs beyond the range (the whole
    null spaces when W is square)."""
    if lam == 0 or not penalty.sticks_at_zero:
        return None
    U, s, Vt = np.linalg.svd(W, full_matrices=False) if svd is None else svd
    if s.size == 0 or s[0] == 0:
        return None
    r = int(np.count_nonzero(s > tol * s[0])) if rank is None else int(rank)
    if r >= s.size:
        return None
    radius = lam * penalty.null_threshold(s[:r])
    if not np.isfinite(radius):
        return None
    return NullBlock(U[:, :r], s[:r], Vt[:r], U[:, r:], Vt[r:].T, float(radius), s[r:],
                     W.shape[0] == W.shape[1])


def kink_supported(block: NullBlock) -> bool:
    """Whether the moment-averaged rule covers this null block (1×1: one zero σ of a square W)."""
    return block.square and block.shape == (1, 1)


def kink_margin(W: np.ndarray) -> float:
    """σ_{p−1}(W) − NULL_TOL·σ₁ for a square W (p = its size), σ_p(W) − NULL_TOL·σ₁ otherwise: negative
    exactly when the null block at the kink is larger than 1×1 (the driver's recorded event, where the
    unvalidated regime begins: at the rule's own threshold, beyond which the penalty's gradient is used)."""
    s = np.linalg.svd(W, compute_uv=False)
    k = 2 if W.shape[0] == W.shape[1] else 1
    if s.size < k:
        return 1.0
    return float(s[-k] - NULL_TOL * s[0])


@dataclass
class SlidingPieces:
    """The μ-independent parts of the layer gradients at the kink: g⁰_j, a_j, b_j and the radius λc."""

    g0: list[np.ndarray]
    A: list[np.ndarray]
    B: list[np.ndarray]
    radius: float
    target: float = 0.0  # the null block's velocity the rule aims at, −DRIFT_RATE·σ_min


def sliding_pieces(factors: Sequence[np.ndarray], G_loss: np.ndarray, penalty: Penalty, lam: float,
                   block: NullBlock) -> SlidingPieces:
    """g⁰_j, a_j = W_{N:j+1}ᵀu₀ and b_j = W_{j−1:1}v₀ for each layer (module docstring)."""
    pre = prefix_products(factors)
    suf = suffix_products(factors)
    N = len(factors)
    G0 = G_loss + lam * (block.U_r * penalty.active_spectral_grad(block.s_r)) @ block.Vt_r
    u0, v0 = block.U0[:, 0], block.V0[:, 0]
    g0 = [suf[j + 1].T @ G0 @ pre[j].T for j in range(N)]
    return SlidingPieces(g0, [suf[j + 1].T @ u0 for j in range(N)], [pre[j] @ v0 for j in range(N)],
                         block.radius, -DRIFT_RATE * float(block.s0[0]))


def averaged_moments(p: SlidingPieces, mu: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(E[g_j], E[g_j⊙g_j]) per layer when the null-block sign chatters with mean μ (module docstring):
    E[g_j] = g⁰_j + λcμ·a_j b_jᵀ and E[g_j⊙g_j] = E[g_j]⊙E[g_j] + (λc)²(1 − μ²)·(a_j⊙a_j)(b_j⊙b_j)ᵀ."""
    spread = p.radius**2 * max(1.0 - mu * mu, 0.0)
    out = []
    for g0, a, b in zip(p.g0, p.A, p.B):
        mean = g0 + (p.radius * mu) * np.outer(a, b)
        out.append((mean, mean * mean + spread * np.outer(a * a, b * b)))
    return out


def sign_rule(mean: np.ndarray, second: np.ndarray, eps: float) -> np.ndarray:
    """adam-sign at the kink: −E[g]/(√E[g⊙g] + ε)."""
    return -mean / (np.sqrt(second) + eps)


def variance_rule(mean: np.ndarray, second: np.ndarray, eps: float) -> np.ndarray:
    """adam-layer at the kink: −E[g]·(E[g⊙g] + s² + ε²)^{−1/2}, s² = mean(E[g⊙g]) − mean(E[g])² over the
    layer (the variance term of docs/math.md §8.2 from the averaged moments)."""
    s2 = max(float(np.mean(second) - np.mean(mean) ** 2), 0.0)
    return -mean / np.sqrt(second + s2 + eps * eps)


def sign_rule_derivative(mean: np.ndarray, second: np.ndarray, eps: float, d_mean: np.ndarray,
                         d_second: np.ndarray) -> np.ndarray:
    """The directional derivative of :func:`sign_rule` along (d_mean, d_second), exactly (the field turns
    over on the scale ε where E[g] and its spread vanish, which no difference quotient of the state resolves):
    with m = E[g] and v = E[g⊙g], d(−m/(√v + ε)) = −dm/(√v + ε) + m·dv/(2√v(√v + ε)²), the second term 0
    where v = 0 (then m = 0)."""
    root = np.sqrt(second)
    safe = np.where(root > 0, root, 1.0)
    return -d_mean / (root + eps) + np.where(root > 0, mean * d_second / (2 * safe * (root + eps) ** 2), 0.0)


def variance_rule_derivative(mean: np.ndarray, second: np.ndarray, eps: float, d_mean: np.ndarray,
                             d_second: np.ndarray) -> np.ndarray:
    """The directional derivative of :func:`variance_rule`: with m = E[g], v = E[g⊙g] and D = v + s² + ε²
    (s² = mean(v) − mean(m)², the layer's variance term, clipped at 0 as there),
    d(−m·D^{−1/2}) = −dm·D^{−1/2} + ½m·D^{−3/2}·dD, dD = dv + mean(dv) − 2·mean(m)·mean(dm) (without the last
    two terms where the clip is active)."""
    s2 = float(np.mean(second) - np.mean(mean) ** 2)
    D = second + max(s2, 0.0) + eps * eps
    dD = d_second + ((float(np.mean(d_second)) - 2 * float(np.mean(mean)) * float(np.mean(d_mean)))
                     if s2 > 0 else 0.0)
    return -d_mean / np.sqrt(D) + 0.5 * mean * dD / D**1.5


Rule = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
RuleDerivative = Callable[[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray], np.ndarray]
#: each rule's exact directional derivative (for the sliding field's Jacobian)
RULE_DERIVATIVE: dict[Rule, RuleDerivative] = {sign_rule: sign_rule_derivative,
                                               variance_rule: variance_rule_derivative}


def moments_derivative(p: SlidingPieces, dp: SlidingPieces, mu: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The change of :func:`averaged_moments` at fixed μ when the pieces move along dp (dg⁰_j, da_j, db_j,
    d(λc)), by the product rule: with c = λc,
    dE[g_j] = dg⁰_j + μ(dc·a_j b_jᵀ + c·(da_j b_jᵀ + a_j db_jᵀ)) and
    dE[g_j⊙g_j] = 2E[g_j]⊙dE[g_j] + (1 − μ²)(2c·dc·(a_j⊙a_j)(b_j⊙b_j)ᵀ + 2c²((a_j⊙da_j)(b_j⊙b_j)ᵀ
    + (a_j⊙a_j)(b_j⊙db_j)ᵀ)).
    Not a difference of second moments: E[g⊙g] is quadratic in E[g], whose entries can be far below any
    difference step (the ε-layer of the sign field), where that difference is not linear."""
    c, dc = p.radius, dp.radius
    keep = max(1.0 - mu * mu, 0.0)
    out = []
    for g0, a, b, dg0, da, db in zip(p.g0, p.A, p.B, dp.g0, dp.A, dp.B):
        mean = g0 + (c * mu) * np.outer(a, b)
        d_mean = dg0 + mu * (dc * np.outer(a, b) + c * (np.outer(da, b) + np.outer(a, db)))
        d_spread = keep * (2 * c * dc * np.outer(a * a, b * b)
                           + 2 * c * c * (np.outer(a * da, b * b) + np.outer(a * a, b * db)))
        out.append((d_mean, 2 * mean * d_mean + d_spread))
    return out


def moments_mu_derivative(p: SlidingPieces, mu: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """∂/∂μ of :func:`averaged_moments`, exactly: ∂E[g_j] = λc·a_j b_jᵀ and
    ∂E[g_j⊙g_j] = 2E[g_j]⊙∂E[g_j] − 2μ(λc)²·(a_j⊙a_j)(b_j⊙b_j)ᵀ (the spread term is 0 beyond |μ| = 1)."""
    spread = -2.0 * mu * p.radius**2 if abs(mu) < 1 else 0.0
    out = []
    for (mean, _), a, b in zip(averaged_moments(p, mu), p.A, p.B):
        d_mean = p.radius * np.outer(a, b)
        out.append((d_mean, 2 * mean * d_mean + spread * np.outer(a * a, b * b)))
    return out


def sliding_velocity(p: SlidingPieces, mu: float, rule: Rule, eps: float) -> list[np.ndarray]:
    """The layer velocities Ẇ_j at the mean sign μ."""
    return [rule(mean, second, eps) for mean, second in averaged_moments(p, mu)]


def null_component(p: SlidingPieces, fields: Sequence[np.ndarray]) -> float:
    """u₀ᵀ(Σ_j W_{N:j+1} X_j W_{j−1:1})v₀ = Σ_j a_jᵀX_j b_j: the null-block entry of the end-product change
    that the layer changes X_j make."""
    return float(sum(a @ x @ b for a, x, b in zip(p.A, fields, p.B)))


def null_velocity(p: SlidingPieces, mu: float, rule: Rule, eps: float) -> float:
    """u₀ᵀẆv₀ = Σ_j a_jᵀẆ_j b_j at the mean sign μ: the rate of change of the null block."""
    return null_component(p, sliding_velocity(p, mu, rule, eps))


def sliding_condition(p: SlidingPieces, mu: float, rule: Rule, eps: float) -> float:
    """F(μ) = u₀ᵀẆ(μ)v₀ − target (target = −DRIFT_RATE·σ_min ≈ 0, the drift correction): 0 where μ keeps
    the null block sliding."""
    return null_velocity(p, mu, rule, eps) - p.target


def sliding_control(p: SlidingPieces, rule: Rule, eps: float) -> tuple[float, str]:
    """The mean sign μ ∈ [−1, 1] of the chattering and what the singular value does, with
    F(μ) = u₀ᵀẆ(μ)v₀ − target (target = −DRIFT_RATE·σ_min ≈ 0, the drift correction):

    * ``"slides"``: F(−1) > 0 > F(+1) (both sides push the null block back to 0), and μ is the root of F
      (Brent's method; F is continuous in μ);
    * ``"leaves"``: F(+1) ≥ 0, the side where u₀ᵀWv₀ = σ > 0 moves away from 0 (μ = +1, the smooth field);
    * ``"crosses"``: F(−1) ≤ 0 and F(+1) < 0, the null block passes through 0 to the other side (μ = −1).
    """
    def F(mu: float) -> float:
        return sliding_condition(p, mu, rule, eps)

    f_plus = F(1.0)
    if f_plus >= 0:
        return 1.0, "leaves"
    if F(-1.0) <= 0:
        return -1.0, "crosses"
    mu = brentq(F, -1.0, 1.0, xtol=CONTROL_XTOL, rtol=4 * np.finfo(float).eps)
    return float(mu), "slides"


def condition_scan(p: SlidingPieces, rule: Rule, eps: float, points: int) -> dict[str, object]:
    """F(μ) (:func:`sliding_condition`) at ``points`` equally spaced μ ∈ [−1, 1]: F(±1), the scale max|F|,
    and ``solutions``, every μ consistent with the condition — the interior sign changes of F (midpoints of
    their intervals), −1 where F(−1) ≤ 1e-6·max|F| (crossing), +1 where F(+1) ≥ −1e-6·max|F| (leaving).
    More than one where the rule does not fix the velocity (``docs/math.md``, "Still stopping")."""
    grid = np.linspace(-1.0, 1.0, points)
    F = np.array([sliding_condition(p, m, rule, eps) for m in grid])
    scale = float(np.max(np.abs(F)))
    inner = np.nonzero(np.sign(F[1:-2]) != np.sign(F[2:-1]))[0] + 1
    solutions = [-1.0] if F[0] <= 1e-6 * scale else []
    solutions += [float(0.5 * (grid[i] + grid[i + 1])) for i in inner]
    solutions += [1.0] if F[-1] >= -1e-6 * scale else []
    return {"F_at_minus_1": float(F[0]), "F_at_plus_1": float(F[-1]), "F_scale": scale,
            "solutions": solutions}
