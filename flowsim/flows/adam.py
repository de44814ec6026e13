"""Adam-type flows (docs/math.md §8): the printed Zhao22 Theorem 1/3 flow, the exact layer-wise
variance-adapted flow, and the Adam ODE with moment states (BB21).

* ``adam-printed`` (:class:`AdamPrintedFlow`, docs/math.md §8.1): end-product state W; Ẇ from Zhao22 Eq. 6
  (Theorem 1) or Eq. 9 (Theorem 3, ratio penalty) *as printed* (:mod:`flowsim.flows.printed`), with the
  layer gradients taken from the canonical balanced factorization of W (docs/math.md §1).
* ``adam-layer`` (:class:`AdamLayerFlow`, docs/math.md §8.2): layer state; Ẇ_j = −S_j ⊙ ∇_{W_j}(ℓ + λR).
* ``adam-ode`` (:class:`AdamODEFlow`, docs/math.md §8.3): layer, first- and second-moment states; the faithful
  continuous model of discrete Adam at step size η.
* ``adam-sign`` (:class:`AdamSignFlow`): layer state; Ẇ_j = −g_j/(|g_j| + ε), the limit of discrete Adam
  with β₁, β₂ fixed and η → 0 (BB21; ``docs/math.md``, "The fixed-β limit").

``adam-printed``, ``adam-layer`` and ``adam-sign`` move at speed O(1) however small ∇ℓ is, so they reach the
stationary set in finite time; the integrator drives them with :func:`flowsim.integrator.solve_with_arrival`
(``docs/math.md``, "Finite-time arrival").

The ε of S_j (adam-printed, adam-layer) is Adam's ε (default 1e-8), entering as
S_j = (∇^{⊙2} + s_j² + ε²)^{⊙−1/2} (see :mod:`flowsim.flows.variance`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import BadInputError, check_positive
from ..factors import end_product
from ..penalties import Penalty, RatioPenalty
from ..problems import CompletionProblem
from .adam_sliding import (
    DRIFT_RATE,
    RULE_DERIVATIVE,
    NullBlock,
    SlidingPieces,
    averaged_moments,
    condition_scan,
    kink_margin,
    kink_supported,
    moments_derivative,
    moments_mu_derivative,
    null_block,
    null_component,
    sign_rule,
    sliding_control,
    sliding_pieces,
    sliding_velocity,
    variance_rule,
)
from .base import ArrivalFlow, EndProductStateFlow
from .gradient import layer_gradients, total_gradient
from .layer_state import LayerStateFlow
from .printed import CONVENTIONS, signed_balanced_factors, theorem1_velocity, theorem3_velocity
from .variance import variance_adapted_layer_velocity

DEFAULT_ADAM_EPS = 1e-8
#: relative forward-difference step of the sliding field's Jacobian (`AdamLayerFlow.kink_jacobian`)
KINK_FD_STEP = 1e-7
#: points of μ ∈ [−1, 1] at which `AdamLayerFlow.kink_state` scans the sliding condition for its solutions
KINK_SCAN = 401


def _check_adam(lr: float, beta1: float, beta2: float, eps: float) -> None:
    check_positive("--lr", lr)
    for name, b in (("--beta1", beta1), ("--beta2", beta2)):
        if not (math.isfinite(b) and 0 <= b < 1):
            raise BadInputError(f"{name} must lie in [0, 1), got {b!r}")
    if not (math.isfinite(eps) and eps >= 0):
        raise BadInputError(f"--adam-eps must be a finite number ≥ 0, got {eps!r}")


class AdamLayerFlow(LayerStateFlow, ArrivalFlow):
    """Exact layer-wise variance-adapted flow (docs/math.md §8.2, the dynamics Zhao22 Theorem 1 approximates):

        Ẇ_j = −S_j ⊙ ∇_{W_j}(ℓ + λR),  S_j = ((∇_{W_j})^{⊙2} + s_j² + ε²)^{⊙−1/2},  s_j² = var(∇_{W_j}).

    Independent of η. Its end-product velocity is −Σ_j A_j G_j A_jᵀ vec(G) (never formed here).
    """

    name = "adam-layer"

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0,
        eps: float = DEFAULT_ADAM_EPS,
    ):
        super().__init__(problem, depth, penalty, lam)
        _check_adam(1.0, 0.0, 0.0, eps)
        self.eps = float(eps)
        self.kink_stats: dict[str, int] = {"evaluations": 0}

    #: the averaged field at the kink of a nuclear-type penalty (:mod:`flowsim.flows.adam_sliding`)
    kink_rule = staticmethod(variance_rule)

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        factors = self.layer_factors(y)
        W = end_product(factors)
        svd = None
        if self.lam and self.penalty.sticks_at_zero:  # one SVD for the kink test and the penalty's gradient
            svd = np.linalg.svd(W, full_matrices=False)
            block = null_block(W, self.penalty, self.lam, svd=svd)
            if block is not None and kink_supported(block):
                return self.kink_velocity(factors, W, block)
        return self.smooth_velocity(factors, W, svd)

    def smooth_velocity(self, factors: list[np.ndarray], W: np.ndarray,
                        svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The packed field away from the kink (every σ_i(W) > 0 or a penalty smooth at σ = 0); beyond a
        1×1 null block, where no rule is validated, the penalty's gradient field (the driver records it)."""
        G = total_gradient(W, self.problem, self.penalty, self.lam, svd)
        return np.concatenate([v.ravel() for v in variance_adapted_layer_velocity(factors, G, self.eps)])

    def kink_velocity(self, factors: list[np.ndarray], W: np.ndarray, block: NullBlock) -> np.ndarray:
        """The packed field where σ_min(W) = 0 (``block``, 1×1): the moment-averaged sliding rule of
        :mod:`flowsim.flows.adam_sliding` (``docs/math.md``, "Adam-type flows at the kink"). A larger null
        block has no validated rule: there the field is the penalty's gradient (:meth:`__call__`), and the
        driver records where that began (``kink_margin``)."""
        pieces = sliding_pieces(factors, self.problem.grad(W), self.penalty, self.lam, block)
        mu, what = sliding_control(pieces, self.kink_rule, self.eps)
        self.kink_stats["evaluations"] += 1
        self.kink_stats[what] = self.kink_stats.get(what, 0) + 1
        return self.sliding_field(pieces, mu)

    def sliding_field(self, pieces: SlidingPieces, mu: float) -> np.ndarray:
        """The packed layer velocities of the moment-averaged rule at the mean sign μ."""
        return np.concatenate([v.ravel() for v in sliding_velocity(pieces, mu, self.kink_rule, self.eps)])

    def kink_events(self) -> list:
        """The recorded event of the driver: a second singular value of W reaches the kink (or one of a
        non-square W), where the moment-averaged rule is not validated (``kink_margin``); the field there is
        the penalty's gradient. None without a nuclear-type penalty."""
        if not (self.lam and self.penalty.sticks_at_zero):
            return []

        def null_block_grows(t: float, y: np.ndarray) -> float:
            return kink_margin(self.end_product(y))

        null_block_grows.terminal = False  # type: ignore[attr-defined]
        null_block_grows.direction = -1  # type: ignore[attr-defined]
        return [null_block_grows]

    def null_rank(self, y: np.ndarray) -> int:
        """How many singular values of W are at the kink (0 when the field is the smooth one)."""
        block = null_block(self.end_product(y), self.penalty, self.lam)
        return 0 if block is None else int(min(block.shape))

    def _at_kink(self, y: np.ndarray) -> tuple[list[np.ndarray], NullBlock, SlidingPieces] | None:
        """(layer factors, null block, sliding pieces) at y where W has a 1×1 null block at the kink; None
        elsewhere."""
        factors = self.layer_factors(y)
        W = end_product(factors)
        block = null_block(W, self.penalty, self.lam)
        if block is None or not kink_supported(block):
            return None
        return factors, block, sliding_pieces(factors, self.problem.grad(W), self.penalty, self.lam, block)

    def kink_state(self, y: np.ndarray) -> dict[str, Any] | None:
        """What the sliding rule sees at y (None away from a 1×1 null block), for the driver's report where
        a run stops at the kink (``docs/math.md``, "Adam-type flows at the kink", "Still stopping"): its case
        and mean sign μ; the scan of the sliding condition over ``KINK_SCAN`` values of μ
        (:func:`~flowsim.flows.adam_sliding.condition_scan`: F(±1), its scale, every consistent μ — more
        than one where the rule does not fix the velocity); and how many averaged entries of g lie in the
        ε-layer of the field (|E[g]| ≤ 1e3·ε) with a spread below ε²."""
        at = self._at_kink(y)
        if at is None:
            return None
        _, block, pieces = at
        mu, what = sliding_control(pieces, self.kink_rule, self.eps)
        layer = sum(int(np.count_nonzero((np.abs(m) <= 1e3 * self.eps) & (s - m * m <= self.eps**2)))
                    for m, s in averaged_moments(pieces, mu))
        return {"case": what, "mu": mu, "sigma_min": float(block.s0[0]),
                **condition_scan(pieces, self.kink_rule, self.eps, KINK_SCAN), "entries_in_eps_layer": layer}

    def field_derivative(self, g: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """∂Ẇ_j/∂g_j of the field −S_j ⊙ g_j per layer as (d, u, w): ``diag(d) + u wᵀ`` (docs/math.md §8.2).
        With S_i = (g_i² + s² + ε²)^{−1/2} and s² = mean(g²) − mean(g)² over the layer's n entries,
        ∂(−g_i S_i)/∂g_k = (−S_i + g_i² S_i³) δ_ik + g_i S_i³ (g_k − ḡ)/n."""
        assert self.packer is not None, "call initial_state first"
        out = []
        for lo, hi in zip(self.packer.offsets[:-1], self.packer.offsets[1:]):
            gj = g[int(lo):int(hi)]
            S = 1.0 / np.sqrt(gj * gj + np.var(gj) + self.eps * self.eps)
            out.append((-S + gj * gj * S**3, gj * S**3, (gj - gj.mean()) / gj.size))
        return out

    def jac(self, t: float, y: np.ndarray) -> np.ndarray:
        """The dense Jacobian ∂ẏ/∂y = (∂Ẇ/∂g)·(∂g/∂y): the field's derivative in the layer gradients
        (:meth:`field_derivative`) times the Hessian of ℓ + λR in the layer coordinates
        (:meth:`~flowsim.flows.layer_state.LayerStateFlow.objective_hessian`). For the implicit phase of the
        finite-time arrival on small states (``docs/math.md``, "Finite-time arrival")."""
        kink = self.kink_jacobian(y)
        if kink is not None:
            return kink
        H = self.objective_hessian(y)
        g = self.arrival_gradient(y)
        J = np.empty_like(H)
        assert self.packer is not None
        offsets = self.packer.offsets
        for (d, u, w), lo, hi in zip(self.field_derivative(g), offsets[:-1], offsets[1:]):
            rows = H[int(lo):int(hi)]
            J[int(lo):int(hi)] = d[:, None] * rows + np.outer(u, w @ rows)
        return J

    def kink_jacobian(self, y: np.ndarray) -> np.ndarray | None:
        """At the kink, the Jacobian of the sliding field, None away from it. The field is
        f(y, μ(y)) = rule(E[g](y, μ), E[g⊙g](y, μ)) with μ the root of the sliding condition F(y, μ) = 0, so
        J = ∂f/∂y − (∂f/∂μ)(∂F/∂y)ᵀ/(∂F/∂μ) (implicit function theorem; only ∂f/∂y where μ = ±1 is fixed).
        The pieces g⁰_j, a_j, b_j, λc are smooth in y with the null dimension held fixed (the penalty's
        Hessian is not defined at the kink, and differencing through the root solve would add its tolerance
        / h): their change is a forward difference at fixed μ. Everything after them is exact: the moments by
        the product rule (``moments_derivative``), the rule's derivative in the moments
        (``RULE_DERIVATIVE``) — the field turns over on the scale ε where an averaged entry of g and its
        spread vanish, far below any difference step — and ∂/∂μ (``moments_mu_derivative``)."""
        at = self._at_kink(y)
        if at is None:
            return None
        factors, block, pieces = at
        rank, rule, eps = int(block.s_r.size), self.kink_rule, self.eps
        rule_derivative = RULE_DERIVATIVE[rule]
        mu, what = sliding_control(pieces, rule, eps)
        moments = averaged_moments(pieces, mu)
        f0 = sliding_velocity(pieces, mu, rule, eps)

        def derivative(d_moments: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
            return [rule_derivative(m, s, eps, dm, ds) for (m, s), (dm, ds) in zip(moments, d_moments)]

        assert self.packer is not None
        P = self.packer.size
        f_y = np.zeros((P, P))
        F_y = np.zeros(P)
        base = null_component(pieces, f0)
        for i in range(P):
            h = KINK_FD_STEP * max(1.0, abs(float(y[i])))
            yi = np.array(y, dtype=float)
            yi[i] += h
            Fi = self.layer_factors(yi)
            Wi = end_product(Fi)
            bi = null_block(Wi, self.penalty, self.lam, rank=rank)
            assert bi is not None
            pi = sliding_pieces(Fi, self.problem.grad(Wi), self.penalty, self.lam, bi)
            # at σ_min ≈ 0 the SVD may flip u₀ or v₀ alone: bring a_j, b_j to the frame at y, and the drift
            # target −DRIFT_RATE·u₀ᵀWv₀ is linear in the signed null block of that frame
            su = float(np.sign(bi.U0[:, 0] @ block.U0[:, 0]))
            sv = float(np.sign(bi.V0[:, 0] @ block.V0[:, 0]))
            pi = SlidingPieces(pi.g0, [su * a for a in pi.A], [sv * b for b in pi.B], pi.radius)
            target = -DRIFT_RATE * float(block.U0[:, 0] @ Wi @ block.V0[:, 0])
            dp = SlidingPieces([(x - x0) / h for x, x0 in zip(pi.g0, pieces.g0)],
                               [(x - x0) / h for x, x0 in zip(pi.A, pieces.A)],
                               [(x - x0) / h for x, x0 in zip(pi.B, pieces.B)],
                               (pi.radius - pieces.radius) / h)
            column = derivative(moments_derivative(pieces, dp, mu))
            f_y[:, i] = np.concatenate([c.ravel() for c in column])
            # product rule for F = Σ_j a_jᵀ f_j b_j − target: the null vectors move at fixed f, f moves
            F_y[i] = ((null_component(pi, f0) - base) / h + null_component(pieces, column)
                      - (target - pieces.target) / h)
        if what == "slides":
            f_mu = derivative(moments_mu_derivative(pieces, mu))
            F_mu = null_component(pieces, f_mu)
            f_y -= np.outer(np.concatenate([c.ravel() for c in f_mu]), F_y / F_mu)
        J = np.zeros((y.size, y.size))
        J[:P, :P] = f_y
        return J

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "eps": self.eps, "kink_rule": "moment-averaged sliding at σ_i(W) = 0"
                if self.penalty.sticks_at_zero and self.lam else "none (smooth penalty)"}


def sign_velocity(g: np.ndarray, eps: float) -> np.ndarray:
    """Ẇ = −g/(|g| + ε) entry-wise: Adam's update direction m̂/(√v̂ + ε) with m̂ = g and v̂ = g⊙g, i.e. the
    fixed-β, η → 0 limit of Adam (BB21; ``docs/math.md``, "The fixed-β limit")."""
    return -g / (np.abs(g) + eps)


class AdamSignFlow(AdamLayerFlow):
    """The fixed-β limit of discrete Adam (BB21; ``docs/math.md``, "The fixed-β limit"), per layer:

        Ẇ_j = −g_j/(|g_j| + ε),  g_j = ∇_{W_j}(ℓ + λR) = W_{N:j+1}ᵀ (∇ℓ + λ∇R)(W) W_{j−1:1}ᵀ.

    With β₁, β₂ fixed and t = kη, the moment windows η/(1 − β₁) and η/(1 − β₂) shrink to 0 as η → 0, so
    m → g and v → g⊙g and Adam's step m̂/(√v̂ + ε) becomes g/(|g| + ε): the variance-adapted flow
    (``adam-layer``) with s_j² = 0 and Adam's ε outside the square root. Each entry moves at speed < 1
    towards the sign of −g_j, so the flow arrives at the stationary set in finite time.
    """

    name = "adam-sign"
    kink_rule = staticmethod(sign_rule)

    def smooth_velocity(self, factors: list[np.ndarray], W: np.ndarray,
                        svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        G = total_gradient(W, self.problem, self.penalty, self.lam, svd)
        assert self.packer is not None, "call initial_state first"
        return sign_velocity(self.packer.pack(layer_gradients(factors, G)), self.eps)

    def field_derivative(self, g: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """∂Ẇ/∂g of −g/(|g| + ε): diagonal, −ε/(|g| + ε)² (no rank-one part; one block for all layers)."""
        return [(-self.eps / (np.abs(g) + self.eps) ** 2, np.zeros_like(g), np.zeros_like(g))]

    def jac(self, t: float, y: np.ndarray) -> np.ndarray:
        """The dense Jacobian −diag(ε/(|g| + ε)²)·∂g/∂y (``docs/math.md``, "The fixed-β limit")."""
        kink = self.kink_jacobian(y)
        if kink is not None:
            return kink
        ((d, _, _),) = self.field_derivative(self.arrival_gradient(y))
        return d[:, None] * self.objective_hessian(y)


class AdamODEFlow(LayerStateFlow):
    """Adam ODE with moment states (docs/math.md §8.3; BB21), per layer W_j with moments m_j, v_j:

        ṁ = a(g − m),  v̇ = b(g⊙g − v),  Ẇ_j = −[m/(1 − e^{−at})] / (ε + sqrt(v/(1 − e^{−bt}))),
        a = (1 − β₁)/η,  b = (1 − β₂)/η,  g = ∇_{W_j}(ℓ + λR),  t = kη.

    **t = 0 treatment.** The bias-correction factors vanish at t = 0, so the right side is singular there.
    The flow starts at t₀ = η from the state after the first discrete Adam step (torch.optim semantics):
    m(η) = (1 − β₁)g₀, v(η) = (1 − β₂)g₀⊙g₀, W_j(η) = W_j(0) − η·[m(η)/(1 − β₁)]/(sqrt(v(η)/(1 − β₂)) + ε),
    i.e. W_j(η) = W_j(0) − η g₀/(|g₀| + ε). This is exactly the discrete iterate k = 1 at t₁ = η.
    ``v`` is read as max(v, 0) under the square root (the ODE keeps v ≥ 0; round-off may not).
    State: [packed W_j, packed m_j, packed v_j].
    """

    name = "adam-ode"

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0,
        lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.999, eps: float = DEFAULT_ADAM_EPS,
    ):
        super().__init__(problem, depth, penalty, lam)
        _check_adam(lr, beta1, beta2, eps)
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(beta1), float(beta2), float(eps)
        self.a = (1.0 - self.beta1) / self.lr
        self.b = (1.0 - self.beta2) / self.lr
        self.t0 = self.lr

    def first_step(
        self, factors: Sequence[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """The first discrete Adam step from ``factors``: (W_j(η), m_j(η), v_j(η)) (torch.optim.Adam)."""
        grads = self.total_layer_gradients([np.asarray(F, dtype=float) for F in factors])
        ms = [(1.0 - self.beta1) * g for g in grads]
        vs = [(1.0 - self.beta2) * g * g for g in grads]
        Ws = [
            np.asarray(F, dtype=float)
            - (self.lr / (1.0 - self.beta1)) * (m / (np.sqrt(v) / math.sqrt(1.0 - self.beta2) + self.eps))
            for F, m, v in zip(factors, ms, vs)
        ]
        return Ws, ms, vs

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        packer = self.set_packer(factors)
        Ws, ms, vs = self.first_step(factors)
        return np.concatenate([packer.pack(Ws), packer.pack(ms), packer.pack(vs)])

    def moments(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The packed moment states (m, v) inside ``y``."""
        assert self.packer is not None, "call initial_state first"
        P = self.packer.size
        return y[P : 2 * P], y[2 * P : 3 * P]

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        assert self.packer is not None, "call initial_state first"
        factors = self.layer_factors(y)
        m, v = self.moments(y)
        g = self.packer.pack(self.total_layer_gradients(factors))
        c1 = -math.expm1(-self.a * t)
        c2 = -math.expm1(-self.b * t)
        w_dot = -(m / c1) / (self.eps + np.sqrt(np.maximum(v, 0.0) / c2))
        return np.concatenate([w_dot, self.a * (g - m), self.b * (g * g - v)])

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "lr": self.lr,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "a": self.a,
            "b": self.b,
            "t0": self.t0,
            "t0_treatment": "starts at t0 = lr from the state after the first discrete Adam step",
        }


class AdamPrintedFlow(EndProductStateFlow, ArrivalFlow):
    """Zhao22 Theorem 1 (Eq. 6) / Theorem 3 (Eq. 9) as printed, integrated on the
    end product (docs/math.md §8.1):

        vec(Ẇ) = −Σ_j ((WWᵀ)^{(j−1)/N} ⊗ (WᵀW)^{(N−j)/N}) G_j vec(X),  G_j = diag(vec S_j),

    with X = ∇ℓ (Theorem 1, λ = 0), X = ∇ℓ + λ·(UVᵀ − UΣ̃Vᵀ)/‖W‖_F² (Theorem 3, ratio penalty, the printed
    penalty term of Eq. 8), and, as flowsim's extension for the other penalties, X = ∇ℓ + λ∇R (exact).
    S_j is computed from the layer gradients ∇_{W_j}(ℓ + λR) of the canonical balanced factorization of W
    (W_1 = Σ^{1/N}Vᵀ, W_j = Σ^{1/N}, W_N = UΣ^{1/N}; docs/math.md §1) with the sign rule of
    :func:`flowsim.flows.printed.signed_svd`, so the field is a function of W alone. ``convention`` is the
    vec convention of the printed Kronecker products (``row-major`` reduces to Eq. 4 when G_j = I). Needs a
    square W for N ≥ 2 (G_j = diag(vec S_j) acts on vec ∇ℓ only when every layer has m·n entries). State: W
    raveled row-major.
    """

    name = "adam-printed"

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0,
        eps: float = DEFAULT_ADAM_EPS, convention: str = "row-major",
    ):
        if convention not in CONVENTIONS:
            raise BadInputError(f"convention must be one of {'|'.join(CONVENTIONS)}, got {convention!r}")
        m, n = problem.shape
        if depth >= 2 and m != n:
            raise BadInputError(
                "--flow adam-printed needs a square problem for depth ≥ 2: Zhao22 Eq. 6 as printed "
                "multiplies vec ∇ℓ by diag(vec S_j), defined only when every layer has m·n entries"
            )
        _check_adam(1.0, 0.0, 0.0, eps)
        super().__init__(problem, depth, penalty, lam)
        self.eps = float(eps)
        self.convention = convention
        self.theorem = (
            1
            if (self.lam == 0.0 or self.penalty.is_zero)
            else (3 if isinstance(self.penalty, RatioPenalty) else "1-exact-penalty")
        )

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        return self.velocity(y.reshape(self.shape)).ravel()

    def velocity(
        self, W: np.ndarray, svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Ẇ at W; ``svd`` is an optional precomputed SVD of W (any singular-vector signs: the layer
        gradients come from :func:`flowsim.flows.printed.signed_balanced_factors`, a function of W alone)."""
        factors = signed_balanced_factors(W, self.depth, svd)
        G_loss = self.problem.grad(W)
        G_total = total_gradient(W, self.problem, self.penalty, self.lam)
        layer_grads = layer_gradients(factors, G_total)
        if self.theorem == 1:
            v = theorem1_velocity(W, G_loss, layer_grads, self.depth, self.convention, self.eps)
        elif self.theorem == 3:
            v = theorem3_velocity(W, G_loss, layer_grads, self.depth, self.lam, self.convention, self.eps)
        else:
            v = theorem1_velocity(W, G_total, layer_grads, self.depth, self.convention, self.eps)
        return v

    def arrival_gradient(self, y: np.ndarray) -> np.ndarray:
        """∇(ℓ + λR) at the end product in the state y (zero on the stationary set)."""
        return total_gradient(y.reshape(self.shape), self.problem, self.penalty, self.lam).ravel()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "eps": self.eps,
            "convention": self.convention,
            "theorem": self.theorem,
            "layer_gradients": "canonical balanced factorization of W, largest |entry| of each v_i positive",
        }
