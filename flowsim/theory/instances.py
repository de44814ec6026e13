"""The instances every claim is checked on (docs/contract.md §4): random matrices of several shapes (square
and non-square) at depths N = 1..5 and several λ, and points along integrated trajectories.

An :class:`Instance` bundles a completion problem, layer factors (hence W = W_N⋯W_1 and the depth), the
ratio penalty R = ‖W‖_*/‖W‖_F with its strength λ, and the derived quantities the claims need (∇ℓ, the
total gradient G = ∇ℓ + λ∇R, the layer gradients). Instance sets are cached per (config, depths, λ) so that
built-in and user claims (``flowsim check --module``) run on exactly the same instances.

Random instances: W has i.i.d. N(0, 1) entries (‖W‖_F ≠ 1, so a printed formula that is only right on the
unit sphere shows it), balanced factors from the canonical factorization (docs/math.md §1); the problem is the
synthetic completion problem of the same shape (docs/math.md §2) with rank 2 and
about half the entries observed.

Trajectory instances: layer-wise gradient flow (docs/math.md §6) with the ratio penalty (λ = 0.05) from a
balanced-gaussian initialization of scale 0.3 on 8×8 and 6×9 problems at depth 3, integrated with
``flowsim.simulate``'s integrator (DOP853, rtol 1e-10) until the singular values have moved (t ≤ 100,
loss from ≈ 0.9 to ≈ 2e-3). At depth 3 the instance carries the integrated layer state itself; at any
other depth N the canonical balanced factorization of the same W(t).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from flowsim.factors import canonical_balanced_factors, end_product
from flowsim.flows import LayerwiseFlow, layer_gradients, total_gradient
from flowsim.initializations import init_factors
from flowsim.integrator import integrate
from flowsim.penalties import Penalty, make_penalty
from flowsim.problems import CompletionProblem, synthetic_problem

from .registry import CheckConfig

DEPTHS = (1, 2, 3, 4, 5)
QUICK_SHAPES = ((5, 5), (4, 6))
FULL_SHAPES = ((4, 4), (6, 6), (8, 8), (5, 7), (7, 5), (6, 9))
QUICK_LAMS = (0.0, 0.1)
FULL_LAMS = (0.0, 0.01, 0.1, 1.0)
TRAJECTORY_LAM = 0.05
TRAJECTORY_DEPTH = 3
TRAJECTORY_PROBLEMS = (((8, 8), 40), ((6, 9), 35))
QUICK_TIMES = (0.0, 20.0, 100.0)
FULL_TIMES = (0.0, 5.0, 20.0, 50.0, 100.0)
TRAJECTORY_RTOL = 1e-10
TRAJECTORY_ATOL = 1e-13


@dataclass
class Instance:
    """One point at which claims are evaluated: problem, layer factors, penalty strength, provenance."""

    label: str
    problem: CompletionProblem
    factors: list[np.ndarray]
    lam: float = 0.0
    penalty: Penalty = field(default_factory=lambda: make_penalty("ratio"))
    origin: str = "random"
    t: float | None = None

    @property
    def depth(self) -> int:
        """N, the number of layer factors."""
        return len(self.factors)

    @cached_property
    def W(self) -> np.ndarray:
        """The end product W = W_N⋯W_1."""
        return end_product(self.factors)

    @property
    def shape(self) -> tuple[int, int]:
        """(m, n)."""
        return self.W.shape  # type: ignore[return-value]

    @property
    def square(self) -> bool:
        """True when m = n."""
        return self.shape[0] == self.shape[1]

    @cached_property
    def loss_grad(self) -> np.ndarray:
        """∇ℓ(W) (docs/math.md §2)."""
        return self.problem.grad(self.W)

    @cached_property
    def G(self) -> np.ndarray:
        """G = ∇ℓ(W) + λ∇R(W) with the exact ratio-penalty gradient (docs/math.md §3, §4)."""
        return total_gradient(self.W, self.problem, self.penalty, self.lam)

    @cached_property
    def layer_grads(self) -> list[np.ndarray]:
        """∇_{W_j}(ℓ + λR) = W_{N:j+1}ᵀ G W_{j−1:1}ᵀ, j = 1..N (docs/math.md §6)."""
        return layer_gradients(self.factors, self.G)

    @cached_property
    def layer_loss_grads(self) -> list[np.ndarray]:
        """∇_{W_j}ℓ (no penalty)."""
        return layer_gradients(self.factors, self.loss_grad)

    @cached_property
    def svd(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Thin SVD (U, σ, Vᵀ) of W."""
        return np.linalg.svd(self.W, full_matrices=False)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for counterexamples)."""
        s = self.svd[1]
        return {"label": self.label, "origin": self.origin, "shape": list(self.shape), "depth": self.depth,
                "lam": self.lam, "t": self.t, "norm_fro": float(np.linalg.norm(s)),
                "sigma": [float(x) for x in s]}


def _shapes(config: CheckConfig) -> tuple[tuple[int, int], ...]:
    return QUICK_SHAPES if config.quick else FULL_SHAPES


def _lams(config: CheckConfig) -> tuple[float, ...]:
    return QUICK_LAMS if config.quick else FULL_LAMS


@lru_cache(maxsize=64)
def _random_instances(
    config: CheckConfig, depths: tuple[int, ...], lams: tuple[float, ...]
) -> tuple[Instance, ...]:
    out = []
    for k, (m, n) in enumerate(_shapes(config)):
        problem = synthetic_problem(m, n, rank=2, observed=max(2, (m * n) // 2), seed=config.seed + k)
        rng = np.random.default_rng([config.seed, 7, m, n])
        W = rng.standard_normal((m, n))
        for depth in depths:
            factors = canonical_balanced_factors(W, depth)
            for lam in lams:
                out.append(Instance(f"random {m}x{n} N={depth} λ={lam:g}", problem, factors, lam))
    return tuple(out)


@lru_cache(maxsize=8)
def trajectory_states(config: CheckConfig) -> tuple[tuple[CompletionProblem, tuple[float, ...], tuple], ...]:
    """Integrated layer-wise trajectories (see the module docstring): per problem, the saved times and the
    layer factors at each time."""
    out = []
    times = QUICK_TIMES if config.quick else FULL_TIMES
    for k, (shape, observed) in enumerate(TRAJECTORY_PROBLEMS):
        problem = synthetic_problem(*shape, rank=2, observed=observed, seed=config.seed + 100 + k)
        factors = init_factors("balanced-gaussian", shape, TRAJECTORY_DEPTH, 0.3, seed=config.seed + k)
        flow = LayerwiseFlow(problem, TRAJECTORY_DEPTH, make_penalty("ratio"), TRAJECTORY_LAM)
        res = integrate(flow, flow.initial_state(factors), np.array(times), rtol=TRAJECTORY_RTOL,
                        atol=TRAJECTORY_ATOL, progress=False)
        if res.status != "ok":
            raise RuntimeError(f"trajectory instance {shape} failed: {res.message}")
        states = tuple(tuple(np.array(F) for F in flow.layer_factors(y)) for y in res.y)
        out.append((problem, tuple(float(t) for t in res.t), states))
    return tuple(out)


@lru_cache(maxsize=64)
def _trajectory_instances(config: CheckConfig, depths: tuple[int, ...]) -> tuple[Instance, ...]:
    out = []
    for problem, times, states in trajectory_states(config):
        m, n = problem.shape
        for t, factors in zip(times, states):
            for depth in depths:
                if depth == TRAJECTORY_DEPTH:
                    fs = list(factors)
                else:
                    fs = canonical_balanced_factors(end_product(factors), depth)
                out.append(Instance(f"trajectory {m}x{n} t={t:g} N={depth} λ={TRAJECTORY_LAM:g}", problem, fs,
                                    TRAJECTORY_LAM, origin="trajectory", t=t))
    return tuple(out)


def instances(
    config: CheckConfig,
    depths: tuple[int, ...] = DEPTHS,
    lams: tuple[float, ...] | None = None,
    *,
    random: bool = True,
    trajectories: bool = True,
) -> list[Instance]:
    """The shared instance set: random instances (every shape × depth × λ; ``lams`` defaults to the
    configured set) and trajectory points (at each requested depth). Cached: the same call returns the
    same instances."""
    depths = tuple(int(d) for d in depths)
    lam_set = _lams(config) if lams is None else tuple(float(x) for x in lams)
    out: list[Instance] = []
    if random:
        out += _random_instances(config, depths, lam_set)
    if trajectories:
        out += _trajectory_instances(config, depths)
    return out
