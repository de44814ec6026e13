"""The Razin–Cohen 2×2 counterexample (RC20; docs/math.md §10): problem, long-horizon flow, checks C1–C7.

Problem (docs/math.md §10): observed entries b₁₂ = z, b₂₁ = z′, b₂₂ = ε of a 2×2 matrix, (1,1) unobserved,
loss ℓ(W) = ½[(w₁₂ − z)² + (w₂₁ − z′)² + (w₂₂ − ε)²] (reduction "sum", c = ½), δ = √(2ℓ).

Why a special state (the numerics of docs/math.md §10)
----------------------------------------------
With det W(0) > 0 the flow drives ℓ → 0 like 1/t while σ_max → ∞ and σ_min → 0: at ℓ = 1e-4 (t ≈ 1e4)
σ_max ≈ 70 and σ_min ≈ 1e-8…1e-9, and at t = 1e7, σ_min ≈ 1e-13. In the plain coordinates W (or in
non-logarithmic layer factors) det W = w₁₁w₂₂ − w₁₂w₂₁ is a difference of two O(1) numbers that agree to
10+ digits, so an integrator error far below any reasonable tolerance flips its sign. Two further facts
shape the solver: (i) the observed entries relax at the rate K₁₂ ≈ σ_max^{2−2/N} (≈ 60 at ℓ = 1e-3) while
the slow drift has time scale t, a stiffness ratio beyond 1e5 that grows with t, so an explicit method
needs ~σ_max^{2−2/N}·t steps (1e9 at t = 1e7); (ii) the ordered singular values are not smooth where
σ₁ = σ₂ (the identity initialization αI starts there), so "SVD coordinates" (log σ₁, log σ₂, θ, φ) have a
singular chart (their angle velocity has 1/(σ₁^{2/N} − σ₂^{2/N})).

State used for balanced initializations (:class:`ChartFlow`): write W D, D = diag(1, sign det W(0)), as the
sum of a conformal and an anti-conformal part,

    W D = ρ₁ R(α) + [[c, d], [d, −c]],    R(α) the rotation by α,  ρ₂ = √(c² + d²),

and use q = (y, α, c, d) with y = log det(W D) = log(ρ₁² − ρ₂²), i.e. ρ₁ = √(eʸ + ρ₂²). This is a smooth
global chart of {det(W D) > 0} (no singularity at σ₁ = σ₂, where only c = d = 0), and:

* det W = sign·eʸ: its sign is not a number the integrator computes, so round-off cannot flip it; the
  sign can change only if y → −∞, which needs an infinite velocity ẏ (see C1 below);
* the singular values come without cancellation: σ₁ = ρ₁ + ρ₂, σ₂ = eʸ/σ₁ (relative accuracy of y);
* the SVD is explicit: W D = R(θ) diag(σ₁, σ₂) R(φ)ᵀ with θ = (α + β)/2, φ = (β − α)/2, β = atan2(d, c).

The end-product flow Ẇ = −P_W(∇ℓ) (docs/math.md §4; ACH18 Thm. 1) is exact for balanced initializations; with
W D in place of W it reads d(WD)/dt = −P_{WD}(∇ℓ(W) D) (P commutes with the right factor D). In the SVD
basis M = Uᵀ d(WD)/dt V = −K ∘ (Uᵀ ∇ℓ(W) D V) with K_kl = Σ_j σ_k^{2(j−1)/N} σ_l^{2(N−j)/N}, so

    ẏ = d log det/dt = M₁₁/σ₁ + M₂₂/σ₂ = −N (σ₁^{1−2/N} G̃₁₁ + σ₂^{1−2/N} G̃₂₂)
    (docs/math.md §5; ACHL19 Thm. 3)

(bounded for N ≥ 2 whenever ∇ℓ is, which is RC20's argument for C1), and (ċ, ḋ), α̇ are the anti-conformal
part of d(WD)/dt and the angular velocity of its conformal part. Everything is written out in scalar
arithmetic (a 2×2 problem does not pay numpy's per-call overhead).

The integrator is scipy's LSODA (stiff/non-stiff switching) with an explicit central-difference Jacobian
of the 4-dimensional field: scipy's own difference quotients are too coarse near α ≈ 0 (α → 0 for the
symmetric default data), which made the implicit methods re-factorize at every step and crawl at the
explicit stability limit (measured: Radau 16 000 steps to t = 530 with scipy's Jacobian, 680 steps to
t = 1e4 with this one). Defaults rtol = 1e-10, atol = 1e-12; depth 3 reaches t = 1e7 in about 2 400 steps.

Non-balanced initializations (per-layer normal, RC20's public code) are not described by the end-product
flow; they are integrated layer-wise (:class:`LayerChartFlow`, docs/math.md §6) with det W = Π_j det W_j, each
factor's determinant being far better conditioned than det W (its singular values are ~σ^{1/N}).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.integrate import BDF, LSODA, Radau

from flowsim.errors import BadInputError
from flowsim.factors import (
    balancedness_residuals,
    canonical_balanced_factors,
    end_product,
    prefix_products,
    suffix_products,
)
from flowsim.initializations import init_rng
from flowsim.integrator import integrate
from flowsim.metrics import effective_rank
from flowsim.problems import CompletionProblem
from flowsim.trajectory import Trajectory

INITS = ("balanced", "identity", "normal")
DEFAULT_INIT_SCALE = {"balanced": 1e-5, "identity": 1e-5, "normal": 8e-3}
DEFAULT_T_END = 1e7
DEFAULT_RTOL = 1e-10
DEFAULT_ATOL = 1e-12
LOSS_THRESHOLDS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
FAMILY_EPS = (0.0, 0.01, 0.05, 0.1, 0.5)
FAMILY_Z = (-2.0, 0.5)
NORMS = ("fro", "nuc", "spec", "max", "s12")
NORM_LABELS = {"fro": "Frobenius", "nuc": "nuclear", "spec": "spectral", "max": "max-entry",
               "s12": "Schatten-½"}
_SOLVERS = {"LSODA": LSODA, "Radau": Radau, "BDF": BDF}


# ---- problem data (docs/math.md §10) -----------------------------------------------------------------------

@dataclass(frozen=True)
class RazinData:
    """Observed entries of the 2×2 problem: b₁₂ = z, b₂₁ = z′ (``zp``), b₂₂ = ε
    (``eps``) (docs/math.md §10)."""

    z: float = 1.0
    zp: float = 1.0
    eps: float = 0.0

    def __post_init__(self) -> None:
        for name, v in (("--z", self.z), ("--zp", self.zp), ("--eps", self.eps)):
            if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v)):
                raise BadInputError(f"{name} must be a finite number, got {v!r}")

    def problem(self) -> CompletionProblem:
        """The :class:`CompletionProblem`: mask observes (1,2), (2,1), (2,2); reduction "sum", c = ½."""
        W_star = np.array([[0.0, self.z], [self.zp, self.eps]])
        mask = np.array([[False, True], [True, True]])
        desc = {"kind": "razin", "z": self.z, "zp": self.zp, "eps": self.eps}
        return CompletionProblem(W_star, mask, "sum", 0.5, desc)

    def loss(self, W: np.ndarray) -> float:
        """ℓ(W) = ½[(w₁₂ − z)² + (w₂₁ − z′)² + (w₂₂ − ε)²] (docs/math.md §10)."""
        return 0.5 * ((W[0, 1] - self.z) ** 2 + (W[1, 0] - self.zp) ** 2 + (W[1, 1] - self.eps) ** 2)

    @property
    def rank_one_w11(self) -> float:
        """w₁₁ of the rank-1 completion, zz′/ε (∞ for ε = 0; docs/math.md §10 C5)."""
        return self.z * self.zp / self.eps if self.eps != 0 else math.inf


def validate_run_args(depth: int, t_end: float, init: str, det_sign: int, init_scale: float) -> None:
    """Raise :class:`BadInputError` for inputs that define no valid run of docs/math.md §10."""
    if not isinstance(depth, (int, np.integer)) or depth < 2:
        raise BadInputError(f"--depth must be an integer ≥ 2 for the Razin–Cohen flow, got {depth!r}")
    if not (isinstance(t_end, (int, float)) and math.isfinite(t_end) and t_end > 0):
        raise BadInputError(f"--t-end must be a finite number > 0, got {t_end!r}")
    if init not in INITS:
        raise BadInputError(f"--init must be one of {'|'.join(INITS)}, got {init!r}")
    if det_sign not in (1, -1):
        raise BadInputError(f"sign of det W(0) must be +1 or -1, got {det_sign!r}")
    if not (math.isfinite(init_scale) and init_scale > 0):
        raise BadInputError(f"--init-scale must be a finite number > 0, got {init_scale!r}")


def initial_factors(init: str, depth: int, det_sign: int, scale: float, seed: int = 0) -> list[np.ndarray]:
    """Initial layer factors [W₁, …, W_N] of the 2×2 network with sign det W(0) =
    ``det_sign`` (docs/math.md §10, §13).

    * ``balanced``: a Gaussian end product W₀ with i.i.d. N(0, scale²/2) entries (RC20's balanced init from
      a product of small scale); if sign det W₀ ≠ det_sign its second column is negated; then the canonical
      balanced factorization (docs/math.md §1).
    * ``identity``: W_j = scale^{1/N} I (end product scale·I); det_sign = −1 uses
      W₁ = scale^{1/N} diag(1, −1). Balanced (C7 uses N = 2, scale = α ≤ 1).
    * ``normal``: per-layer i.i.d. N(0, scale²) entries (RC20's public code, scale 8e-3); if the sign of
      det W is wrong the second column of W₁ is negated. Not balanced.
    Random draws use ``numpy.random.default_rng([seed, 1])``.
    """
    validate_run_args(depth, 1.0, init, det_sign, scale)
    if init == "identity":
        a = scale ** (1.0 / depth)
        fs = [a * np.eye(2) for _ in range(depth)]
        if det_sign < 0:
            fs[0] = a * np.diag([1.0, -1.0])
        return fs
    rng = init_rng(seed)
    if init == "balanced":
        W0 = (scale / math.sqrt(2.0)) * rng.standard_normal((2, 2))
        if np.sign(np.linalg.det(W0)) != det_sign:
            W0[:, 1] *= -1.0
        return canonical_balanced_factors(W0, depth)
    fs = [scale * rng.standard_normal((2, 2)) for _ in range(depth)]
    if np.sign(np.prod([np.linalg.det(F) for F in fs])) != det_sign:
        fs[0][:, 1] *= -1.0
    return fs


def is_balanced(factors: Sequence[np.ndarray], rtol: float = 1e-9) -> bool:
    """True when W_{j+1}ᵀW_{j+1} = W_jW_jᵀ for all j up to ``rtol`` relative to ‖W_j‖² (docs/math.md §1)."""
    if len(factors) < 2:
        return True
    res = balancedness_residuals(factors)
    scale = max(float(np.linalg.norm(F)) ** 2 for F in factors)
    return float(np.max(np.abs(res))) <= rtol * max(scale, 1e-300)


# ---- the chart of det > 0 (module docstring) -------------------------------------------------------------

def chart_from_matrix(W: np.ndarray, sign: int) -> np.ndarray:
    """q = (y, α, c, d) of W with W D = ρ₁R(α) + [[c, d], [d, −c]], y = log det(W D), D = diag(1, sign).

    Raises :class:`BadInputError` when det(W D) ≤ 0 (the chart covers one sign of det W only).
    """
    Wp = np.array(W, dtype=float) @ np.diag([1.0, float(sign)])
    det = Wp[0, 0] * Wp[1, 1] - Wp[0, 1] * Wp[1, 0]
    if not det > 0:
        raise BadInputError(f"det W(0) = {sign * det:.3g} does not have the sign {sign:+d} (or is zero)")
    a = 0.5 * (Wp[0, 0] + Wp[1, 1])
    b = 0.5 * (Wp[1, 0] - Wp[0, 1])
    c = 0.5 * (Wp[0, 0] - Wp[1, 1])
    d = 0.5 * (Wp[0, 1] + Wp[1, 0])
    return np.array([math.log(det), math.atan2(b, a), c, d])


def chart_matrix(q: Sequence[float], sign: int) -> np.ndarray:
    """W = (ρ₁R(α) + [[c, d], [d, −c]]) D with ρ₁ = √(eʸ + c² + d²) (inverse of :func:`chart_from_matrix`)."""
    y, al, c, d = (float(v) for v in q)
    r1 = math.sqrt(math.exp(min(y, 700.0)) + c * c + d * d)
    ca, sa = math.cos(al), math.sin(al)
    return np.array([[r1 * ca + c, sign * (-r1 * sa + d)], [r1 * sa + d, sign * (r1 * ca - c)]])


def chart_spectrum(q: Sequence[float]) -> tuple[float, float, float]:
    """(σ₁, log σ₂, log|det W|) from the chart without cancellation: σ₁ = ρ₁ + ρ₂, log σ₂ = y − log σ₁,
    log|det W| = y (logs, because for N = 2 σ₂ falls below the smallest double within t ≈ 1e4)."""
    y, _, c, d = (float(v) for v in q)
    r2 = math.hypot(c, d)
    s1 = math.sqrt(math.exp(min(y, 700.0)) + r2 * r2) + r2
    return s1, y - math.log(s1), y


def chart_velocity(q: Sequence[float], depth: int, data: RazinData, sign: int) -> np.ndarray:
    """q̇ for the end-product gradient flow Ẇ = −P_W(∇ℓ(W)) (docs/math.md §4; ACH18 Thm. 1) in the chart q.

    With U = R(θ), V = R(φ), G̃ = Uᵀ∇ℓ(W)DV, M = −K∘G̃ and Ẋ = U M Vᵀ = d(WD)/dt:
    ẏ = −N(σ₁^{1−2/N}G̃₁₁ + σ₂^{1−2/N}G̃₂₂) (docs/math.md §5), ċ = (Ẋ₁₁ − Ẋ₂₂)/2, ḋ = (Ẋ₁₂ + Ẋ₂₁)/2,
    α̇ = (cos α·ḃ − sin α·ȧ)/ρ₁ with ȧ = (Ẋ₁₁ + Ẋ₂₂)/2, ḃ = (Ẋ₂₁ − Ẋ₁₂)/2.
    """
    y, al, c, d = q[0], q[1], q[2], q[3]
    N = depth
    if not (y < 700.0 and math.isfinite(al) and math.isfinite(c) and math.isfinite(d)):
        return np.full(4, np.nan)  # outside the representable chart: the solver rejects the step
    e = math.exp(y)
    r2 = math.hypot(c, d)
    r1 = math.sqrt(e + r2 * r2)
    s1 = r1 + r2
    ls2 = y - math.log(s1)  # log σ₂, so that powers of σ₂ never divide 0 by 0
    be = math.atan2(d, c) if r2 > 0.0 else 0.0
    th = 0.5 * (al + be)
    ph = 0.5 * (be - al)
    ca, sa = math.cos(al), math.sin(al)
    # W D and the gradient ∇ℓ(W) D (G₁₁ = 0: entry (1,1) is unobserved)
    x12 = -r1 * sa + d
    x21 = r1 * sa + d
    x22 = r1 * ca - c
    g12 = sign * (sign * x12 - data.z)
    g21 = x21 - data.zp
    g22 = sign * (sign * x22 - data.eps)
    ct, st, cp, sp = math.cos(th), math.sin(th), math.cos(ph), math.sin(ph)
    a11 = g12 * sp
    a12 = g12 * cp
    a21 = g21 * cp + g22 * sp
    a22 = -g21 * sp + g22 * cp
    t11 = ct * a11 + st * a21
    t12 = ct * a12 + st * a22
    t21 = -st * a11 + ct * a21
    t22 = -st * a12 + ct * a22
    p1 = s1 ** (2.0 / N)
    p2 = math.exp((2.0 / N) * ls2)
    k12 = 0.0
    for j in range(1, N + 1):
        k12 += p1 ** (j - 1) * p2 ** (N - j)
    m11 = -N * (s1 * s1 / p1) * t11
    m22 = -N * math.exp((2.0 - 2.0 / N) * ls2) * t22
    m12 = -k12 * t12
    m21 = -k12 * t21
    b11 = m11 * cp - m12 * sp
    b12 = m11 * sp + m12 * cp
    b21 = m21 * cp - m22 * sp
    b22 = m21 * sp + m22 * cp
    d11 = ct * b11 - st * b21
    d12 = ct * b12 - st * b22
    d21 = st * b11 + ct * b21
    d22 = st * b12 + ct * b22
    ydot = -N * ((s1 / p1) * t11 + math.exp((1.0 - 2.0 / N) * ls2) * t22)
    adot = 0.5 * (d11 + d22)
    bdot = 0.5 * (d21 - d12)
    return np.array([ydot, (ca * bdot - sa * adot) / r1, 0.5 * (d11 - d22), 0.5 * (d12 + d21)])


def central_jacobian(fun: Callable[[np.ndarray], np.ndarray], q: np.ndarray, rel: float = 1e-6) -> np.ndarray:
    """∂f/∂q by central differences with steps rel·max(1, |q_i|) (for the implicit solver's Newton steps)."""
    q = np.asarray(q, dtype=float)
    cols = []
    for i in range(q.size):
        h = rel * max(1.0, abs(q[i]))
        e = np.zeros_like(q)
        e[i] = h
        cols.append((fun(q + e) - fun(q - e)) / (2.0 * h))
    return np.array(cols).T


class ChartFlow:
    """Gradient flow of the 2×2 problem from a balanced initialization in the chart q = (y, α, c, d)
    (module docstring; docs/math.md §4, §10). ``sign`` is the (conserved) sign of det W."""

    model = "chart"

    def __init__(self, data: RazinData, depth: int, sign: int):
        self.data, self.depth, self.sign = data, int(depth), int(sign)

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        """q(0) from the initial factors (their end product)."""
        return chart_from_matrix(end_product(factors), self.sign)

    def __call__(self, t: float, q: np.ndarray) -> np.ndarray:
        return chart_velocity(q, self.depth, self.data, self.sign)

    def jac(self, t: float, q: np.ndarray) -> np.ndarray:
        """Central-difference Jacobian of the field."""
        return central_jacobian(lambda x: chart_velocity(x, self.depth, self.data, self.sign), q)

    def matrix(self, q: np.ndarray) -> np.ndarray:
        """End product W."""
        return chart_matrix(q, self.sign)

    def spectrum(self, q: np.ndarray) -> tuple[float, float, float, float]:
        """(σ₁, log σ₂, sign det W, log|det W|) without cancellation."""
        s1, ls2, ld = chart_spectrum(q)
        return s1, ls2, float(self.sign), ld


class LayerChartFlow:
    """Layer-wise gradient flow Ẇ_j = −W_{N:j+1}ᵀ ∇ℓ(W) W_{j−1:1}ᵀ (docs/math.md §6) of the 2×2 problem, for
    non-balanced initializations; det W = Π_j det W_j (each factor's determinant is well conditioned)."""

    model = "layers"

    def __init__(self, data: RazinData, depth: int, sign: int):
        self.data, self.depth, self.sign = data, int(depth), int(sign)

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        """The factors, each raveled row-major, concatenated."""
        return np.concatenate([np.asarray(F, dtype=float).ravel() for F in factors])

    def factors(self, q: np.ndarray) -> list[np.ndarray]:
        """Factors [W₁, …, W_N] of a state."""
        return [np.asarray(q[4 * j:4 * j + 4]).reshape(2, 2) for j in range(self.depth)]

    def __call__(self, t: float, q: np.ndarray) -> np.ndarray:
        fs = self.factors(q)
        pre, suf = prefix_products(fs), suffix_products(fs)  # pre[j] = W_{j:1}, suf[j] = W_{N:j+1}
        W = pre[-1]
        G = np.array([[0.0, W[0, 1] - self.data.z], [W[1, 0] - self.data.zp, W[1, 1] - self.data.eps]])
        out = np.empty(4 * self.depth)
        for j in range(self.depth - 1, -1, -1):
            out[4 * j:4 * j + 4] = -(suf[j + 1].T @ G @ pre[j].T).ravel()
        return out

    def jac(self, t: float, q: np.ndarray) -> np.ndarray:
        """Central-difference Jacobian of the field."""
        return central_jacobian(lambda x: self(t, x), q)

    def matrix(self, q: np.ndarray) -> np.ndarray:
        """End product W."""
        return end_product(self.factors(q))

    def spectrum(self, q: np.ndarray) -> tuple[float, float, float, float]:
        """(σ₁, log σ₂, sign det W, log|det W|) with det W = Π_j det W_j and σ₂ = |det W|/σ₁."""
        fs = self.factors(q)
        dets = [F[0, 0] * F[1, 1] - F[0, 1] * F[1, 0] for F in fs]
        sign = float(np.prod(np.sign(dets)))
        with np.errstate(divide="ignore"):
            ld = float(np.sum(np.log(np.abs(dets))))
        s1 = float(np.linalg.norm(end_product(fs), 2))
        return s1, ld - math.log(s1) if s1 > 0 else -math.inf, sign, ld


def make_razin_flow(factors: Sequence[np.ndarray], data: RazinData, depth: int) -> ChartFlow | LayerChartFlow:
    """The chart flow for balanced factors (exact, docs/math.md §4), the layer-wise flow otherwise
    (docs/math.md §6)."""
    sign = 1 if np.linalg.det(end_product(factors)) > 0 else -1
    if is_balanced(factors):
        return ChartFlow(data, depth, sign)
    return LayerChartFlow(data, depth, sign)


# ---- integration -----------------------------------------------------------------------------------------

@dataclass
class RazinRun:
    """A saved Razin–Cohen trajectory: times ``t`` (T,), matrices ``W`` (T, 2, 2), ``sigma`` (T, 2) and
    ``det`` (T,) computed without cancellation (they may underflow to 0: ``log_sigma_min``,
    ``log_abs_det`` and ``det_sign`` keep them exactly), ``loss`` (T,), the first crossings of the loss
    thresholds (``crossings``: dicts with ``loss``, ``t``, ``w11``, ``sigma_min``, ...), and the outcome."""

    t: np.ndarray
    W: np.ndarray
    sigma: np.ndarray
    det: np.ndarray
    loss: np.ndarray
    log_sigma_min: np.ndarray
    det_sign: np.ndarray
    log_abs_det: np.ndarray
    crossings: list[dict[str, float]]
    status: str
    message: str
    stats: dict[str, Any] = field(default_factory=dict)
    model: str = "chart"


def save_grid(t_end: float, n_save: int, t_min: float = 1e-2) -> np.ndarray:
    """0 followed by ``n_save`` log-spaced times from min(t_min, t_end/10) to t_end."""
    lo = min(t_min, t_end / 10.0)
    return np.concatenate([[0.0], np.geomspace(lo, t_end, n_save)])


def integrate_razin(
    flow: ChartFlow | LayerChartFlow,
    factors: Sequence[np.ndarray],
    t_end: float = DEFAULT_T_END,
    *,
    n_save: int = 300,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    method: str = "LSODA",
    stop_loss: float | None = None,
    thresholds: Sequence[float] = LOSS_THRESHOLDS,
    max_wall_time: float | None = None,
    max_steps: int | None = None,
) -> RazinRun:
    """Integrate ``flow`` from ``factors`` to ``t_end`` (or until ℓ falls to ``stop_loss``) with a stiff
    solver and the flow's explicit Jacobian (:func:`flowsim.integrator.integrate`), saving on a log grid.
    Each loss threshold is a recorded event log ℓ(q) − log thr (downward, located on the solver's dense
    output) and the first time ℓ drops below it is reported; ``stop_loss`` is a terminal event of the same
    kind. Ctrl-C keeps what was saved (status ``interrupted``); a non-finite state stops with status
    ``diverged`` and the time where it happened; exhausted budgets give ``failed``."""
    if method not in _SOLVERS:
        raise BadInputError(f"--method must be one of {'|'.join(_SOLVERS)}, got {method!r}")
    grid = save_grid(t_end, n_save)
    q0 = flow.initial_state(factors)
    loss_of = flow.data.loss
    thr = sorted((float(x) for x in thresholds), reverse=True)

    def loss_event(level: float, terminal: bool) -> Callable[[float, np.ndarray], float]:
        log_level = math.log(level)

        def event(t: float, q: np.ndarray) -> float:
            # ℓ can underflow to 0 (det < 0 runs fit every observed entry): log of the smallest normal
            return math.log(max(loss_of(flow.matrix(q)), 1e-308)) - log_level

        event.__name__ = f"loss_below_{level:g}"
        event.direction = -1.0  # type: ignore[attr-defined]
        event.terminal = terminal  # type: ignore[attr-defined]
        return event

    events = [loss_event(level, False) for level in thr]
    if stop_loss is not None:
        events.append(loss_event(stop_loss, True))
    res = integrate(flow, q0, grid, method=method, rtol=rtol, atol=atol, jac=flow.jac, events=events,
                    max_steps=max_steps, max_wall_time=max_wall_time, progress=False)
    crossings: list[dict[str, float]] = []
    for level, times, states in zip(thr, res.t_events, res.y_events):
        if len(times) == 0:
            continue
        tc, qc = float(times[0]), states[0]
        s1, ls2, sg, ld = flow.spectrum(qc)
        crossings.append({"loss": level, "t": tc, "w11": float(flow.matrix(qc)[0, 0]),
                          "sigma_max": s1, "sigma_min": math.exp(ls2), "log10_sigma_min": ls2 / math.log(10),
                          "det": sg * math.exp(ld)})
    ts, qs = list(res.t), list(res.y)
    status, message = res.status, res.message
    if status == "ok":
        message = f"reached t_end = {t_end:g}"
    elif status == "event":  # the stop_loss event: the dynamics is followed up to that loss
        status = "ok"
        message = f"loss fell to the stop level {stop_loss:g} at t={res.t_last:.6g}"
        if ts[-1] < res.t_last:
            ts.append(res.t_last)
            qs.append(res.y_last)
    t_arr = np.array(ts)
    Ws = np.array([flow.matrix(q) for q in qs])
    sp = np.array([flow.spectrum(q) for q in qs])
    stats = {**res.stats(), "state": flow.model}
    return RazinRun(t=t_arr, W=Ws, sigma=np.column_stack([sp[:, 0], np.exp(sp[:, 1])]),
                    det=sp[:, 2] * np.exp(sp[:, 3]), loss=np.array([loss_of(W) for W in Ws]),
                    log_sigma_min=sp[:, 1], det_sign=sp[:, 2], log_abs_det=sp[:, 3],
                    crossings=crossings, status=status, message=message, stats=stats, model=flow.model)


def run_razin(
    data: RazinData | None = None,
    depth: int = 3,
    *,
    det_sign: int = 1,
    init: str = "balanced",
    init_scale: float | None = None,
    seed: int = 0,
    t_end: float = DEFAULT_T_END,
    **kwargs: Any,
) -> tuple[RazinRun, list[np.ndarray]]:
    """Build the initialization and integrate (docs/math.md §10); returns (run, initial factors)."""
    data = data or RazinData()
    scale = DEFAULT_INIT_SCALE.get(init, 1e-5) if init_scale is None else float(init_scale)
    validate_run_args(depth, t_end, init, det_sign, scale)
    factors = initial_factors(init, depth, det_sign, scale, seed)
    flow = make_razin_flow(factors, data, depth)
    return integrate_razin(flow, factors, t_end, **kwargs), factors


# ---- metrics and trajectory (docs/math.md §2; docs/contract.md) --------------------------------------------

def norms_from(W: np.ndarray, s1: float, s2: float) -> dict[str, float]:
    """Frobenius, nuclear, spectral, max-entry and Schatten-½ ((√σ₁ + √σ₂)²) of W (docs/math.md §10 C3)."""
    return {"fro": math.hypot(s1, s2), "nuc": s1 + s2, "spec": s1, "max": float(np.max(np.abs(W))),
            "s12": (math.sqrt(s1) + math.sqrt(s2)) ** 2}


def razin_trajectory(run: RazinRun, data: RazinData, W0: np.ndarray) -> Trajectory:
    """The :class:`Trajectory` of docs/contract.md with the ``razin`` extras ``w11``, ``norm_max``,
    ``norm_s12``, ``delta`` (= √(2ℓ)) and ``rank_subopt`` (max{σ_min, erank − 1}; docs/math.md §10); σ, det,
    erank and the norms use the cancellation-free singular values of the run."""
    problem = data.problem()
    T = run.t.size
    norms = {k: np.empty(T) for k in NORMS}
    erank = np.empty(T)
    test_err = np.empty(T)
    test_rmse = np.empty(T)
    for i in range(T):
        s1, s2 = run.sigma[i]
        for k, v in norms_from(run.W[i], s1, s2).items():
            norms[k][i] = v
        erank[i] = effective_rank(np.array([s1, s2]))
        test_err[i], test_rmse[i] = problem.test_errors(run.W[i])
    delta = np.sqrt(2.0 * run.loss)
    extra = {"w11": run.W[:, 0, 0].copy(), "norm_max": norms["max"], "norm_s12": norms["s12"], "delta": delta,
             "rank_subopt": np.maximum(run.sigma[:, 1], erank - 1.0), "log_sigma_min": run.log_sigma_min,
             "log_abs_det": run.log_abs_det}
    return Trajectory(t=run.t, sigma=run.sigma, loss=run.loss, test_error=test_err, test_rmse=test_rmse,
                      erank=erank, norm_fro=norms["fro"], norm_nuc=norms["nuc"], norm_spec=norms["spec"],
                      W0=np.array(W0, dtype=float), W_star=problem.W_star.copy(), mask=problem.mask.copy(),
                      W_final=run.W[-1].copy(), det=run.det, W=run.W, extra=extra, status=run.status,
                      message=run.message, stats=dict(run.stats))


# ---- checks C1–C7 (docs/math.md §10) -----------------------------------------------------------------------

def _tail(loss: np.ndarray, level: float) -> np.ndarray:
    """Indices from the first time ℓ < level on."""
    idx = np.flatnonzero(loss < level)
    return np.arange(idx[0], loss.size) if idx.size else np.array([], dtype=int)


def check_c1(run: RazinRun) -> dict[str, Any]:
    """C1 (RC20): det W(0) > 0 ⇒ det W(t) > 0 for all t. Evidence: the sign of det W and log|det W| along
    the run (finite: σ_min never reaches 0), the sign of det recomputed from the saved matrix entries wherever
    it is resolvable above round-off (|w₁₁w₂₂ − w₁₂w₂₁| > 64·eps·‖W‖_F²), and the smallest log₁₀ σ_min.
    Margin: min_t log|det W(t)| (> −∞)."""
    pos0 = bool(run.det_sign[0] > 0)
    det_entries = run.W[:, 0, 0] * run.W[:, 1, 1] - run.W[:, 0, 1] * run.W[:, 1, 0]
    resolvable = np.abs(det_entries) > 64 * np.finfo(float).eps * np.sum(run.W**2, axis=(1, 2))
    agree = bool(np.all(np.sign(det_entries[resolvable]) == run.det_sign[resolvable]))
    finite = bool(np.all(np.isfinite(run.log_abs_det)))
    holds = bool(pos0 and np.all(run.det_sign > 0) and finite and agree)
    return {"applies": pos0, "holds": holds if pos0 else None,
            "min_log_abs_det": float(np.min(run.log_abs_det)),
            "min_log10_sigma_min": float(np.min(run.log_sigma_min) / math.log(10)),
            "sign_changes": int(np.sum(np.diff(run.det_sign) != 0)),
            "entries_sign_agrees": agree, "entries_resolvable_fraction": float(np.mean(resolvable))}


def check_c2(run: RazinRun, data: RazinData) -> dict[str, Any]:
    """C2 (RC20): ℓ → 0 and |w₁₁| → ∞; with det > 0 (and the default data) |w₁₁| > (1 − δ)²/δ whenever
    δ < 1. For general data (C5's form) the bound reads |w₁₁| > (min(|z|,|z′|) − δ)²/(|ε| + δ).
    Margin: min over δ < min(|z|,|z′|) of |w₁₁|/bound − 1 (> 0 means the bound holds everywhere)."""
    m = min(abs(data.z), abs(data.zp))
    delta = np.sqrt(2.0 * run.loss)
    w11 = np.abs(run.W[:, 0, 0])
    sel = delta < m
    bound = (m - delta[sel]) ** 2 / (abs(data.eps) + delta[sel])
    margin = float(np.min(w11[sel] / bound - 1.0)) if sel.any() else None
    tail = _tail(run.loss, 1e-2)
    growing = bool(tail.size > 1 and np.all(np.diff(w11[tail]) > 0))
    loss_decreasing = bool(np.all(np.diff(run.loss[1:]) <= 1e-12 * run.loss[1:-1] + 1e-300))
    holds = bool(margin is not None and margin > 0 and growing and loss_decreasing)
    return {"holds": holds, "bound_margin": margin, "w11_growing_after_loss_1e-2": growing,
            "loss_decreasing": loss_decreasing, "final_loss": float(run.loss[-1]),
            "final_abs_w11": float(w11[-1]),
            "points_checked": int(sel.sum())}


def c3_constants(run: RazinRun, level: float = 1e-1) -> dict[str, dict[str, float]]:
    """C3 (RC20): ‖W(t)‖·√ℓ(t) for each norm after ℓ first drops below ``level``: the running minimum
    (the constant bounding it below), its final value, and the explicit lower bound (1 − δ)²/√2 that
    |w₁₁| > (1 − δ)²/δ gives for every norm ≥ the max-entry norm (all five are)."""
    tr_sigma = run.sigma
    tail = _tail(run.loss, level)
    out: dict[str, dict[str, float]] = {}
    if tail.size == 0:
        return out
    vals = {k: [] for k in NORMS}
    for i in tail:
        for k, v in norms_from(run.W[i], *tr_sigma[i]).items():
            vals[k].append(v * math.sqrt(run.loss[i]))
    for k in NORMS:
        v = np.array(vals[k])
        out[k] = {"min": float(v.min()), "final": float(v[-1]), "max": float(v.max())}
    return out


def check_c3(run: RazinRun, data: RazinData) -> dict[str, Any]:
    """C3: every norm's ‖W‖·√ℓ stays above a positive constant as ℓ → 0 (checked after ℓ < 1e-1 against the
    explicit bound (m − δ)²/(√2(|ε| + δ))·δ, m = min(|z|,|z′|)); margin = min ratio to the bound − 1."""
    consts = c3_constants(run)
    tail = _tail(run.loss, 1e-1)
    m = min(abs(data.z), abs(data.zp))
    margins = {}
    for k in NORMS:
        r = []
        for i in tail:
            d = math.sqrt(2 * run.loss[i])
            if d < m:
                bound = (m - d) ** 2 / (abs(data.eps) + d) * d / math.sqrt(2)
                nv = norms_from(run.W[i], *run.sigma[i])[k] * math.sqrt(run.loss[i])
                r.append(nv / bound - 1.0)
        margins[k] = float(min(r)) if r else None
    holds = bool(consts and all(v is not None and v > 0 for v in margins.values())
                 and all(c["min"] > 0 for c in consts.values()))
    return {"holds": holds, "constants": consts, "bound_margins": margins}


def check_c4(run: RazinRun) -> dict[str, Any]:
    """C4 (RC20): σ_min(W) < δ and erank − 1 = O(δ) (rank sub-optimality → 0). Checked where δ < 1:
    margin = min(1 − σ_min/δ); sup (erank − 1)/δ reported (finite, and not growing in the last decade)."""
    delta = np.sqrt(2.0 * run.loss)
    sel = np.flatnonzero((delta < 1.0) & (run.t > 0))
    if sel.size == 0:
        return {"holds": False, "reason": "δ never fell below 1"}
    s2 = run.sigma[sel, 1]
    er = np.array([effective_rank(s) for s in run.sigma[sel]]) - 1.0
    ratio = er / delta[sel]
    margin = float(np.min(1.0 - s2 / delta[sel]))
    last = run.t[sel] >= run.t[sel][-1] / 10
    holds = bool(margin > 0 and np.all(np.isfinite(ratio)) and ratio[last].max() <= ratio.max())
    subopt = np.maximum(s2, er)
    return {"holds": holds, "sigma_margin": margin, "sup_erank_minus_1_over_delta": float(ratio.max()),
            "final_rank_subopt": float(subopt[-1]), "initial_rank_subopt": float(subopt[0])}


def check_c5(run: RazinRun, data: RazinData) -> dict[str, Any]:
    """C5 (RC20): perturbed data, sign det W(0) = sign(zz′), δ < m = min(|z|,|z′|):
    |w₁₁| > (m − δ)²/(|ε| + δ) and σ_min < |ε| + δ. Margins: min ratio − 1 for each bound."""
    m = min(abs(data.z), abs(data.zp))
    delta = np.sqrt(2.0 * run.loss)
    sel = (delta < m) & (run.t > 0)
    applies = bool(run.det_sign[0] == np.sign(data.z * data.zp) and sel.any())
    if not applies:
        return {"applies": False, "holds": None}
    w11 = np.abs(run.W[sel, 0, 0])
    b_w = (m - delta[sel]) ** 2 / (abs(data.eps) + delta[sel])
    b_s = abs(data.eps) + delta[sel]
    mw = float(np.min(w11 / b_w - 1.0))
    ms = float(np.min(1.0 - run.sigma[sel, 1] / b_s))
    return {"applies": True, "holds": bool(mw > 0 and ms > 0), "w11_margin": mw, "sigma_margin": ms,
            "final_w11": float(run.W[-1, 0, 0]), "rank_one_w11": data.rank_one_w11,
            "final_loss": float(run.loss[-1])}


def check_c6(run: RazinRun) -> dict[str, Any]:
    """C6 (RC20): det W(0) < 0, default data: w₁₁ stays bounded and det W → −1. Evidence: max |w₁₁| over the
    run, the change of w₁₁ over the last decade of time (≤ 1e-6·max(1, max|w₁₁|): w₁₁ has converged to a
    finite limit), and |det W(T) + 1| ≤ 1e-6."""
    if not run.det_sign[0] < 0:
        return {"applies": False, "holds": None}
    w11 = run.W[:, 0, 0]
    late = run.t >= run.t[-1] / 10
    drift = float(np.ptp(w11[late]))
    det_err = float(abs(run.det[-1] + 1.0))
    max_w = float(np.max(np.abs(w11)))
    holds = bool(drift < 1e-6 * max(1.0, max_w) and det_err < 1e-6)
    return {"applies": True, "holds": holds, "max_abs_w11": max_w, "w11_drift_last_decade": drift,
            "final_det": float(run.det[-1]), "det_error": det_err, "final_loss": float(run.loss[-1])}


def check_c7(run: RazinRun, depth: int, init: str, init_scale: float) -> dict[str, Any]:
    """C7 (RC20): N = 2, W_j(0) = αI, 0 < α ≤ 1: ℓ → 0 and W stays symmetric positive semidefinite.
    Evidence: max ‖W − Wᵀ‖_F/‖W‖_F, min eigenvalue of the symmetric part over ‖W‖, ℓ decreasing to the end."""
    applies = depth == 2 and init == "identity" and 0 < init_scale <= 1 and run.det_sign[0] > 0
    if not applies:
        return {"applies": False, "holds": None}
    nrm = np.linalg.norm(run.W, axis=(1, 2))
    asym = float(np.max(np.linalg.norm(run.W - run.W.transpose(0, 2, 1), axis=(1, 2)) / nrm))
    sym = 0.5 * (run.W + run.W.transpose(0, 2, 1))
    min_eig = float(np.min(np.linalg.eigvalsh(sym)[:, 0] / nrm))
    dec = bool(np.all(np.diff(run.loss) <= 1e-12 * run.loss[:-1] + 1e-300))
    holds = bool(asym < 1e-8 and min_eig > -1e-8 and dec and run.loss[-1] < 1e-3 * run.loss[0])
    return {"applies": True, "holds": holds, "max_relative_asymmetry": asym,
            "min_relative_eigenvalue": min_eig,
            "loss_decreasing": dec, "final_loss": float(run.loss[-1]), "initial_loss": float(run.loss[0])}


def evaluate_checks(run: RazinRun, data: RazinData, depth: int, init: str,
                    init_scale: float) -> dict[str, Any]:
    """C1–C7 along a run (those whose hypotheses hold for its data, sign and initialization), for
    ``run.json``. C1–C6 assume a balanced initialization (docs/math.md §10); for a non-balanced one
    (``normal``) they are reported with ``applies: false`` and the observed values (the sign of det can
    then change)."""
    default_data = data == RazinData()
    balanced = run.model == "chart"
    pos = bool(run.det_sign[0] > 0)
    out: dict[str, Any] = {"C1": check_c1(run)}
    if pos and np.sign(data.z * data.zp) > 0:
        out["C2"] = check_c2(run, data)
        out["C3"] = check_c3(run, data)
        out["C4"] = check_c4(run) if data.eps == 0 else {"applies": False, "holds": None}
    out["C5"] = check_c5(run, data)
    out["C6"] = check_c6(run) if default_data else {"applies": False, "holds": None}
    out["C7"] = check_c7(run, depth, init, init_scale)
    if not balanced:
        for v in out.values():
            if v.get("applies", True):
                v.update({"applies": False, "observed_holds": v.get("holds"), "holds": None,
                          "reason": "non-balanced initialization: outside the hypotheses of RC20 C1–C6"})
    return out


def verdict_table(checks: dict[str, Any]) -> dict[str, str]:
    """{"C1": "holds"|"fails"|"n/a", ...} from :func:`evaluate_checks`."""
    out = {}
    for k, v in checks.items():
        h = v.get("holds")
        out[k] = "n/a" if (h is None or v.get("applies") is False) else ("holds" if h else "fails")
    return out
