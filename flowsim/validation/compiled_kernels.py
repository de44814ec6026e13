"""Compiled (numba) kernels of the discrete training loop: layer products, completion loss, spectral
penalty gradient, and the element-wise ``torch.optim`` updates, for B independent runs.

Every kernel here lives in this one module on purpose: numba's on-disk cache (``cache=True``) does not
track functions imported from other files, so a change to one kernel must invalidate all of them.

Conventions (the same operations, in the same order, as the torch engine of :mod:`flowsim.validation.train`):

* factors of run b are the flat row ``F[b]``; layer j occupies ``F[b, offs[j]:offs[j+1]]`` as a
  (d_{j+1}, d_j) C-ordered matrix (numpy's ``ravel`` of W_{j+1}); optimizer states ``state[b, slot]`` are
  flat in the same layout, so the element-wise updates run once over all layers;
* hyper-parameters of run b are ``hyp[b, H_*]``; the flags (Nesterov, AMSGrad, centered) are shared.

The math has its numpy/torch home elsewhere, and these kernels mirror it in numba's own code (numba
compiles neither numpy's generic helpers nor torch): the chain products of
:func:`flowsim.factors.prefix_products` / :func:`~flowsim.factors.suffix_products`, the layer gradients of
:func:`flowsim.validation.batched.layer_gradients`, the spectral penalty gradient of
:meth:`flowsim.penalties.Penalty.spectral_grad` and the updates of :mod:`flowsim.validation.optimizers`.
``tests/validation/test_compiled_optimizers.py`` compares every kernel with the torch engine.

Without numba the module still imports (the functions are plain Python, far too slow to be used, and
:func:`flowsim.validation.compiled_runs.numba_available` steers ``engine="auto"`` to torch).
"""

from __future__ import annotations

import math

import numpy as np

try:  # optional accelerator (the ``fast`` extra)
    import numba as _numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    _numba = None


def _jit(fn):
    return _numba.njit(cache=True, nogil=True)(fn) if _numba is not None else fn


# optimizer codes
GD, ADAM, ADAGRAD, ADAMAX, RMSPROP = 0, 1, 2, 3, 4
# hyper-parameter columns
H_LR, H_MOMENTUM, H_DAMPENING, H_WEIGHT_DECAY, H_BETA1 = 0, 1, 2, 3, 4
H_BETA2, H_EPS, H_LR_DECAY, H_INIT_ACC, H_ALPHA = 5, 6, 7, 8, 9
N_HYPER = 10
N_STATE = 3
# penalty codes
PEN_NONE, PEN_RATIO, PEN_NUCLEAR, PEN_SCHATTEN = 0, 1, 2, 3
_EPS_MACH = float(np.finfo(float).eps)


