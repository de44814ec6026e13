"""Depth-1 gradient flow of ℓ + λR for the nuclear-type penalties (nuclear, ratio, Schatten ratios with
p ≤ 1 and p < q), which are non-smooth where a singular value is 0: the Filippov solution, i.e. the
minimal-norm element of the Clarke subdifferential (docs/math.md, "Non-smooth penalties at depth 1").

At a W of rank r with W = U_r Σ_r V_rᵀ and null-space bases U₀, V₀, the minimal-norm subgradient is

    ∂°F(W) = P_U G + (I − P_U) G P_V + U₀ S_τ(U₀ᵀ∇ℓ(W)V₀) V₀ᵀ,     G = ∇ℓ(W) + λ U_r diag(g(σ_r)) V_rᵀ,

with P_U = U_rU_rᵀ, P_V = V_rV_rᵀ, g the penalty's derivative at the positive singular values, τ = λ·c(σ_r)
the penalty's null-block threshold (:meth:`flowsim.penalties.Penalty.null_threshold`) and S_τ the spectral
soft-thresholding (CCS10). While ‖U₀ᵀ∇ℓV₀‖₂ ≤ τ the last term is 0 and the velocity is the projection of G
on the tangent space of the rank-r manifold: the flow stays of rank r and is smooth. Three events change
that: a singular value reaching 0 (``sigma_to_zero``; it is set to 0 and leaves the active set), the top
singular value of the null-block loss gradient rising above τ (``leaves_zero``; the null block starts to
grow along S_τ) and a growing null-block direction reaching the zero level (``rank_up``; it joins the active
set).

The state is the full W (row-major); ``rank`` is the number of active singular values. A shrinking
singular value is set to 0 when it reaches half the zero level ``zero_level`` = ``zero_tol``·σ₁(W) (σ₁ at
the start of the current segment; σ₁(W*) while W = 0), or half its value at the start of the segment if
that is lower. The jump is at most ``zero_level``/2, but the error it leaves once the true σ_r would have
reached 0 is of second order, O(σ_r·Δt) with Δt = σ_r/|σ̇_r| (measured: ∝ zero_tol², 3e-7·σ₁ at the default
on the 12×12 acceptance problem). Stopping there also keeps the integration out of the stiff layer
σ_r → 0, where the penalty's polar factor U_rV_rᵀ relaxes the singular vectors at rate λc/σ_r, and above
what the integrator's local errors leave in the null block (≈ rtol·|W_ij| per step). A growing null-block
direction joins the active set at the much lower ``leave_level`` = ``leave_tol``·σ₁(W), so that its growth
from 0 is integrated exactly on the rank-(r+1) manifold almost from the start.

A sliding segment at a low active rank of a large W (``CHART_MIN_SIZE``, ``CHART_MAX_RANK_FRACTION``) is
integrated in the factored chart W = USVᵀ of the rank-r manifold (:class:`FixedRankChart`, KL07): the
same field, O(mnr) per evaluation instead of a full SVD of W, with the null block exactly 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..penalties import Penalty
from ..problems import CompletionProblem
from .base import EndProductStateFlow
from .gradient import singular_value_projection

#: relative zero level of a shrinking singular value (module docstring): its error is second order
#: (≈ 3e-7·σ₁ at 1e-3 on the 12×12 problem, ∝ zero_tol²), and it keeps the run out of the stiff layer σ → 0.
ZERO_TOL = 1e-3
#: relative level at which a growing null-block direction joins the active set
LEAVE_TOL = 1e-6
#: events after which the run stops as ``failed`` (a chattering sequence of rank changes)
MAX_EVENTS = 20000
#: events listed one by one in the run's statistics (the counts are always complete)
MAX_LISTED_EVENTS = 500
#: sliding segments of a W with min(m, n) at least this are integrated in the factored chart of the rank-r
#: manifold (:class:`FixedRankChart`) while r ≤ ``CHART_MAX_RANK_FRACTION``·min(m, n): an evaluation costs
#: O(mnr) instead of a full SVD of W. Smaller problems keep the full-W segments (their SVD is cheap).
CHART_MIN_SIZE = 24
CHART_MAX_RANK_FRACTION = 0.25


def spectral_soft_threshold(X: np.ndarray, tau: float) -> np.ndarray:
    """S_τ(X) = A diag(max(s − τ, 0)) Bᵀ for X = A diag(s) Bᵀ (CCS10, singular value thresholding).

    It is X − τZ* for Z* = argmin_{‖Z‖₂ ≤ 1} ‖X − τZ‖_F, the minimal-norm element of X + τ·(unit
    spectral-norm ball): the minimal-norm choice of a nuclear-type subgradient on the null block. 0 when
    ‖X‖₂ ≤ τ (and for τ = +inf).
    """
    if X.size == 0 or not np.isfinite(tau):
        return np.zeros_like(X)
    s = np.linalg.svd(X, compute_uv=False)
    if s.size == 0 or s[0] <= tau:
        return np.zeros_like(X)
    A, s, Bt = np.linalg.svd(X, full_matrices=False)
    return (A * np.maximum(s - tau, 0.0)) @ Bt


def filippov_velocity(
    W: np.ndarray, problem: CompletionProblem, penalty: Penalty, lam: float, rank: int,
    svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Ẇ = −∂°(ℓ + λR)(W), the minimal-norm subgradient at the rank-``rank`` point nearest to W (Filippov
    1988; Clarke 1983 Prop. 2.3.13 for the product rule; CCS10 for S_τ):

        Ẇ = −U [G̃ with G̃_00 replaced by S_τ(G̃_00)] Vᵀ,   G̃ = Uᵀ∇ℓ(W)V + λ diag(g(σ_1..σ_r), 0),

    in the full SVD basis W = U diag(σ) Vᵀ, where G̃_00 is the null block (rows and columns past ``rank``)
    and τ = λ·c(σ_1..σ_r). Singular values past ``rank`` are treated as 0 (they are at most the leave level
    or what the integrator's errors leave there).
    """
    U, s, Vt = np.linalg.svd(W, full_matrices=True) if svd is None else svd
    r = int(rank)
    Gt = U.T @ problem.grad(W) @ Vt.T
    if lam != 0.0 and r > 0:
        Gt[np.arange(r), np.arange(r)] += lam * penalty.active_spectral_grad(s[:r])
    tau = lam * penalty.null_threshold(s[:r])
    Gt[r:, r:] = spectral_soft_threshold(Gt[r:, r:], tau)
    np.negative(Gt, out=Gt)
    return U @ Gt @ Vt


