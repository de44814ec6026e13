"""The variance-adapted layer preconditioner of Zhao22 Theorem 1 and the exact layer-wise flow it models
(docs/math.md §8.1, §8.2).

S_j = ((∇_{W_j})^{⊙2} + s_j² + ε²)^{⊙−1/2},  s_j² = var(∇_{W_j})  (variance over the entries of the layer
gradient, as printed in Zhao22 Eqs. 5–6). The printed form has no ε; flowsim adds ε² (default
``VARIANCE_EPS`` = 1e-12, far below the gradient scale of any run here) so that S_j stays finite when a
layer gradient vanishes entirely (s_j² → 0 and ∇ → 0 give sign flow, docs/math.md §8.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..factors import prefix_products, suffix_products
from .gradient import layer_gradients

VARIANCE_EPS = 1e-12


def variance_scaling(layer_grad: np.ndarray, eps: float = VARIANCE_EPS) -> np.ndarray:
    """S_j = (∇_{W_j}^{⊙2} + var(∇_{W_j}) + ε²)^{⊙−1/2} (Zhao22 Eq. 6, G_j =
    diag(vec S_j); docs/math.md §8.1)."""
    g = np.asarray(layer_grad, dtype=float)
    return 1.0 / np.sqrt(g * g + np.var(g) + eps * eps)


def variance_adapted_layer_velocity(
    factors: Sequence[np.ndarray], G: np.ndarray, eps: float = VARIANCE_EPS
) -> list[np.ndarray]:
    """Ẇ_j = −S_j ⊙ ∇_{W_j}, with ∇_{W_j} = W_{N:j+1}ᵀ G W_{j−1:1}ᵀ the layer gradient of an objective whose
    end-product gradient is G (docs/math.md §8.2). S_j is computed from the same layer gradient."""
    return [-variance_scaling(g, eps) * g for g in layer_gradients(factors, G)]


def variance_adapted_end_product_velocity(
    factors: Sequence[np.ndarray], G: np.ndarray, eps: float = VARIANCE_EPS
) -> np.ndarray:
    """Exact end-product velocity of the variance-adapted layer flow (docs/math.md §8.2):

        Ẇ = Σ_j W_{N:j+1} Ẇ_j W_{j−1:1},   i.e.  vec(Ẇ) = −Σ_j A_j G_j A_jᵀ vec(G),
        A_j = (W_{j−1:1})ᵀ ⊗ W_{N:j+1}  (column-major vec),

    computed layer-wise without Kronecker products.
    """
    pre = prefix_products(factors)
    suf = suffix_products(factors)
    vel = variance_adapted_layer_velocity(factors, G, eps)
    return sum(suf[j + 1] @ vel[j] @ pre[j] for j in range(len(factors)))
