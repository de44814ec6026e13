"""The base class of the flows whose state starts with the packed layer factors W_1..W_N (layer-wise
gradient flow, the layer-wise Adam flows, the modified flow of GD; docs/math.md §6–§8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..factors import end_product, layer_dims
from .base import PenalizedFlow
from .gradient import FactorPacker, layer_gradients, total_gradient


class LayerStateFlow(PenalizedFlow):
    """A flow of ℓ + λR whose state y starts with the layer factors, each raveled row-major
    (:class:`~flowsim.flows.gradient.FactorPacker`); flows with more state (moments) append it after them.

    :meth:`set_packer` (called by ``initial_state``) fixes the layer dims; :meth:`layer_factors` gives views
    of the factors in y and :meth:`total_layer_gradients` the gradients ∇_{W_j}(ℓ + λR) (docs/math.md §6).
    ``settings`` names attributes that :meth:`describe` lists before the layer dims.
    """

    model = "layers"
    settings: tuple[str, ...] = ()

    packer: FactorPacker | None = None

    def set_packer(self, factors: Sequence[np.ndarray]) -> FactorPacker:
        """Fix the layer dims from the initial ``factors`` (there must be ``depth`` of them)."""
        if len(factors) != self.depth:
            raise ValueError(f"expected {self.depth} factors, got {len(factors)}")
        self.packer = FactorPacker(layer_dims(factors))
        return self.packer

    def initial_state(self, factors: Sequence[np.ndarray]) -> np.ndarray:
        """The packed factors."""
        return self.set_packer(factors).pack(factors)

    def layer_factors(self, y: np.ndarray) -> list[np.ndarray]:
        assert self.packer is not None, "call initial_state first"
        return self.packer.unpack(y[: self.packer.size])

    def end_product(self, y: np.ndarray) -> np.ndarray:
        return end_product(self.layer_factors(y))

    def total_layer_gradients(self, factors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """∇_{W_j}(ℓ + λR) = W_{N:j+1}ᵀ (∇ℓ + λ∇R)(W) W_{j−1:1}ᵀ (docs/math.md §6)."""
        G = total_gradient(end_product(factors), self.problem, self.penalty, self.lam)
        return layer_gradients(factors, G)

    def arrival_gradient(self, y: np.ndarray) -> np.ndarray:
        """The packed layer gradients ∇_{W_j}(ℓ + λR) at the state y (zero on the stationary set)."""
        assert self.packer is not None, "call initial_state first"
        return self.packer.pack(self.total_layer_gradients(self.layer_factors(y)))

    def objective_hessian(self, y: np.ndarray) -> np.ndarray:
        """The dense Hessian ∂g/∂y of ℓ + λR in the packed layer coordinates (g = the packed layer gradients
        of docs/math.md §6), by torch forward-over-reverse autograd in float64 (R written on
        ``torch.linalg.svdvals``, as in :func:`flowsim.flows.modified.autograd_modified_gradient`). It has
        size² entries: for the Jacobians of the small states only (``flowsim.integrator.arrival``)."""
        import torch
        from torch.func import hessian

        from .modified import _torch_penalty

        assert self.packer is not None, "call initial_state first"
        packer, problem = self.packer, self.problem
        W_star = torch.as_tensor(problem.W_star, dtype=torch.float64)
        mask = torch.as_tensor(problem.mask, dtype=torch.float64)
        lam, penalty = self.lam, self.penalty

        def objective(theta):
            W: Any = None
            for (a, b), lo, hi in zip(packer.shapes, packer.offsets[:-1], packer.offsets[1:]):
                F = theta[int(lo):int(hi)].reshape(a, b)
                W = F if W is None else F @ W
            value = problem.scale * ((mask * (W - W_star)) ** 2).sum() / problem.denominator
            if lam and not penalty.is_zero:
                value = value + lam * _torch_penalty(penalty, W)
            return value

        theta = torch.as_tensor(np.array(y[: packer.size], dtype=float))
        return hessian(objective)(theta).numpy()

    def describe(self) -> dict[str, Any]:
        d = {**super().describe(), **{name: getattr(self, name) for name in self.settings}}
        if self.packer is not None:
            d["dims"] = self.packer.dims
        return d
