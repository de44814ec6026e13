"""Gradient-flow models: the end-product flow (SPEC §3.1) and the layer-wise flow (SPEC §3.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..factors import end_product, layer_dims
from ..penalties import Penalty
from ..problems import CompletionProblem
from .base import Flow
from .gradient import FactorPacker, end_product_velocity, layerwise_velocity_into


class EndProductFlow(Flow):
    """Ẇ = −P_W(∇ℓ(W) + λ∇R(W)) on the end product (SPEC §3.1; ACH18 Thm. 1, Zhao22 Eq. 4).

    Exact for layer-wise gradient flow started from balanced factors. State: W raveled row-major.
    """

    name = "gf"
    model = "end-product"

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0
    ):
        self.problem = problem
        self.depth = int(depth)
        self.penalty = penalty if penalty is not None else Penalty()
        self.lam = float(lam)
        self.shape = problem.shape

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        return np.array(end_product(factors), dtype=float).ravel()

    def end_product(self, y: np.ndarray) -> np.ndarray:
        return y.reshape(self.shape)

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        W = y.reshape(self.shape)
        return end_product_velocity(W, self.problem, self.depth, self.penalty, self.lam).ravel()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "depth": self.depth, "penalty": self.penalty.spec(), "lam": self.lam}


class LayerwiseFlow(Flow):
    """Ẇ_j = −W_{N:j+1}ᵀ (∇ℓ + λ∇R)(W) W_{j−1:1}ᵀ on the factors (SPEC §3.3). Valid for any initialization."""

    name = "gf"
    model = "layers"

    def __init__(
        self, problem: CompletionProblem, depth: int, penalty: Penalty | None = None, lam: float = 0.0
    ):
        self.problem = problem
        self.depth = int(depth)
        self.penalty = penalty if penalty is not None else Penalty()
        self.lam = float(lam)
        self.packer: FactorPacker | None = None

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        if len(factors) != self.depth:
            raise ValueError(f"expected {self.depth} factors, got {len(factors)}")
        self.packer = FactorPacker(layer_dims(factors))
        return self.packer.pack(factors)

    def layer_factors(self, y: np.ndarray) -> list[np.ndarray]:
        assert self.packer is not None, "call initial_state first"
        return self.packer.unpack(y)

    def end_product(self, y: np.ndarray) -> np.ndarray:
        return end_product(self.layer_factors(y))

    def __call__(self, t: float, y: np.ndarray) -> np.ndarray:
        assert self.packer is not None, "call initial_state first"
        out = np.empty(self.packer.size)  # fresh: the solver keeps the velocities it is given
        layerwise_velocity_into(self.layer_factors(y), self.problem, self.packer.unpack(out), self.penalty,
                                self.lam)
        return out

    def describe(self) -> dict[str, Any]:
        d = {**super().describe(), "depth": self.depth, "penalty": self.penalty.spec(), "lam": self.lam}
        if self.packer is not None:
            d["dims"] = self.packer.dims
        return d
