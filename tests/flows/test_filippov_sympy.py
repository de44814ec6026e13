"""The subdifferential structure the Filippov flow uses, checked symbolically: for a regular R the one-sided
directional derivative is the support function of ∂R, R'(W; D) = Σ_i g_i u_iᵀDv_i + c·‖U₀ᵀDV₀‖_* (range
part g = ``active_spectral_grad``, null-block ball of radius c = ``null_threshold``)."""

import numpy as np
import pytest
import sympy as sp

from flowsim import make_penalty

t = sp.symbols("t", positive=True)
A, B = sp.Rational(3, 2), sp.Rational(1, 2)  # W = diag(a, b, 0)


def _ratio_value(spec: str, sig):
    if spec == "nuclear":
        return sum(sig)
    if spec == "ratio":
        return sum(sig) / sp.sqrt(sum(x**2 for x in sig))
    _, p, q = spec.split(":")
    p, q = sp.Rational(p), sp.Rational(q)
    return sum(x**p for x in sig) ** (1 / p) / sum(x**q for x in sig) ** (1 / q)


@pytest.mark.parametrize("spec", ["nuclear", "ratio", "schatten:1:3", "schatten:1/2:2/3", "schatten:1/3:1/2"])
@pytest.mark.parametrize("direction", [(1, -2, 1), (-1, 1, sp.Rational(1, 4))])
@pytest.mark.slow
def test_diagonal_directional_derivative_at_rank_two(spec, direction):
    """W = diag(3/2, 1/2, 0), D = diag(d₁, d₂, e), e > 0: σ(W + tD) = (a + td₁, b + td₂, te) for small t."""
    d1, d2, e = (sp.nsimplify(x) for x in direction)
    sig = [A + t * d1, B + t * d2, t * e]
    R = _ratio_value(spec, sig)
    R0 = _ratio_value(spec, [A, B])
    slope = sp.limit((R - R0) / t, t, 0, "+")
    pen = make_penalty(spec)
    s_active = np.array([1.5, 0.5])
    c = pen.null_threshold(s_active)
    g = pen.active_spectral_grad(s_active)
    if c == np.inf:
        assert slope == sp.oo
        return
    expected = g[0] * float(d1) + g[1] * float(d2) + c * float(e)
    assert float(slope) == pytest.approx(expected, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("spec", ["nuclear", "ratio"])
def test_off_diagonal_directions_enter_only_through_the_null_block(spec):
    """2×2, W = diag(a, 0), D arbitrary with D₂₂ > 0: ‖W + tD‖_* = sqrt(‖W + tD‖_F² + 2 det(W + tD)) for
    small t, so R'(W; D) = g₁D₁₁ + c|D₂₂| with no contribution of D₁₂, D₂₁ (the cross blocks carry no
    subgradient)."""
    a = sp.Rational(2)
    d11, d12, d21, d22 = sp.Rational(-1, 3), sp.Rational(5, 7), sp.Rational(-2), sp.Rational(3, 4)
    M = sp.Matrix([[a + t * d11, t * d12], [t * d21, t * d22]])
    fro2 = sum(x**2 for x in M)
    nuc = sp.sqrt(fro2 + 2 * M.det())
    R = nuc if spec == "nuclear" else nuc / sp.sqrt(fro2)
    R0 = R.subs(t, 0)
    slope = sp.limit((R - R0) / t, t, 0, "+")
    pen = make_penalty(spec)
    g1 = pen.active_spectral_grad(np.array([2.0]))[0]
    c = pen.null_threshold(np.array([2.0]))
    assert float(slope) == pytest.approx(g1 * float(d11) + c * float(d22), rel=1e-12)
