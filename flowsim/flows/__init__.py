"""Continuous-time models (vector fields) and the factory that builds them from their CLI names."""

from __future__ import annotations

from ..errors import BadInputError
from ..penalties import Penalty
from ..problems import CompletionProblem
from .base import ArrivalFlow, EndProductStateFlow, Flow, PenalizedFlow
from .gf import EndProductFlow, LayerwiseFlow
from .gradient import (
    FactorPacker,
    apply_end_product_preconditioner,
    end_product_kernel,
    end_product_velocity,
    layer_gradients,
    layerwise_velocity,
    singular_value_projection,
    singular_value_velocity,
    total_gradient,
)
from .layer_state import LayerStateFlow

FLOW_NAMES = ("gf", "gd-modified", "adam-printed", "adam-layer", "adam-ode", "adam-sign")
MODEL_NAMES = ("end-product", "layers", "auto")


def make_flow(
    name: str,
    problem: CompletionProblem,
    depth: int,
    penalty: Penalty | None = None,
    lam: float = 0.0,
    model: str = "end-product",
    **options: float,
) -> Flow:
    """Build the flow called ``name`` (``--flow``) with ``model`` (``--model``). See docs/math.md §4–§9."""
    if model not in MODEL_NAMES:
        raise BadInputError(f"--model must be one of {'|'.join(MODEL_NAMES)}, got {model!r}")
    if name == "gf":
        if model == "auto":
            from .auto import AutoGradientFlow

            return AutoGradientFlow(problem, depth, penalty, lam)
        if model == "end-product" and depth == 1 and lam > 0 and penalty and penalty.sticks_at_zero:
            # non-smooth at σ = 0: the minimal-norm-subgradient (Filippov) flow with rank-changing events
            from .filippov import FilippovSpectralFlow

            return FilippovSpectralFlow(problem, penalty, lam)
        cls = EndProductFlow if model == "end-product" else LayerwiseFlow
        return cls(problem, depth, penalty, lam)
    # adam-layer, adam-ode and gd-modified always run on the layer factors and adam-printed on the end
    # product (docs/math.md §8, §7); ``model`` selects the state of ``gf`` only.
    if name == "adam-layer":
        from .adam import AdamLayerFlow

        return AdamLayerFlow(problem, depth, penalty, lam, eps=options.get("eps", 1e-8))
    if name == "adam-sign":
        from .adam import AdamSignFlow

        return AdamSignFlow(problem, depth, penalty, lam, eps=options.get("eps", 1e-8))
    if name == "adam-ode":
        from .adam import AdamODEFlow

        return AdamODEFlow(problem, depth, penalty, lam, lr=options.get("lr", 0.01),
                           beta1=options.get("beta1", 0.9), beta2=options.get("beta2", 0.999),
                           eps=options.get("eps", 1e-8))
    if name == "adam-printed":
        from .adam import AdamPrintedFlow

        return AdamPrintedFlow(problem, depth, penalty, lam, eps=options.get("eps", 1e-8),
                               convention=str(options.get("convention", "row-major")))
    if name == "gd-modified":
        from .modified import ModifiedGDFlow

        return ModifiedGDFlow(problem, depth, penalty, lam, lr=options.get("lr", 0.01),
                              hvp=options.get("hvp"))  # type: ignore[arg-type]
    raise BadInputError(f"--flow must be one of {'|'.join(FLOW_NAMES)}, got {name!r}")


__all__ = [
    "FLOW_NAMES", "MODEL_NAMES", "ArrivalFlow", "EndProductFlow", "EndProductStateFlow", "FactorPacker",
    "Flow", "LayerStateFlow", "LayerwiseFlow", "PenalizedFlow", "apply_end_product_preconditioner",
    "end_product_kernel", "end_product_velocity", "layer_gradients", "layerwise_velocity", "make_flow",
    "singular_value_projection", "singular_value_velocity", "total_gradient",
]
