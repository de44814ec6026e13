"""Symbolic derivations with sympy (docs/contract.md §4), lambdified where numbers are needed.

* :func:`ratio_gradient_derivation` — R = ‖W‖_*/‖W‖_F as a function of the singular values: ∂R/∂σ_i (which
  is the projection u_iᵀ∇R v_i of the gradient of a spectral function) simplifies to
  1/‖W‖_F − ‖W‖_*σ_i/‖W‖_F³ (docs/math.md §3).
* :func:`ratio_gradient_2x2` — the same gradient derived entry by entry for a 2×2 W, from
  ‖W‖_* = √(‖W‖_F² + 2|det W|) (since (σ₁ + σ₂)² = σ₁² + σ₂² + 2σ₁σ₂), lambdified.
* :func:`corrected_eq7` — the exact penalized singular-value equation (corrected Zhao22 Eq. 7)
  σ̇_r = −Nσ_r^{2−2/N}(g_r + λ∂R/∂σ_r), g_r = u_rᵀ∇ℓv_r, its difference from the printed Eq. 7 and from
  the projection of the printed Eq. 8, lambdified.
* :func:`closed_form_n2` — docs/math.md §12: σ(t) = s e^{2st}/(e^{2st} − 1 + s/σ₀) solves σ̇ = 2σ(s − σ),
  σ(0) = σ₀ (N = 2); and the N = 4 closed form of t(σ) satisfies dt/dσ = 1/(4σ^{3/2}(s − σ)).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import sympy as sp


@dataclass(frozen=True)
class RatioGradient:
    """Result of :func:`ratio_gradient_derivation`."""

    sigmas: tuple[sp.Symbol, ...]
    derived: tuple[sp.Expr, ...]  # ∂R/∂σ_i by differentiation
    closed_form: tuple[sp.Expr, ...]  # 1/F − nuc σ_i/F³
    residuals: tuple[sp.Expr, ...]  # simplify(derived − closed_form), all 0 when the closed form is right


@lru_cache(maxsize=8)
def ratio_gradient_derivation(k: int = 3) -> RatioGradient:
    """∂R/∂σ_i for R(σ) = Σσ/√(Σσ²) with k positive singular values, against the closed form of docs/math.md
    §3 (Zhao22 Sec. 3): ∂R/∂σ_i = 1/‖W‖_F − ‖W‖_* σ_i/‖W‖_F³."""
    s = sp.symbols(f"sigma1:{k + 1}", positive=True)
    fro = sp.sqrt(sum(x**2 for x in s))
    nuc = sum(s)
    R = nuc / fro
    derived = tuple(sp.diff(R, x) for x in s)
    closed = tuple(1 / fro - nuc * x / fro**3 for x in s)
    residuals = tuple(sp.simplify(d - c) for d, c in zip(derived, closed))
    return RatioGradient(tuple(s), derived, closed, residuals)


@lru_cache(maxsize=2)
def ratio_gradient_2x2() -> tuple[Any, Any]:
    """∇R(W) for a 2×2 W = [[a, b], [c, d]] by symbolic differentiation of
    R = √(‖W‖_F² + 2|ad − bc|)/‖W‖_F (docs/math.md §3). Returns (function W ↦ ∇R as a 2×2 array, the symbolic
    gradient on the det > 0 branch)."""
    a, b, c, d = sp.symbols("a b c d", real=True)
    fro2 = a**2 + b**2 + c**2 + d**2
    det = a * d - b * c
    grads = {}
    for sign in (1, -1):  # |det| = sign·det on each branch
        R = sp.sqrt(fro2 + 2 * sign * det) / sp.sqrt(fro2)
        G = sp.Matrix([[sp.diff(R, a), sp.diff(R, b)], [sp.diff(R, c), sp.diff(R, d)]])
        grads[sign] = (sp.lambdify((a, b, c, d), G, "numpy"), G)

    def grad(W: np.ndarray) -> np.ndarray:
        W = np.asarray(W, dtype=float)
        sign = 1 if np.linalg.det(W) >= 0 else -1
        return np.array(grads[sign][0](*W.ravel()), dtype=float)

    return grad, grads[1][1]


@dataclass(frozen=True)
class Eq7Derivation:
    """Result of :func:`corrected_eq7`."""

    corrected: sp.Expr  # exact σ̇_r
    printed: sp.Expr  # Zhao22 Eq. 7 as printed
    eq8_projection: sp.Expr  # u_rᵀ(Eq. 8 velocity)v_r
    printed_minus_corrected: sp.Expr
    printed_minus_eq8: sp.Expr
    eq8_minus_corrected: sp.Expr
    corrected_minus_exact_closed_form: sp.Expr  # 0: the derivation reproduces docs/math.md §5's formula


def _eq7_expressions(
    k: int, r: int
) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...], dict[str, sp.Expr]]:
    s = sp.symbols(f"sigma1:{k + 1}", positive=True)
    g, N, lam = sp.symbols("g N lambda", positive=True)
    fro = sp.sqrt(sum(x**2 for x in s))
    nuc = sum(s)
    R = nuc / fro
    sr = s[r]
    pre = N * sr ** (2 - 2 / N)
    exprs = {
        "corrected": -pre * (g + lam * sp.diff(R, sr)),
        "printed": -pre * g - (lam * N / fro**2) * (1 - nuc / fro) * sr ** ((3 * N - 2) / 2),
        "eq8": -pre * (g + lam * (1 - (nuc / fro) * sr) / fro**2),
        "closed": -pre * (g + lam * (1 / fro - nuc * sr / fro**3)),
    }
    return tuple(s), (g, N, lam), exprs


def _tidy(expr: sp.Expr) -> sp.Expr:
    """A readable normal form of a difference that is not expected to vanish: powsimp∘factor∘together∘expand.
    On the Eq. 7/8 differences it returns what ``sympy.simplify`` returns (or an equivalent form) in about a
    third of its time (``simplify`` tries many strategies; measured on a profile of ``check --quick``)."""
    return sp.powsimp(sp.factor(sp.together(sp.expand(expr))))


@lru_cache(maxsize=4)
def corrected_eq7(k: int = 3, r: int = 1) -> Eq7Derivation:
    """The corrected Zhao22 Eq. 7 for singular value r (0-based) of k (docs/math.md §5):

        σ̇_r = −N σ_r^{2−2/N} (g_r + λ ∂R/∂σ_r),   ∂R/∂σ_r derived symbolically, g_r = u_rᵀ∇ℓv_r,

    beside the printed Eq. 7, σ̇_r = −Nσ_r^{2−2/N} g_r − (λN/F²)(1 − nuc/F) σ_r^{(3N−2)/2}, and the projection
    of the printed Eq. 8, −Nσ_r^{2−2/N}(g_r + λ(1 − (nuc/F)σ_r)/F²); F = ‖W‖_F, nuc = ‖W‖_*. The differences
    are brought to a normal form (:func:`_tidy`); corrected − closed form (must vanish) is simplified."""
    _, _, e = _eq7_expressions(k, r)
    return Eq7Derivation(e["corrected"], e["printed"], e["eq8"], _tidy(e["printed"] - e["corrected"]),
                         _tidy(e["printed"] - e["eq8"]), _tidy(e["eq8"] - e["corrected"]),
                         sp.simplify(e["corrected"] - e["closed"]))


@lru_cache(maxsize=32)
def corrected_eq7_function(k: int) -> Any:
    """Lambdified corrected Eq. 7 for all k singular values: f(σ_1..σ_k, g_1..g_k, N, λ) → [σ̇_1..σ̇_k]."""
    exprs = []
    s_syms: tuple[sp.Symbol, ...] = ()
    gs = sp.symbols(f"g1:{k + 1}", positive=True)
    N, lam = sp.symbols("N lambda", positive=True)
    for r in range(k):
        s_syms, (g, N0, lam0), e = _eq7_expressions(k, r)
        exprs.append(e["corrected"].subs({g: gs[r], N0: N, lam0: lam}))
    return sp.lambdify((*s_syms, *gs, N, lam), exprs, "numpy")


def corrected_eq7_numeric(s: np.ndarray, g: np.ndarray, depth: int, lam: float) -> np.ndarray:
    """σ̇ from the lambdified corrected Eq. 7 (σ descending, g_r = u_rᵀ∇ℓv_r)."""
    s = np.asarray(s, dtype=float)
    return np.array(corrected_eq7_function(s.size)(*s, *np.asarray(g, dtype=float), depth, lam), dtype=float)


@dataclass(frozen=True)
class ClosedFormCheck:
    """Result of :func:`closed_form_n2`."""

    sigma_n2: sp.Expr
    ode_residual_n2: sp.Expr  # simplify(σ̇ − 2σ(s − σ)): 0
    initial_residual_n2: sp.Expr  # σ(0) − σ₀: 0
    t_of_sigma_n4: sp.Expr
    ode_residual_n4: sp.Expr  # simplify(dt/dσ − 1/(4σ^{3/2}(s − σ))): 0
    sigma_n2_function: Any  # lambdified σ(t, s, σ₀)


@lru_cache(maxsize=1)
def closed_form_n2() -> ClosedFormCheck:
    """docs/math.md §12 (SMG14/ACHL19): for full observation with loss ½‖W − S‖², σ̇ = Nσ^{2−2/N}(s − σ).
    N = 2: σ(t) = s e^{2st}/(e^{2st} − 1 + s/σ₀); N = 4: t(σ) = (1/(2s))[σ₀^{−1/2} − σ^{−1/2} +
    (artanh√(σ/s) − artanh√(σ₀/s))/√s]. Both verified symbolically."""
    t, s, s0, x = sp.symbols("t s sigma0 sigma", positive=True)
    e = sp.exp(2 * s * t)
    sigma = s * e / (e - 1 + s / s0)
    ode = sp.simplify(sp.diff(sigma, t) - 2 * sigma * (s - sigma))
    init = sp.simplify(sigma.subs(t, 0) - s0)
    t4 = (1 / (2 * s)) * (s0 ** sp.Rational(-1, 2) - x ** sp.Rational(-1, 2)
                          + (sp.atanh(sp.sqrt(x / s)) - sp.atanh(sp.sqrt(s0 / s))) / sp.sqrt(s))
    ode4 = sp.simplify(sp.diff(t4, x) - 1 / (4 * x ** sp.Rational(3, 2) * (s - x)))
    return ClosedFormCheck(sigma, ode, init, t4, ode4, sp.lambdify((t, s, s0), sigma, "numpy"))


def is_zero(
    expr: sp.Expr, symbols: tuple[sp.Symbol, ...] | None = None, trials: int = 5, seed: int = 0
) -> bool:
    """True when ``expr`` simplified to 0, or (if sympy could not simplify it) when it vanishes to 1e-12
    at ``trials`` random positive points."""
    if expr == 0:
        return True
    syms = tuple(sorted(expr.free_symbols, key=str)) if symbols is None else symbols
    f = sp.lambdify(syms, expr, "numpy")
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        val = complex(f(*rng.uniform(0.1, 0.9, len(syms))))
        if not abs(val) <= 1e-12:
            return False
    return True
