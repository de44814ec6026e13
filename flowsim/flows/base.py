"""The flow interface: a vector field on a flat state, plus how to read the end product off the state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..factors import end_product
from ..penalties import Penalty
from ..problems import CompletionProblem


class Flow(ABC):
    """A continuous-time model ẏ = f(t, y) whose state y determines an end-product matrix W.

    Subclasses set ``name`` (the ``--flow`` spelling) and ``model`` (``end-product`` or ``layers``).
    ``t0`` is the time at which integration starts (0 except for flows that start after a first
    discrete step, docs/math.md §8.3).
    """

    name: str = "flow"
    model: str = "end-product"
    t0: float = 0.0
    problem: CompletionProblem

    @abstractmethod
    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        """Flat initial state built from the initial layer factors."""

    @abstractmethod
    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        """The velocity ẏ at (t, y)."""

    @abstractmethod
    def end_product(self, y: np.ndarray) -> np.ndarray:
        """The end-product matrix W (m×n) encoded in the state y."""

    def layer_factors(self, y: np.ndarray) -> list[np.ndarray] | None:
        """The layer factors in the state, or None for end-product models."""
        return None

    def describe(self) -> dict[str, Any]:
        """Parameters of the flow for ``run.json``."""
        return {"flow": self.name, "model": self.model}


class ArrivalFlow(Flow):
    """A flow that moves at speed O(1) however small its gradient is (the Adam-type flows), so it reaches
    its stationary set in finite time, after which the field is stiff (S ≈ 1/ε) and an explicit solver
    stalls; the integrator drives it with :func:`flowsim.integrator.solve_with_arrival`."""

    @abstractmethod
    def arrival_gradient(self, y: np.ndarray) -> np.ndarray:
        """The gradient whose vanishing defines the stationary set (for the report of the arrival)."""


class PenalizedFlow(Flow):
    """A flow of ℓ + λR on one completion problem for a depth-N network (docs/math.md §2, §3): the
    constructor and :meth:`describe` that every flowsim flow shares (``penalty=None`` is no penalty)."""

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0
    ):
        self.problem = problem
        self.depth = int(depth)
        self.penalty = penalty if penalty is not None else Penalty()
        self.lam = float(lam)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "depth": self.depth, "penalty": self.penalty.spec(), "lam": self.lam}


class EndProductStateFlow(PenalizedFlow):
    """A :class:`PenalizedFlow` whose state is the end product W (m×n) raveled row-major."""

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0
    ):
        super().__init__(problem, depth, penalty, lam)
        self.shape = problem.shape

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        """W = W_N⋯W_1 of the initial factors, raveled."""
        return np.array(end_product(factors), dtype=float).ravel()

    def end_product(self, y: np.ndarray) -> np.ndarray:
        return y.reshape(self.shape)
