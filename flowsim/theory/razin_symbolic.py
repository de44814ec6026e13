"""C8 (RC20; docs/math.md §10) in sympy: on the solution set of the 2×2 problem every Schatten-p (quasi-)norm,
p > 0, is minimized at w₁₁ = 0, while the gradient flow drives |w₁₁| → ∞ (C2): no norm is being minimized.

Derivation (data z, z′ > 0 or < 0 with zz′ ≠ 0, ε = 0). The solutions are W(x) = [[x, z], [z′, 0]]:
σ₁σ₂ = |det W| = |zz′| =: k² and σ₁² + σ₂² = x² + z² + z′². With x = 2k·sinh(u)·… it is cleaner to
parametrize by σ₁ = k·eᵘ (u ≥ 0), σ₂ = k·e⁻ᵘ; then σ₁² + σ₂² = 2k² cosh(2u) = x² + z² + z′², so
x² = 2k² cosh(2u) − z² − z′², increasing in u, and

    ‖W‖_{S_p}^p = σ₁ᵖ + σ₂ᵖ = 2kᵖ cosh(p·u),   d/du = 2p·kᵖ·sinh(p·u) > 0 for u > 0,

so the Schatten-p quasi-norm increases with |x| and is minimized at the smallest |x|, x = 0 (where
u = u₀ with 2k²cosh(2u₀) = z² + z′²). For z = z′ = 1: u₀ = 0, σ₁ = σ₂ = 1 at x = 0.
The spectral norm (p = ∞) is σ₁ = k·eᵘ, increasing in u as well.
"""

from __future__ import annotations

from typing import Any

import sympy as sp


def schatten_on_solutions(z: sp.Expr, zp: sp.Expr) -> dict[str, Any]:
    """Symbolic facts of C8 for data (z, z′, ε = 0) (module docstring): the identities σ₁σ₂ = |zz′| and
    σ₁² + σ₂² = x² + z² + z′² (from the characteristic polynomial of WᵀW), ‖W‖_{S_p}^p = 2kᵖcosh(pu) and
    its u-derivative 2p kᵖ sinh(pu), with sympy's sign decision for p, u, k > 0."""
    x = sp.Symbol("x", real=True)
    lam = sp.Symbol("lambda")
    p, u, k = sp.symbols("p u k", positive=True)
    W = sp.Matrix([[x, z], [zp, 0]])
    charpoly = sp.expand((W.T * W).charpoly(lam).as_expr())
    # λ² − (σ₁² + σ₂²)λ + (σ₁σ₂)²; the coefficients are polynomials: ``expand`` is their normal form (the
    # identities below are polynomial or exponential-polynomial, so ``expand`` decides them exactly, at a
    # fraction of the cost of ``simplify``: measured on profiles of ``razin`` and ``check --quick``)
    trace_term = sp.expand(-charpoly.coeff(lam, 1))
    det_term = sp.expand(charpoly.coeff(lam, 0))
    s1, s2 = k * sp.exp(u), k * sp.exp(-u)
    schatten_p = sp.powsimp(sp.expand_power_base(s1**p + s2**p))  # kᵖe^{pu} + kᵖe^{−pu} (k > 0)
    closed = 2 * k**p * sp.cosh(p * u)
    identity_ok = sp.expand(schatten_p - 2 * k**p * sp.cosh(p * u).rewrite(sp.exp)) == 0
    deriv = sp.diff(closed, u)
    deriv_positive = sp.ask(sp.Q.positive(deriv), sp.Q.positive(p) & sp.Q.positive(u) & sp.Q.positive(k))
    if deriv_positive is None:
        deriv_positive = bool(deriv.is_positive)
    # x² as a function of u: 2k² cosh(2u) − z² − z′², with k² = |zz′|
    x2_of_u = 2 * sp.Abs(z * zp) * sp.cosh(2 * u) - z**2 - zp**2
    x2_increasing = sp.expand(sp.diff(x2_of_u, u) - 4 * sp.Abs(z * zp) * sp.sinh(2 * u)) == 0
    return {
        "sum_sigma_sq": trace_term, "prod_sigma_sq": det_term,
        "sum_sigma_sq_ok": sp.expand(trace_term - (x**2 + z**2 + zp**2)) == 0,
        "prod_sigma_sq_ok": sp.expand(det_term - (z * zp) ** 2) == 0,
        "schatten_closed_form_ok": bool(identity_ok), "derivative": deriv,
        "derivative_positive": bool(deriv_positive), "x2_increasing_in_u": bool(x2_increasing),
    }


def numeric_argmin(z: float, zp: float, ps: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0), span: float = 50.0,
                   n: int = 2001) -> dict[float, float]:
    """Independent numeric check: argmin over a grid x ∈ [−span, span] of ‖[[x, z], [z′, 0]]‖_{S_p} per p."""
    import numpy as np

    xs = np.linspace(-span, span, n)
    mats = np.zeros((n, 2, 2))
    mats[:, 0, 0] = xs
    mats[:, 0, 1] = z
    mats[:, 1, 0] = zp
    s = np.linalg.svd(mats, compute_uv=False)
    return {pv: float(xs[int(np.argmin(np.sum(s**pv, axis=1)))]) for pv in ps}


def c8_evidence(z: float = 1.0, zp: float = 1.0) -> dict[str, Any]:
    """C8 verdict data: the symbolic facts (for numeric data z, z′ and for general symbols), the numeric
    grid argmins, and a residual: 0 when every symbolic fact holds, else 1 (plus max |argmin| on the grid)."""
    zs, zps = sp.symbols("z zp", nonzero=True, real=True)
    general = schatten_on_solutions(zs, zps)
    concrete = schatten_on_solutions(sp.nsimplify(z), sp.nsimplify(zp))
    facts = [general[k] for k in ("sum_sigma_sq_ok", "prod_sigma_sq_ok", "schatten_closed_form_ok",
                                  "derivative_positive", "x2_increasing_in_u")]
    facts += [concrete[k] for k in ("sum_sigma_sq_ok", "prod_sigma_sq_ok")]
    grid = numeric_argmin(z, zp)
    worst = max(abs(v) for v in grid.values())
    residual = (0.0 if all(facts) else 1.0) + worst
    return {"residual": residual, "symbolic_facts_hold": all(facts),
            "derivative_of_schatten_p_power": str(general["derivative"]),
            "sum_sigma_sq": str(general["sum_sigma_sq"]), "prod_sigma_sq": str(general["prod_sigma_sq"]),
            "numeric_argmin_x": {str(k): v for k, v in grid.items()}}
