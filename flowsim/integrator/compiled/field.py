"""The layer-wise gradient-flow vector field compiled with numba (one function for every depth and penalty).

The state is the flat vector of :class:`flowsim.flows.gradient.FactorPacker` (row-major ravel of W_1..W_N).
The problem enters as two m×n arrays, ``weight`` = (2c/D)·1_Ω and ``W_star``, so that ∇ℓ(W) = weight ∘
(W − W*) (Zhao22 Eq. 1, see ``docs/math.md`` "Loss"); the penalty as four numbers ``pen`` = [kind, λ, p, q]
with kind 0 = none, 1 = ratio, 2 = nuclear, 3 = Schatten ratio S_p/S_q (Zhao22 Sec. 3 and Table 1).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ...penalties import SCHATTEN_FLOOR, NuclearPenalty, Penalty, RatioPenalty, SchattenRatioPenalty
from ...problems import CompletionProblem

PENALTY_NONE, PENALTY_RATIO, PENALTY_NUCLEAR, PENALTY_SCHATTEN = 0, 1, 2, 3


def penalty_vector(penalty: Penalty | None, lam: float) -> np.ndarray:
    """[kind, λ, p, q] for :func:`layerwise_field`; kind 0 when λ = 0 or there is no penalty.

    Raises TypeError for a penalty class the compiled field does not implement."""
    if penalty is None or penalty.is_zero or lam == 0.0:
        return np.array([PENALTY_NONE, 0.0, 0.0, 0.0])
    if isinstance(penalty, RatioPenalty):
        return np.array([PENALTY_RATIO, lam, 0.0, 0.0])
    if isinstance(penalty, NuclearPenalty):
        return np.array([PENALTY_NUCLEAR, lam, 0.0, 0.0])
    if isinstance(penalty, SchattenRatioPenalty):
        return np.array([PENALTY_SCHATTEN, lam, penalty.p, penalty.q])
    raise TypeError(f"no compiled gradient for the penalty {penalty.spec()!r}")


def loss_weight(problem: CompletionProblem) -> np.ndarray:
    """weight = (2c/D)·1_Ω, so that ∇ℓ(W) = weight ∘ (W − W*) (Zhao22 Eq. 1)."""
    return (2.0 * problem.scale / problem.denominator) * problem.mask.astype(float)


@njit(cache=True)
def _schatten(s, p):  # pragma: no cover - compiled
    total = 0.0
    for v in s:
        if v > 0:
            total += v**p
    return total ** (1.0 / p) if total > 0 else 0.0


@njit(cache=True)
def spectral_penalty_grad(s, m, n, pen):  # pragma: no cover - compiled
    """g(σ) with ∇R(W) = U diag(g) Vᵀ (Zhao22 Sec. 3, Table 1), as ``Penalty.spectral_grad``:

    ratio: g_i = 1_{σ_i>τ}/‖W‖_F − ‖W‖_* σ_i/‖W‖_F³; nuclear: g_i = 1_{σ_i>τ}, τ = max(m, n)·ε·σ_1;
    Schatten S_p/S_q: g = S_p^{1−p} σ_f^{p−1}/S_q − S_p S_q^{1−q} σ_f^{q−1}/S_q², σ_f = max(σ, floor·σ_1).
    """
    kind = int(pen[0])
    g = np.zeros_like(s)
    if s.size == 0:
        return g
    tau = max(m, n) * np.finfo(np.float64).eps * s[0]
    if kind == 1:
        fro = np.sqrt(np.sum(s**2))
        if fro == 0:
            return g
        nuc = np.sum(s)
        for i in range(s.size):
            g[i] = (1.0 if s[i] > tau else 0.0) / fro - nuc * s[i] / fro**3
    elif kind == 2:
        for i in range(s.size):
            g[i] = 1.0 if s[i] > tau else 0.0
    elif kind == 3:
        p, q = pen[2], pen[3]
        sp, sq = _schatten(s, p), _schatten(s, q)
        if sq == 0:
            return g
        floor = SCHATTEN_FLOOR * s[0]
        for i in range(s.size):
            sf = max(s[i], floor)
            g[i] = sp ** (1 - p) * sf ** (p - 1) / sq - sp * sq ** (1 - q) * sf ** (q - 1) / sq**2
    return g


@njit(cache=True)
def layerwise_field(y, out, dims, offs, weight, w_star, pen):  # pragma: no cover - compiled
    """Write Ẇ_j = −W_{N:j+1}ᵀ (∇ℓ(W) + λ∇R(W)) W_{j−1:1}ᵀ into ``out`` (ACH18 Eq. 3 with a penalty; the
    layer-wise flow of ``docs/math.md`` "Layer-wise gradient flow").

    numba's own copy of :func:`flowsim.flows.gradient.layerwise_velocity_into` (numba cannot compile the
    numpy home), the same back-propagation: prefix products P_j = W_{j:1}
    (:func:`flowsim.factors.prefix_products`), G = weight ∘ (W − W*) + λ U diag(g(σ)) Vᵀ (g:
    :func:`spectral_penalty_grad`, mirroring :meth:`flowsim.penalties.Penalty.spectral_grad`), B_N = −G,
    Ẇ_j = B_j P_{j−1}ᵀ, B_{j−1} = W_jᵀ B_j.
    """
    N = dims.size - 1
    factors = [y[offs[j]:offs[j + 1]].reshape((dims[j + 1], dims[j])) for j in range(N)]
    pre = [factors[0]]
    for j in range(1, N):
        pre.append(np.dot(factors[j], pre[j - 1]))
    W = pre[N - 1]
    G = weight * (W - w_star)
    if pen[0] != 0 and pen[1] != 0.0:
        if not np.all(np.isfinite(W)):
            out[:] = np.nan
            return
        U, s, Vt = np.linalg.svd(W, full_matrices=False)
        g = spectral_penalty_grad(s, W.shape[0], W.shape[1], pen)
        G += pen[1] * np.dot(U * g, Vt)
    B = -G
    if N == 1:
        out[:] = B.ravel()
        return
    for j in range(N - 1, 0, -1):
        out[offs[j]:offs[j + 1]] = np.dot(B, pre[j - 1].T).ravel()
        if j > 1:
            B = np.dot(factors[j].T, B)
        else:
            out[offs[0]:offs[1]] = np.dot(factors[1].T, B).ravel()