class _SvdCache:
    """The full SVD of the last state seen (event functions of one step share it)."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape
        self.y: np.ndarray | None = None
        self.value: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.y is None or not np.array_equal(self.y, y):
            self.y = np.array(y, copy=True)
            self.value = np.linalg.svd(y.reshape(self.shape), full_matrices=True)
        assert self.value is not None
        return self.value


class FilippovSpectralFlow(EndProductStateFlow):
    """Depth-1 gradient flow of ℓ + λR for a penalty with ``sticks_at_zero`` (nuclear, ratio, Schatten p ≤ 1,
    p < q): the minimal-norm-subgradient (Filippov) solution, integrated between rank-changing events by
    :func:`flowsim.integrator.solve_sliding` (module docstring). State: W raveled row-major."""

    name = "gf"
    formulation = "filippov"
    formulation_reason = ("depth 1 with a penalty that is non-smooth at σ_i = 0: minimal-norm-subgradient "
                          "(Filippov) flow with rank-changing events")

    def __init__(self, problem: CompletionProblem, penalty: Penalty, lam: float, zero_tol: float = ZERO_TOL,
                 leave_tol: float = LEAVE_TOL):
        if not penalty.sticks_at_zero:
            raise ValueError(f"penalty {penalty.spec()} is not non-smooth at σ = 0; use EndProductFlow")
        super().__init__(problem, 1, penalty, lam)
        self.zero_tol = float(zero_tol)
        self.leave_tol = float(leave_tol)
        self.zero_level = 0.0
        self.leave_level = 0.0
        self.rank = min(self.shape)
        self.events: list[dict[str, Any]] = []
        self.event_counts: dict[str, int] = {"sigma_to_zero": 0, "leaves_zero": 0, "rank_up": 0}
        self.segment_counts: dict[str, int] = {"full": 0, "chart": 0}
        self.svd = _SvdCache(self.shape)
        # set by a leaves_zero event: the next segment starts unconstrained even where the located crossing
        # left the excess a round-off below 0 (else it would slide again and leave again at once)
        self._left_zero = False

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        if len(factors) != 1:
            raise ValueError(f"the Filippov flow is a depth-1 model, got {len(factors)} factors")
        W = np.array(factors[0], dtype=float)
        s = np.linalg.svd(W, compute_uv=False)
        self.set_levels(float(s[0]) if s.size else 0.0)
        self.rank = int(np.sum(s > self.leave_level))
        return self.truncate(W, self.rank).ravel()

    def set_levels(self, sigma_1: float) -> None:
        """The zero and leave levels relative to σ₁(W) (σ₁(W*) while W = 0), module docstring."""
        scale = sigma_1 if sigma_1 > 0 else float(np.linalg.norm(self.problem.W_star, 2))
        self.zero_level = self.zero_tol * scale
        self.leave_level = self.leave_tol * scale

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        W = y.reshape(self.shape)
        return filippov_velocity(W, self.problem, self.penalty, self.lam, self.rank).ravel()

    @staticmethod
    def truncate(W: np.ndarray, rank: int) -> np.ndarray:
        """The best rank-``rank`` approximation U_r Σ_r V_rᵀ (Eckart–Young)."""
        U, s, Vt = np.linalg.svd(W, full_matrices=False)
        return (U[:, :rank] * s[:rank]) @ Vt[:rank]

    def null_gradient_excess(self, y: np.ndarray) -> float:
        """‖U₀ᵀ∇ℓ(W)V₀‖₂ − τ on the null block of the active set: > 0 exactly when a zero singular value
        starts to grow (−inf when it never can: no null block, or τ = +inf)."""
        r = self.rank
        if r >= min(self.shape):
            return -np.inf
        U, s, Vt = self.svd(y)
        tau = self.lam * self.penalty.null_threshold(s[:r])
        if not np.isfinite(tau):
            return -np.inf
        N = U[:, r:].T @ self.problem.grad(y.reshape(self.shape)) @ Vt[r:].T
        return float(np.linalg.norm(N, 2)) - tau

    def begin_segment(self, t: float, y: np.ndarray) -> tuple[np.ndarray, bool]:
        """The sliding rule at the start of a segment of constant active rank from (t, y): (state, sliding).

        The levels are set from σ₁(W). When the null block is sliding (‖U₀ᵀ∇ℓV₀‖₂ < τ) the state is
        truncated to the active rank (its null block exactly 0, clearing what the integrator's errors left
        there); otherwise the directions that grew together past the leave level join the active set. Right
        after a ``leaves_zero`` event the segment is unconstrained: the event sits at the crossing
        ‖U₀ᵀ∇ℓV₀‖₂ = τ, where the sign of the excess is the root finder's round-off.
        """
        self.set_levels(float(self.svd(y)[1][0]))
        left, self._left_zero = self._left_zero, False
        sliding = not left and self.rank < min(self.shape) and self.null_gradient_excess(y) < 0
        if sliding:
            return self.truncate(y.reshape(self.shape), self.rank).ravel(), True
        sv = self.svd(y)[1]
        while self.rank < min(self.shape) and sv[self.rank] > self.leave_level:
            self.rank += 1
            self.record("rank_up", t, self.rank - 1)
        return y, False

    def segment_states(self, ys: np.ndarray, sliding: bool) -> np.ndarray:
        """The saved states (rows of ``ys``) of a segment begun by :meth:`begin_segment`: a sliding segment
        ends at the first leaving event, so its states have the active rank exactly."""
        if not sliding:
            return ys
        return np.array([self.truncate(x.reshape(self.shape), self.rank).ravel() for x in ys])

    def use_chart(self, sliding: bool) -> bool:
        """Whether the segment begun by :meth:`begin_segment` is integrated in :class:`FixedRankChart`:
        a sliding segment of a large enough W at a low enough active rank (``CHART_MIN_SIZE``,
        ``CHART_MAX_RANK_FRACTION``)."""
        k = min(self.shape)
        return sliding and k >= CHART_MIN_SIZE and 0 < self.rank <= CHART_MAX_RANK_FRACTION * k

    def drop_level(self, y: np.ndarray) -> float:
        """The level at which σ_r is set to 0 in a segment from y: half of min(zero level, σ_r(y))."""
        r = self.rank
        return 0.5 * min(self.zero_level, float(self.svd(y)[1][r - 1])) if r > 0 else 0.0

    def event_functions(self, y: np.ndarray, sliding: bool) -> list[Callable[[float, np.ndarray], float]]:
        """The terminal events of a segment from y (``sigma_to_zero``, ``rank_up``, and ``leaves_zero`` when
        the segment slides, ``sliding`` from :meth:`begin_segment`; module docstring), in ``solve_ivp``'s
        form."""
        r, leave = self.rank, self.leave_level
        drop = self.drop_level(y)
        events: list[Callable[[float, np.ndarray], float]] = []

        def sigma_to_zero(t: float, x: np.ndarray) -> float:
            return float(self.svd(x)[1][r - 1]) - drop

        def rank_up(t: float, x: np.ndarray) -> float:
            # only a null block that is growing (S_τ ≠ 0) can promote a direction: the integrator's
            # local errors also leave round-off-sized singular values there
            if self.null_gradient_excess(x) <= 0:
                return -leave
            return float(self.svd(x)[1][r]) - leave

        def leaves_zero(t: float, x: np.ndarray) -> float:
            return self.null_gradient_excess(x)

        sigma_to_zero.direction, sigma_to_zero.terminal = -1, True  # type: ignore[attr-defined]
        rank_up.direction, rank_up.terminal = 1, True  # type: ignore[attr-defined]
        leaves_zero.direction, leaves_zero.terminal = 1, True  # type: ignore[attr-defined]
        if r > 0:
            events.append(sigma_to_zero)
        if r < min(self.shape):
            events.append(rank_up)
            if sliding:  # leaving the zero set is the next event (a kink)
                events.append(leaves_zero)
        return events

    def record(self, kind: str, t: float, index: int) -> None:
        """Count a rank-changing event (and list it, up to ``MAX_LISTED_EVENTS``)."""
        self.event_counts[kind] += 1
        if len(self.events) < MAX_LISTED_EVENTS:
            self.events.append({"t": float(t), "kind": kind, "index": int(index), "rank_after": self.rank})

    def apply_event(self, t: float, y: np.ndarray, kind: str) -> np.ndarray:
        """Update the active rank (and, for a singular value reaching 0, the state) at a terminal event of
        kind ``kind`` (the name of one of :meth:`event_functions`) at (t, y); returns the state to continue
        from."""
        y = np.asarray(y, dtype=float)
        if kind == "sigma_to_zero":
            # σ_r is at its drop level: it reaches 0 after σ_r/|σ̇_r| more (recorded as the event time)
            W = y.reshape(self.shape)
            U, s, Vt = np.linalg.svd(W, full_matrices=False)
            r = self.rank
            Wdot = self(t, y).reshape(self.shape)
            speed = -float(singular_value_projection(Wdot, U[:, r - 1:r], Vt[r - 1:r])[0])
            t_zero = t + float(s[self.rank - 1]) / speed if speed > 0 else t
            self.rank -= 1
            y = self.truncate(W, self.rank).ravel()
            self.record(kind, t_zero, self.rank)
        elif kind == "rank_up":
            self.rank += 1
            self.record(kind, t, self.rank - 1)
        else:
            self._left_zero = kind == "leaves_zero"
            self.record(kind, t, self.rank)
        return y

    def statistics(self) -> dict[str, Any]:
        """Events and rank for ``run.json`` (``stats``)."""
        return {"formulation": self.formulation, "zero_tol": self.zero_tol, "leave_tol": self.leave_tol,
                "rank_final": self.rank, "segment_counts": dict(self.segment_counts),
                "event_counts": dict(self.event_counts), "events": list(self.events),
                "events_listed": len(self.events)}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "formulation": self.formulation, "zero_tol": self.zero_tol,
                "leave_tol": self.leave_tol}


class FixedRankChart:
    """The sliding segment field of a :class:`FilippovSpectralFlow` at active rank r, in the factored chart
    W = U S Vᵀ (U m×r, V n×r orthonormal, S r×r invertible) of the rank-r manifold: the dynamical low-rank
    equations (KL07), which integrate exactly the projection of −G on the tangent space,

        Ṡ = −UᵀGV,   U̇ = −(I − UUᵀ)GVS⁻¹,   V̇ = −(I − VVᵀ)GᵀUS⁻ᵀ,   G = ∇ℓ(W) + λU_r diag(g) V_rᵀ,

    (d/dt USVᵀ = −[P_U G + (I − P_U)GP_V], the velocity of :func:`filippov_velocity` while the null block
    slides; docs/math.md, "Non-smooth penalties at depth 1"). With S = A diag(σ) Bᵀ (an r×r SVD) the
    penalty term is λUA diag(g(σ)) BᵀVᵀ, which lies in Uᵀ·V and enters Ṡ alone, and S⁻¹ = B diag(1/σ) Aᵀ.
    One evaluation costs O(mnr) (the sparse-pattern gradient of the loss and two thin products) instead of
    the full SVD of W, and the null block is exactly 0 by construction. State: (U, S, V) raveled.
    """

    def __init__(self, flow: FilippovSpectralFlow, W: np.ndarray):
        self.flow = flow
        self.m, self.n = flow.shape
        self.r = r = flow.rank
        U, s, Vt = np.linalg.svd(np.asarray(W, dtype=float).reshape(flow.shape), full_matrices=False)
        self.z0 = self.encode(U[:, :r], np.diag(s[:r]), Vt[:r].T)

    def encode(self, U: np.ndarray, S: np.ndarray, V: np.ndarray) -> np.ndarray:
        """(U, S, V) raveled into one state vector."""
        return np.concatenate([U.ravel(), S.ravel(), V.ravel()])

    def split(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The factors (U, S, V) of a chart state."""
        m, n, r = self.m, self.n, self.r
        U = z[: m * r].reshape(m, r)
        S = z[m * r: m * r + r * r].reshape(r, r)
        V = z[m * r + r * r:].reshape(n, r)
        return U, S, V

    def decode(self, z: np.ndarray) -> np.ndarray:
        """W = U S Vᵀ raveled (the state of the full flow)."""
        U, S, V = self.split(np.asarray(z, dtype=float))
        return (U @ S @ V.T).ravel()

    def decode_rows(self, zs: np.ndarray) -> np.ndarray:
        """:meth:`decode` of each row of ``zs``."""
        return np.array([self.decode(z) for z in np.atleast_2d(zs)]).reshape(-1, self.m * self.n)

    def __call__(self, t: float, z: np.ndarray) -> np.ndarray:
        flow = self.flow
        U, S, V = self.split(z)
        A, s, Bt = np.linalg.svd(S)
        G = flow.problem.grad(U @ S @ V.T)
        GV = G @ V
        GtU = G.T @ U
        core = U.T @ GV
        if flow.lam != 0.0:
            core = core + flow.lam * (A * flow.penalty.active_spectral_grad(s)) @ Bt
        S_inv = (Bt.T / s) @ A.T
        dU = -(GV - U @ (U.T @ GV)) @ S_inv
        dV = -(GtU - V @ (V.T @ GtU)) @ S_inv.T
        return self.encode(dU, -core, dV)

    def singular_values(self, z: np.ndarray) -> np.ndarray:
        """σ(W) = σ(S) (U, V orthonormal)."""
        return np.linalg.svd(self.split(z)[1], compute_uv=False)

    def null_gradient_excess(self, z: np.ndarray) -> float:
        """‖(I − UUᵀ)∇ℓ(W)(I − VVᵀ)‖₂ − τ (:meth:`FilippovSpectralFlow.null_gradient_excess` in the chart)."""
        flow = self.flow
        U, S, V = self.split(z)
        s = np.linalg.svd(S, compute_uv=False)
        tau = flow.lam * flow.penalty.null_threshold(s)
        if not np.isfinite(tau):
            return -np.inf
        G = flow.problem.grad(U @ S @ V.T)
        G = G - U @ (U.T @ G)
        N = G - (G @ V) @ V.T
        return float(np.linalg.norm(N, 2)) - tau

    def event_functions(self, drop: float) -> list[Callable[[float, np.ndarray], float]]:
        """The terminal events of a sliding segment in the chart: ``sigma_to_zero`` (σ_r(S) falls to
        ``drop``) and ``leaves_zero`` (the null-block loss gradient exceeds τ). ``rank_up`` cannot occur
        while the null block slides (it is exactly 0 in the chart)."""
        r = self.r

        def sigma_to_zero(t: float, z: np.ndarray) -> float:
            return float(self.singular_values(z)[r - 1]) - drop

        def leaves_zero(t: float, z: np.ndarray) -> float:
            return self.null_gradient_excess(z)

        sigma_to_zero.direction, sigma_to_zero.terminal = -1, True  # type: ignore[attr-defined]
        leaves_zero.direction, leaves_zero.terminal = 1, True  # type: ignore[attr-defined]
        events: list[Callable[[float, np.ndarray], float]] = [sigma_to_zero]
        if r < min(self.m, self.n):
            events.append(leaves_zero)
        return events
