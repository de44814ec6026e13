"""Cost of one velocity evaluation, as ratios measured in one run (issue 2 / issue 8 benchmark 2).

    python bench/bench_velocity.py [--n 100] [--depth 3] [--kron-n 30] [--repeat 7]

Ratios (goal in brackets):
  end-product velocity (SVD basis, SPEC §3.1) / one numpy.linalg.svd of the same matrix   [≤ 1.5]
  end-product velocity / layer-wise velocity (SPEC §3.3)
  layer-wise velocity / 2N matrix products of the same size                               [≤ 1.5]
  explicit-Kronecker evaluation of P_W vec(G) / SVD-basis evaluation, at n = kron-n
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import timeit

import numpy as np

from flowsim import end_product_velocity, init_factors, layerwise_velocity, synthetic_problem
from flowsim.factors import end_product


def _time(fn, repeat: int) -> float:
    """Median over ``repeat`` rounds of the mean time per call (seconds)."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, number)
    return statistics.median(t / number for t in timer.repeat(repeat=repeat, number=number))


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
    t_svd = _time(lambda: np.linalg.svd(W), a.repeat)
    t_ep = _time(lambda: end_product_velocity(W, problem, N), a.repeat)
    t_lw = _time(lambda: layerwise_velocity(factors, problem), a.repeat)
    A = factors[0]
    t_mm = _time(lambda: [A @ A for _ in range(2 * N)], a.repeat)

    k = a.kron_n
    pk = synthetic_problem(k, k, rank=5, observed=int(0.2 * k * k), seed=0)
    Wk = end_product(init_factors("balanced-gaussian", (k, k), N, scale=1.0, seed=0))
    t_ep_k = _time(lambda: end_product_velocity(Wk, pk, N), a.repeat)
    t_kron = _time(lambda: _kron_velocity(Wk, pk.grad(Wk), N), max(3, a.repeat // 2))
    assert np.allclose(_kron_velocity(Wk, pk.grad(Wk), N), end_product_velocity(Wk, pk, N), atol=1e-10)

    rows = [
        (f"end-product velocity / numpy SVD (n={n}, N={N})", t_ep / t_svd, "≤ 1.5"),
        (f"end-product velocity / layer-wise velocity (n={n}, N={N})", t_ep / t_lw, ""),
        (f"layer-wise velocity / {2 * N} matrix products (n={n})", t_lw / t_mm, "≤ 1.5"),
        (f"explicit Kronecker / SVD basis (n={k}, N={N})", t_kron / t_ep_k, ""),
    ]
    print(f"# velocity benchmark  (python {platform.python_version()}, numpy {np.__version__})")
    print(f"# command: python {' '.join(sys.argv)}")
    print(f"# times: svd {t_svd * 1e3:.3f} ms, end-product {t_ep * 1e3:.3f} ms, "
          f"layer-wise {t_lw * 1e3:.3f} ms, "
          f"{2 * N} matmuls {t_mm * 1e3:.3f} ms, kron(n={k}) {t_kron * 1e3:.1f} ms, end-product(n={k}) "
          f"{t_ep_k * 1e3:.3f} ms")
    print("| ratio | value | goal |")
    print("|---|---|---|")
    for name, r, goal in rows:
        print(f"| {name} | {r:.2f} | {goal} |")


if __name__ == "__main__":
    main()
