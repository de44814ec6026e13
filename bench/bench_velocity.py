"""Cost of one velocity evaluation, as ratios measured in one run (benchmark 2).

    python bench/bench_velocity.py [--n 100] [--depth 3] [--kron-n 30] [--repeat 7]

Ratios (goal in brackets):
  end-product velocity (SVD basis, docs/math.md §4) / one LAPACK SVD (numpy.linalg.svd) of the matrix  [≤ 1.5]
  layer-wise velocity (docs/math.md §6) / 2N matrix products of the same size                          [≤ 1.5]
  end-product velocity / layer-wise velocity (what the automatic choice of flowsim.flows.auto saves)
  before/after: the first implementations (kept below as ``_first_*``) / the current ones
  explicit-Kronecker evaluation of P_W vec(G) / SVD-basis evaluation, at n = kron-n
BLAS threads are pinned by bench/_common.py (FLOWSIM_BENCH_THREADS, default 1).
"""

from __future__ import annotations

import argparse

import _common  # before numpy: pins the BLAS threads
import numpy as np

from flowsim import LayerwiseFlow, end_product_velocity, init_factors, layerwise_velocity, synthetic_problem
from flowsim.factors import end_product
from flowsim.flows.auto import choose_formulation


def _time(fn, repeat: int) -> float:
    """Median over ``repeat`` rounds of the mean time per call (seconds)."""
    return _common.median_time(fn, repeat=repeat)


def _first_kernel(s: np.ndarray, shape: tuple[int, int], depth: int) -> np.ndarray:
    """The first kernel K = Σ_j a^{j−1} ⊗ b^{N−j} as N outer products (before the performance work)."""
    m, n = shape
    a, b = np.zeros(m), np.zeros(n)
    r = s.size
    tau = max(m, n) * np.finfo(float).eps * (float(s[0]) if r else 0.0)
    a[:r] = np.where(s > tau, s, 0.0) ** (2.0 / depth)
    b[:r] = a[:r]
    a_pows, b_pows = [np.ones(m)], [np.ones(n)]
    for _ in range(depth - 1):
        a_pows.append(a_pows[-1] * a)
        b_pows.append(b_pows[-1] * b)
    K = np.zeros((m, n))
    for j in range(1, depth + 1):
        K += np.outer(a_pows[j - 1], b_pows[depth - j])
    return K


def _first_end_product_velocity(W, problem, depth):
    """Ẇ = −U (K ∘ UᵀGV) Vᵀ as first implemented (SVD also at N = 1, kernel by outer products)."""
    U, s, Vt = np.linalg.svd(W, full_matrices=True)
    Gt = U.T @ problem.grad(W) @ Vt.T
    return -(U @ (_first_kernel(s, W.shape, depth) * Gt) @ Vt)


def _first_layerwise_velocity(factors, problem):
    """Ẇ_j = −W_{N:j+1}ᵀ G W_{j−1:1}ᵀ as first implemented: prefix and suffix products starting from
    identities, then two products per layer (≈ 4N + 2 products, N = 3: 14)."""
    n, m = factors[0].shape[1], factors[-1].shape[0]
    pre = [np.eye(n)]
    for F in factors:
        pre.append(F @ pre[-1])
    suf = [np.eye(m)]
    for F in reversed(factors):
        suf.append(suf[-1] @ F)
    suf = suf[::-1]
    W = factors[0]
    for F in factors[1:]:
        W = F @ W
    G = problem.grad(W)
    return [-(suf[j + 1].T @ G @ pre[j].T) for j in range(len(factors))]


