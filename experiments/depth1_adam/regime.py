"""Which Adam model fits the papers' depth-1 runs? Discrete Adam (β = (0.9, 0.999), ε = 1e-8) on the paper's
problem (100×100, rank 5, 2000 observed, balanced Gaussian init of scale 1e-3, seed 0), depth 1, ratio penalty
at λ, at several step sizes η, against the fixed-β limit ``adam-sign``: how fast does W collapse to rank 1?

    python experiments/depth1_adam/regime.py [LAM] [ETAS]      # defaults 1e-2 and 1e-2,1e-3,1e-4,1e-5

Prints σ₁ and σ₂/σ₁ of W at t = kη ∈ {0.002, 0.005, 0.01, 0.02} for each η, then ``adam-sign`` integrated
(RK45, rtol 1e-5) to t = 0.004 and how far it gets.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from flowsim.flows import make_flow
from flowsim.initializations import init_factors
from flowsim.integrator import integrate
from flowsim.penalties import make_penalty
from flowsim.problems import synthetic_problem
from flowsim.validation.train import train

TIMES = (0.002, 0.005, 0.01, 0.02)


def main() -> None:
    lam = float(sys.argv[1]) if len(sys.argv) > 1 else 1e-2
    etas = [float(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1e-2,1e-3,1e-4,1e-5").split(",")]
    problem = synthetic_problem(100, 100, 5, 2000, 0)
    factors = init_factors("balanced-gaussian", problem.shape, 1, 1e-3, 0)
    ratio = make_penalty("ratio")
    print(f"depth 1, ratio penalty λ = {lam:g}; W(t) of discrete Adam at t = kη")
    for eta in etas:
        iters = [max(1, int(round(t / eta))) for t in TIMES]
        start = time.perf_counter()
        traj = train(problem, factors, optimizer="adam", lr=eta, iters=iters[-1], penalty=ratio, lam=lam,
                     record_iters=iters, save_matrices=True, progress=False, device="cpu")
        assert traj.W is not None
        for t, W in zip(traj.t, traj.W):
            if t == 0:
                continue
            s = np.linalg.svd(W, compute_uv=False)
            print(f"  η = {eta:g}  t = {t:.4f}: σ₁ = {s[0]:.4f}  σ₂/σ₁ = {s[1] / s[0]:.2e}  "
                  f"#σ > 1e-2·σ₁ = {int((s > 1e-2 * s[0]).sum())}")
        print(f"  ({time.perf_counter() - start:.1f} s)")
    flow = make_flow("adam-sign", problem, 1, ratio, lam, "layers")
    y0 = flow.initial_state(factors)
    grid = np.array([0.0, 0.001, 0.002, 0.003, 0.004])
    start = time.perf_counter()
    res = integrate(flow, y0, grid, method="RK45", rtol=1e-5, atol=1e-7, max_wall_time=300)
    print(f"adam-sign (η → 0 with β fixed): {res.status}, {res.message} ({res.nsteps} steps, "
          f"{time.perf_counter() - start:.0f} s)")
    for t, y in zip(res.t[1:], res.y[1:]):
        s = np.linalg.svd(flow.end_product(y), compute_uv=False)
        print(f"  t = {t:.4f}: σ₁ = {s[0]:.4f}  σ₂/σ₁ = {s[1] / s[0]:.2e}  "
              f"#σ > 1e-2·σ₁ = {int((s > 1e-2 * s[0]).sum())}")


if __name__ == "__main__":
    main()