@_jit
def _lerp(start, end, weight):
    """torch.lerp: start + w(end − start) for |w| < ½, else end − (end − start)(1 − w)."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


@_jit
def _decayed(g, p, wd):
    """L2 weight decay the torch way, added to the gradient: g + wd·p (g itself when wd = 0)."""
    return g + wd * p if wd != 0.0 else g


@_jit
def optimizer_step(code, p, grad, st, h, nesterov, amsgrad, centered, step):
    """One ``torch.optim`` update of the flat parameters ``p`` in place (Kingma–Ba 2015 for Adam and
    Adamax, Duchi et al. 2011 for Adagrad, Tieleman–Hinton 2012 for RMSprop; torch's single-tensor code),
    element by element, from ``grad`` and the states ``st`` (N_STATE, n); ``step`` = k ≥ 1 is torch's
    ``state['step']``. With g = ∇ + wd·p (weight decay; ``addcdiv`` is self + (v·t₁)/t₂):

    * gd: b ← g (k = 1) else μb + (1−τ)g; g ← g + μb (Nesterov) or b (when μ ≠ 0); p ← p − ηg.
    * adam: m ← lerp(m, g, 1−β₁); v ← β₂v + (1−β₂)g²; (AMSGrad v̂ ← max(v̂, v));
      p ← p − (η/(1−β₁ᵏ))·m/(√v/√(1−β₂ᵏ) + ε).
    * adagrad: η_k = η/(1 + (k−1)·decay); s ← s + g²; p ← p − η_k g/(√s + ε).
    * adamax: m ← lerp(m, g, 1−β₁); u ← max(β₂u, |g| + ε); p ← p − (η/(1−β₁ᵏ))·m/u.
    * rmsprop: s ← αs + (1−α)g²; centered ḡ ← lerp(ḡ, g, 1−α), d = √(s − ḡ²) + ε, else d = √s + ε;
      μ > 0: b ← μb + g/d, p ← p − ηb; else p ← p − η g/d.
    """
    n = p.shape[0]
    lr = h[H_LR]
    wd = h[H_WEIGHT_DECAY]
    fstep = float(step)
    if code == GD:
        mu = h[H_MOMENTUM]
        damp = 1.0 - h[H_DAMPENING]
        for i in range(n):
            g = _decayed(grad[i], p[i], wd)
            if mu != 0.0:
                if step == 1:
                    buf = g
                else:
                    buf = st[0, i] * mu + damp * g
                st[0, i] = buf
                g = g + mu * buf if nesterov else buf
            p[i] = p[i] + (-lr) * g
    elif code == ADAM:
        b1 = h[H_BETA1]
        b2 = h[H_BETA2]
        eps = h[H_EPS]
        step_size = lr / (1.0 - b1**fstep)
        bc2_sqrt = (1.0 - b2**fstep) ** 0.5
        w1 = 1.0 - b1
        w2 = 1.0 - b2
        for i in range(n):
            g = _decayed(grad[i], p[i], wd)
            m = _lerp(st[0, i], g, w1)
            v = st[1, i] * b2 + w2 * g * g
            st[0, i] = m
            st[1, i] = v
            if amsgrad:
                vmax = st[2, i]
                if not (vmax >= v):
                    vmax = v
                st[2, i] = vmax
                denom = math.sqrt(vmax) / bc2_sqrt + eps
            else:
                denom = math.sqrt(v) / bc2_sqrt + eps
            p[i] = p[i] + (-step_size) * m / denom
    elif code == ADAGRAD:
        clr = lr / (1.0 + (fstep - 1.0) * h[H_LR_DECAY])
        eps = h[H_EPS]
        for i in range(n):
            g = _decayed(grad[i], p[i], wd)
            s = st[0, i] + g * g
            st[0, i] = s
            p[i] = p[i] + (-clr) * g / (math.sqrt(s) + eps)
    elif code == ADAMAX:
        b1 = h[H_BETA1]
        b2 = h[H_BETA2]
        eps = h[H_EPS]
        clr = lr / (1.0 - b1**fstep)
        w1 = 1.0 - b1
        for i in range(n):
            g = _decayed(grad[i], p[i], wd)
            m = _lerp(st[0, i], g, w1)
            a = st[1, i] * b2
            c = abs(g) + eps
            u = a if (a >= c or a != a) else c
            st[0, i] = m
            st[1, i] = u
            p[i] = p[i] + (-clr) * m / u
    else:  # RMSPROP
        alpha = h[H_ALPHA]
        eps = h[H_EPS]
        mu = h[H_MOMENTUM]
        w = 1.0 - alpha
        for i in range(n):
            g = _decayed(grad[i], p[i], wd)
            s = st[0, i] * alpha + w * g * g
            st[0, i] = s
            if centered:
                ga = _lerp(st[2, i], g, w)
                st[2, i] = ga
                avg = math.sqrt(s + (-ga) * ga) + eps
            else:
                avg = math.sqrt(s) + eps
            if mu > 0.0:
                buf = st[1, i] * mu + g / avg
                st[1, i] = buf
                p[i] = p[i] + (-lr) * buf
            else:
                p[i] = p[i] + (-lr) * g / avg


@_jit
def _schatten(s, p):
    """‖W‖_{S_p} = (Σ_{σ_i > 0} σ_i^p)^{1/p} (Zhao22 Table 1)."""
    total = 0.0
    for x in s:
        if x > 0.0:
            total += x**p
    return total ** (1.0 / p)


@_jit
def penalty_spectral(kind, s, m, n, pp, pq, g):
    """R(σ) and g(σ) with ∇R(W) = U diag(g) Vᵀ, written into ``g`` (conventions of flowsim.penalties):

    * ratio (Zhao22 Sec. 3): R = ‖σ‖₁/‖σ‖₂, g_i = [σ_i > τ]/‖W‖_F − ‖W‖_* σ_i/‖W‖_F³;
    * nuclear: R = ‖σ‖₁, g_i = [σ_i > τ] (minimum-norm subgradient);
    * schatten (Zhao22 Table 1): R = ‖W‖_{S_p}/‖W‖_{S_q}, g = d_p/‖W‖_{S_q} − ‖W‖_{S_p} d_q/‖W‖_{S_q}²,
      d_p = ‖W‖_{S_p}^{1−p} max(σ, 10⁻⁸σ₁)^{p−1};

    with the numerical-rank threshold τ = max(m, n)·ε_mach·σ₁.
    """
    r = s.shape[0]
    for i in range(r):
        g[i] = 0.0
    if r == 0:
        return 0.0
    tau = max(m, n) * _EPS_MACH * s[0]
    if kind == PEN_RATIO:
        sq = 0.0
        nuc = 0.0
        for i in range(r):
            sq += s[i] * s[i]
            nuc += s[i]
        fro = math.sqrt(sq)
        if fro == 0.0:
            return 0.0
        fro3 = fro**3.0
        for i in range(r):
            support = 1.0 if s[i] > tau else 0.0
            g[i] = support / fro - nuc * s[i] / fro3
        return nuc / fro
    if kind == PEN_NUCLEAR:
        nuc = 0.0
        for i in range(r):
            nuc += s[i]
            g[i] = 1.0 if s[i] > tau else 0.0
        return nuc
    if kind == PEN_SCHATTEN:
        sp = _schatten(s, pp)
        sq = _schatten(s, pq)
        if sq == 0.0:
            return 0.0
        floor = 1e-8 * s[0]
        for i in range(r):
            sf = s[i] if s[i] > floor else floor
            dp = sp ** (1.0 - pp) * sf ** (pp - 1.0)
            dq = sq ** (1.0 - pq) * sf ** (pq - 1.0)
            g[i] = dp / sq - sp * dq / sq**2.0
        return sp / sq
    return 0.0


@_jit
def advance_runs(
    F, dims, offs, W_star, mask, coef, lam, pen_kind, pen_p, pen_q,
    opt_code, hyp, nesterov, amsgrad, centered, state, first_bad, W_out, k_from, k_to, blowup,
):  # fmt: skip
    """Advance every run b with ``first_bad[b] < 0`` from iterate k_from to iterate k_to.

    At each iterate k (k_from ≤ k ≤ k_to) of run b: prefix products W_{j:1} = W_j W_{j−1:1}, end product
    W = W_{N:1}; residual R = P_Ω(W − W*), objective ℓ + λR(W) with ℓ = (c/D)ΣR², gradient
    G = (2c/D)R + λ U diag(g(σ)) Vᵀ; the iterate is written to ``W_out[b]``; a non-finite objective or one
    above ``blowup`` sets ``first_bad[b] = k`` and stops the run. For k < k_to the layer gradients
    ∇_{W_j} = W_{N:j+1}ᵀ G W_{j−1:1}ᵀ (ACH18 Eq. 5, the chain rule of the product) are all formed from
    the iterate, then one optimizer step (torch step number k + 1) updates every layer.
    """
    B = F.shape[0]
    N = dims.shape[0] - 1
    m = dims[N]
    n = dims[0]
    total = offs[N]
    r = min(m, n)
    gbuf = np.empty(total)
    gsv = np.empty(r)
    for b in range(B):
        if first_bad[b] >= 0:
            continue
        row = F[b]
        layers = [row[offs[0] : offs[1]].reshape((dims[1], dims[0]))]
        for j in range(1, N):
            layers.append(row[offs[j] : offs[j + 1]].reshape((dims[j + 1], dims[j])))
        use_penalty = pen_kind != PEN_NONE and lam[b] != 0.0
        for k in range(k_from, k_to + 1):
            pre = [layers[0]]  # pre[j] = W_{j+1:1}
            for j in range(1, N):
                pre.append(np.dot(layers[j], pre[j - 1]))
            W = pre[N - 1]
            G = np.empty((m, n))
            loss = 0.0
            two_c = 2.0 * coef[b]
            for a in range(m):
                for c in range(n):
                    R = mask[b, a, c] * (W[a, c] - W_star[b, a, c])
                    loss += R * R
                    G[a, c] = two_c * R
            loss = coef[b] * loss
            bad = not (abs(loss) <= blowup)
            if use_penalty and not bad:
                U, s, Vh = np.linalg.svd(W, full_matrices=False)
                value = penalty_spectral(pen_kind, s, m, n, pen_p, pen_q, gsv)
                loss = loss + lam[b] * value
                bad = not (abs(loss) <= blowup)
                pg = np.dot(U * gsv, Vh)
                for a in range(m):
                    for c in range(n):
                        G[a, c] = G[a, c] + lam[b] * pg[a, c]
            W_out[b] = W
            if bad:
                first_bad[b] = k
                break
            if k == k_to:
                break
            # suffix products suf = W_{N:j+1}, built right to left as (W_N W_{N−1}) W_{N−2} ⋯
            suf = layers[N - 1]
            for j in range(N - 1, -1, -1):
                if j == N - 1:
                    gj = G if N == 1 else np.dot(G, pre[N - 2].T)
                else:
                    if j < N - 2:
                        suf = np.dot(suf, layers[j + 1])
                    gj = np.dot(suf.T, G)
                    if j > 0:
                        gj = np.dot(gj, pre[j - 1].T)
                o = offs[j]
                d = dims[j]
                for a in range(dims[j + 1]):
                    for c in range(d):
                        gbuf[o + a * d + c] = gj[a, c]
            optimizer_step(opt_code, row, gbuf, state[b], hyp[b], nesterov, amsgrad, centered, k + 1)