def _kron_velocity(W: np.ndarray, G: np.ndarray, depth: int) -> np.ndarray:
    """What a naive implementation does: fractional powers by eigh, explicit Kronecker P_W, a matvec."""
    def power(S, a):
        lam, Q = np.linalg.eigh(S)
        lam = np.clip(lam, 0, None)
        return (Q * (np.ones_like(lam) if a == 0 else lam**a)) @ Q.T
    m, n = W.shape
    P = np.zeros((m * n, m * n))
    for j in range(1, depth + 1):
        P += np.kron(power(W.T @ W, (depth - j) / depth), power(W @ W.T, (j - 1) / depth))
    return -(P @ G.reshape(-1, order="F")).reshape((m, n), order="F")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--kron-n", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args(argv)
    n, N = a.n, a.depth
    problem = synthetic_problem(n, n, rank=5, observed=int(0.2 * n * n), seed=0)
    factors = init_factors("balanced-gaussian", (n, n), N, scale=1.0, seed=0)
    W = end_product(factors)
    A = factors[0]
    flow = LayerwiseFlow(problem, N)
    y = flow.initial_state(factors)

    def first_flow_call() -> np.ndarray:
        return np.concatenate([v.ravel() for v in _first_layerwise_velocity(factors, problem)])

    W1 = factors[0]
    # every time below comes from interleaved rounds (a load drift hits all sides of each ratio alike)
    (t_svd, t_ep, t_lw, t_mm, t_ep_old, t_lw_old, t_flow, t_flow_old) = _common.paired_times([
        lambda: np.linalg.svd(W),
        lambda: end_product_velocity(W, problem, N),
        lambda: layerwise_velocity(factors, problem),
        lambda: [A @ A for _ in range(2 * N)],
        lambda: _first_end_product_velocity(W, problem, N),
        lambda: _first_layerwise_velocity(factors, problem),
        lambda: flow(0.0, y),
        first_flow_call,
    ], repeat=a.repeat)
    t_ep1, t_ep1_old = _common.paired_times([lambda: end_product_velocity(W1, problem, 1),
                                             lambda: _first_end_product_velocity(W1, problem, 1)],
                                            repeat=a.repeat)
    assert np.allclose(_first_end_product_velocity(W, problem, N), end_product_velocity(W, problem, N))
    assert all(np.allclose(x, y) for x, y in zip(_first_layerwise_velocity(factors, problem),
                                                 layerwise_velocity(factors, problem)))
    picked, why = choose_formulation(factors)

    k = a.kron_n
    pk = synthetic_problem(k, k, rank=5, observed=int(0.2 * k * k), seed=0)
    Wk = end_product(init_factors("balanced-gaussian", (k, k), N, scale=1.0, seed=0))
    t_ep_k = _time(lambda: end_product_velocity(Wk, pk, N), a.repeat)
    t_kron = _time(lambda: _kron_velocity(Wk, pk.grad(Wk), N), max(3, a.repeat // 2))
    assert np.allclose(_kron_velocity(Wk, pk.grad(Wk), N), end_product_velocity(Wk, pk, N), atol=1e-10)

    rows = [
        (f"end-product velocity / LAPACK SVD (n={n}, N={N})", t_ep / t_svd, "≤ 1.5"),
        (f"layer-wise velocity / {2 * N} matrix products (n={n}, N={N})", t_lw / t_mm, "≤ 1.5"),
        (f"end-product velocity / layer-wise velocity (n={n}, N={N}); auto picks {picked}", t_ep / t_lw, ""),
        ("before/after: end-product velocity, first version / now", t_ep_old / t_ep, ""),
        ("before/after: layer-wise velocity, first version / now", t_lw_old / t_lw, ""),
        ("before/after: LayerwiseFlow velocity, flat state (in place now)", t_flow_old / t_flow, ""),
        (f"LayerwiseFlow velocity on the flat state / {2 * N} matrix products", t_flow / t_mm, "≤ 1.5"),
        ("before/after: end-product velocity at N = 1 (no SVD now), first / now", t_ep1_old / t_ep1, ""),
        (f"explicit Kronecker / SVD basis (n={k}, N={N})", t_kron / t_ep_k, ""),
    ]
    print(_common.header("benchmark 2: velocity evaluation cost"))
    print(f"# times: svd {t_svd * 1e3:.3f} ms, end-product {t_ep * 1e3:.3f} ms "
          f"(first version: {t_ep_old * 1e3:.3f}), "
          f"layer-wise {t_lw * 1e3:.3f} ms (first version: {t_lw_old * 1e3:.3f}), "
          f"{2 * N} matmuls {t_mm * 1e3:.3f} ms, kron(n={k}) {t_kron * 1e3:.1f} ms, end-product(n={k}) "
          f"{t_ep_k * 1e3:.3f} ms")
    print(f"# automatic choice for balanced-gaussian factors, no penalty: {picked} ({why})")
    print("| ratio | value | goal |")
    print("|---|---|---|")
    for name, r, goal in rows:
        print(f"| {name} | {r:.2f} | {goal} |")

if __name__ == "__main__":
    main()
