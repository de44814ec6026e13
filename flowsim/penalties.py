"""Spectral penalties R(W) with value and gradient (docs/math.md §3).

Every penalty here is a function of the singular values only, so its gradient is diagonal in the SVD
basis: ∇R(W) = U diag(g(σ)) Vᵀ. :meth:`Penalty.spectral_grad` returns g(σ), which is also the projection
u_iᵀ∇R v_i used by the singular-value dynamics (docs/math.md §5).

Subgradient and floor conventions (documented per docs/math.md §3):

* ``nuclear``: the minimum-norm subgradient, g_i = 1 for σ_i > τ and 0 otherwise, with the numerical-rank
  threshold τ = max(m, n)·ε_mach·σ_1.
* ``ratio``: R = ‖W‖_*/‖W‖_F; g_i = 1/‖W‖_F − ‖W‖_* σ_i/‖W‖_F³ (Zhao22 Sec. 3), with the same τ rule
  for the UVᵀ term. R is scale invariant, ⟨∇R, W⟩ = 0.
* ``schatten:p:q``: R = ‖W‖_{S_p}/‖W‖_{S_q}; ∇‖W‖_{S_p} = ‖W‖_{S_p}^{1−p} U diag(σ^{p−1}) Vᵀ. For p < 1 the
  factor σ^{p−1} is unbounded as σ → 0; it is evaluated at max(σ_i, floor) with
  floor = ``SCHATTEN_FLOOR``·σ_1 (the value R itself uses the true σ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadInputError

SCHATTEN_FLOOR = 1e-8


def _rank_threshold(s: np.ndarray, shape: tuple[int, int]) -> float:
    return max(shape) * np.finfo(float).eps * (float(s[0]) if s.size else 0.0)


def ratio_spectral_grad(s: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
    """g(σ) of the ratio R = ‖W‖_*/‖W‖_F, ∇R(W) = U diag(g) Vᵀ (Zhao22 Sec. 3; docs/math.md §3):

        g_i = 1_{i ∈ support}/‖σ‖₂ − ‖σ‖₁ σ_i/‖σ‖₂³,

    the derivative of ‖σ‖₁ taken as 1 on ``support`` (a 0/1 float array; default: every σ_i) and 0 off it.
    ``support`` = all ones is the smooth part at the positive singular values, σ_i > τ the convention of
    :meth:`RatioPenalty.spectral_grad`, all zeros the smooth part −‖W‖_*W/‖W‖_F³ alone (the proximal step of
    :mod:`flowsim.flows.proximal`). Zero at σ = 0. The one home of this formula in numpy; the numba kernels
    (:mod:`flowsim.integrator.compiled.field`, :mod:`flowsim.validation.compiled_kernels`) mirror it.
    """
    fro = float(np.sqrt(np.sum(s**2)))
    if fro == 0:
        return np.zeros_like(s)
    nuc = float(np.sum(s))
    ones = np.ones_like(s) if support is None else support
    return ones / fro - nuc * s / fro**3


@dataclass(frozen=True)
class Penalty:
    """Base class: a spectral penalty R(W) = f(σ(W))."""

    name: str = "none"

    def value_from_sv(self, s: np.ndarray) -> float:
        """R as a function of the singular values σ (descending)."""
        return 0.0

    def spectral_grad(self, s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """g(σ) with ∇R(W) = U diag(g) Vᵀ; equals u_iᵀ∇R v_i (docs/math.md §3, §5)."""
        return np.zeros_like(s)

    @property
    def is_zero(self) -> bool:
        """True for the ``none`` penalty."""
        return self.name == "none"

    @property
    def sticks_at_zero(self) -> bool:
        """True when R is non-smooth at σ_i = 0 with a bounded-below pull towards 0 (nuclear-type terms):
        ∂R at a rank-deficient W then carries a ball on the null block (see :meth:`null_threshold`), and
        gradient flow at depth 1 is a Filippov flow (docs/math.md, "Non-smooth penalties at depth 1")."""
        return False

    def active_spectral_grad(self, s: np.ndarray) -> np.ndarray:
        """∂f/∂σ_i at the positive singular values ``s`` of a W whose other singular values are exactly 0
        (no numerical-rank threshold, no floor): the range-block part of every element of ∂R(W)."""
        return self.spectral_grad(s, (s.size, s.size))

    def null_threshold(self, s: np.ndarray) -> float:
        """c(σ) ≥ 0 such that the null-block part of the subdifferential is
        ∂R(W) ∩ {null block} = {c·U₀ZV₀ᵀ : ‖Z‖₂ ≤ 1} at a W whose positive singular values are ``s``
        (U₀, V₀ span the left/right null spaces). 0 for penalties smooth at σ = 0; +inf when the one-sided
        slope of R at σ_i = 0 is infinite (a zero singular value then never leaves)."""
        return 0.0

    def value(self, W: np.ndarray) -> float:
        """R(W)."""
        return self.value_from_sv(np.linalg.svd(W, compute_uv=False))

    def grad(self, W: np.ndarray, svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """∇R(W) = U diag(g(σ)) Vᵀ (thin SVD; ``svd`` = a thin SVD of W already at hand)."""
        U, s, Vt = np.linalg.svd(W, full_matrices=False) if svd is None else svd
        return (U * self.spectral_grad(s, W.shape)) @ Vt

    def spec(self) -> str:
        """The CLI spelling of this penalty (``none``, ``ratio``, ``nuclear``, ``schatten:P:Q``)."""
        return self.name


@dataclass(frozen=True)
class RatioPenalty(Penalty):
    """R(W) = ‖W‖_*/‖W‖_F (Zhao22 Sec. 3). ∇R = UVᵀ/‖W‖_F − ‖W‖_* W/‖W‖_F³ (docs/math.md §3)."""

    name: str = "ratio"

    def value_from_sv(self, s: np.ndarray) -> float:
        fro = float(np.sqrt(np.sum(s**2)))
        return float(np.sum(s)) / fro if fro > 0 else 0.0

    def spectral_grad(self, s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """g_i = 1/‖W‖_F − ‖W‖_* σ_i/‖W‖_F³ for σ_i > τ, −‖W‖_* σ_i/‖W‖_F³ (= 0) otherwise
        (:func:`ratio_spectral_grad`)."""
        return ratio_spectral_grad(s, (s > _rank_threshold(s, shape)).astype(float))

    @property
    def sticks_at_zero(self) -> bool:
        return True

    def active_spectral_grad(self, s: np.ndarray) -> np.ndarray:
        """g_i = 1/‖σ‖₂ − ‖σ‖₁σ_i/‖σ‖₂³ at the positive σ_i (Zhao22 Sec. 3; :func:`ratio_spectral_grad`)."""
        return ratio_spectral_grad(s)

    def null_threshold(self, s: np.ndarray) -> float:
        """c = 1/‖W‖_F: R = ‖W‖_*·h(W) with h = 1/‖W‖_F smooth and positive, so ∂R = h ∂‖W‖_* + ‖W‖_*∇h
        (Clarke's product rule, exact since both factors are regular and non-negative) and the null-block
        ball of ∂‖W‖_* (unit spectral-norm ball) is scaled by h. W = 0 has no finite threshold (+inf)."""
        fro = float(np.sqrt(np.sum(s**2)))
        return 1.0 / fro if fro > 0 else float("inf")


@dataclass(frozen=True)
class NuclearPenalty(Penalty):
    """R(W) = ‖W‖_*; ∇R = UVᵀ over σ_i > τ (minimum-norm subgradient; docs/math.md §3)."""

    name: str = "nuclear"

    def value_from_sv(self, s: np.ndarray) -> float:
        return float(np.sum(s))

    def spectral_grad(self, s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        return (s > _rank_threshold(s, shape)).astype(float)

    @property
    def sticks_at_zero(self) -> bool:
        return True

    def active_spectral_grad(self, s: np.ndarray) -> np.ndarray:
        """g_i = 1 at every positive σ_i."""
        return np.ones_like(s)

    def null_threshold(self, s: np.ndarray) -> float:
        """c = 1: ∂‖W‖_* = {U_rV_rᵀ + U₀ZV₀ᵀ : ‖Z‖₂ ≤ 1} (Watson 1992)."""
        return 1.0


@dataclass(frozen=True)
class SchattenRatioPenalty(Penalty):
    """R(W) = ‖W‖_{S_p}/‖W‖_{S_q}, ‖W‖_{S_p} = (Σσ_i^p)^{1/p} (Zhao22 Table 1; docs/math.md §3).

    ∇R = ∇‖W‖_{S_p}/‖W‖_{S_q} − ‖W‖_{S_p}∇‖W‖_{S_q}/‖W‖_{S_q}²,
    ∇‖W‖_{S_p} = ‖W‖_{S_p}^{1−p} U diag(σ^{p−1}) Vᵀ.
    """

    name: str = "schatten"
    p: float = 0.5
    q: float = 2.0 / 3.0

    def value_from_sv(self, s: np.ndarray) -> float:
        sq = _schatten(s, self.q)
        return _schatten(s, self.p) / sq if sq > 0 else 0.0

    def spectral_grad(self, s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        sp, sq = _schatten(s, self.p), _schatten(s, self.q)
        if sq == 0:
            return np.zeros_like(s)
        floor = SCHATTEN_FLOOR * float(s[0])
        sf = np.maximum(s, floor)
        dp = sp ** (1 - self.p) * sf ** (self.p - 1)
        dq = sq ** (1 - self.q) * sf ** (self.q - 1)
        return dp / sq - sp * dq / sq**2

    @property
    def sticks_at_zero(self) -> bool:
        """p ≤ 1 and p < q: near σ_i = 0 the numerator's slope σ_i^{p−1} dominates the denominator's
        σ_i^{q−1}, so R pulls σ_i to 0 (for q < p it pushes σ_i away from 0 and the floor of
        :meth:`spectral_grad` applies)."""
        return self.p <= 1.0 and self.p < self.q

    def active_spectral_grad(self, s: np.ndarray) -> np.ndarray:
        """g_i = ‖σ‖_p^{1−p}σ_i^{p−1}/‖σ‖_q − ‖σ‖_p‖σ‖_q^{1−q}σ_i^{q−1}/‖σ‖_q² at the positive σ_i (no
        floor; Zhao22 Table 1 penalties)."""
        sp, sq = _schatten(s, self.p), _schatten(s, self.q)
        if sq == 0:
            return np.zeros_like(s)
        dp = sp ** (1 - self.p) * s ** (self.p - 1)
        dq = sq ** (1 - self.q) * s ** (self.q - 1)
        return dp / sq - sp * dq / sq**2

    def null_threshold(self, s: np.ndarray) -> float:
        """p = 1 < q: c = 1/‖W‖_{S_q} (the ratio rule with h = 1/‖W‖_{S_q}, smooth at σ = 0 since q > 1).
        p < 1, p < q: +inf — R(σ_i = x) − R(0) ≈ ‖σ‖_p^{1−p}x^p/(p‖σ‖_q) has infinite slope at x = 0+, so no
        finite loss gradient can move a zero singular value. Otherwise 0 (R does not stick at 0)."""
        if not self.sticks_at_zero:
            return 0.0
        if self.p < 1.0:
            return float("inf")
        sq = _schatten(s, self.q)
        return 1.0 / sq if sq > 0 else float("inf")

    def spec(self) -> str:
        return f"schatten:{_fmt(self.p)}:{_fmt(self.q)}"


def _schatten(s: np.ndarray, p: float) -> float:
    pos = s[s > 0]
    return float(np.sum(pos**p) ** (1.0 / p)) if pos.size else 0.0


def _fmt(x: float) -> str:
    return f"{x:g}"


def _parse_fraction(text: str) -> float:
    if "/" in text:
        a, b = text.split("/", 1)
        return float(a) / float(b)
    return float(text)


PENALTY_NAMES = ("none", "ratio", "nuclear", "schatten:P:Q")


def make_penalty(spec: str) -> Penalty:
    """Parse a penalty spelling: ``none``, ``ratio``, ``nuclear`` or ``schatten:P:Q`` (P, Q > 0, fractions
    such as ``1/2`` allowed). Raises :class:`BadInputError` otherwise."""
    spec = spec.strip().lower()
    if spec == "none":
        return Penalty()
    if spec == "ratio":
        return RatioPenalty()
    if spec == "nuclear":
        return NuclearPenalty()
    if spec.startswith("schatten"):
        parts = spec.split(":")
        if len(parts) != 3:
            raise BadInputError("--penalty schatten must be written schatten:P:Q (e.g. schatten:1/2:2/3), "
                                f"got {spec!r}")
        try:
            p, q = _parse_fraction(parts[1]), _parse_fraction(parts[2])
        except (ValueError, ZeroDivisionError):
            raise BadInputError(f"--penalty schatten:P:Q needs numbers P and Q, got {spec!r}") from None
        if not (np.isfinite(p) and np.isfinite(q) and p > 0 and q > 0):
            raise BadInputError(f"--penalty schatten:P:Q needs P > 0 and Q > 0, got {spec!r}")
        return SchattenRatioPenalty(p=p, q=q)
    raise BadInputError(f"--penalty must be one of {'|'.join(PENALTY_NAMES)}, got {spec!r}")
