"""The flow interface: a vector field on a flat state, plus how to read the end product off the state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np


class Flow(ABC):
    """A continuous-time model ẏ = f(t, y) whose state y determines an end-product matrix W.

    Subclasses set ``name`` (the ``--flow`` spelling) and ``model`` (``end-product`` or ``layers``).
    ``t0`` is the time at which integration starts (0 except for flows that start after a first
    discrete step, SPEC §3.4(c)).
    """

    name: str = "flow"
    model: str = "end-product"
    t0: float = 0.0

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
