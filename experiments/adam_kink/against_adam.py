"""flowsim's adam-sign (moment-averaged rule at the kink, docs/math.md §8.7) against discrete Adam with fixed
β = (0.9, 0.999) as η → 0, on the 4×4 rank-1 problem with the ratio penalty (λ = 0.1).

Usage: python experiments/adam_kink/against_adam.py DEPTH T ETAS   (e.g. 1 0.3 1e-5,3e-6,1e-6)
"""

import sys
import time

import numpy as np

from flowsim.flows import make_flow
from flowsim.initializations import init_factors
from flowsim.integrator import solve_flow
from flowsim.penalties import make_penalty
from flowsim.problems import synthetic_problem
from flowsim.validation.train import train


def adam(prob, pen, lam, factors, eta, saves):
    """Discrete Adam (flowsim's ``train``, torch.optim.Adam semantics, β = (0.9, 0.999), ε = 1e-8) on the
    layers; W at the times in ``saves`` (t = kη)."""
    at = [int(round(t / eta)) for t in saves]
    traj = train(prob, factors, optimizer="adam", lr=eta, iters=max(at), penalty=pen, lam=lam,
                 record_iters=[0, *at], save_matrices=True, progress=False)
    return dict(zip(saves, traj.W[1:]))


def main() -> None:
    depth, T = int(sys.argv[1]), float(sys.argv[2])
    etas = [float(x) for x in sys.argv[3].split(",")]
    prob, pen, lam = synthetic_problem(4, 4, 1, 10, 0), make_penalty("ratio"), 0.1
    factors = init_factors("gaussian", prob.shape, depth, 0.5, 0)
    flow = make_flow("adam-sign", prob, depth, pen, lam, "layers")
    saves = [T * q for q in (0.25, 0.5, 0.75, 1.0)]
    t0 = time.time()
    res = solve_flow(flow, flow.initial_state(factors), np.array([0.0, *saves]), rtol=1e-9, atol=1e-12)
    print("flow", res.status, res.message[:160], f"{time.time() - t0:.1f}s", res.extra.get("kink"),
          flush=True)
    W_flow = {t: flow.end_product(y) for t, y in zip(res.t, res.y)}
    for t in saves:
        print(f"  t={t:.4g} sigma={np.array2string(np.linalg.svd(W_flow[t], compute_uv=False), precision=6)}")
    for eta in etas:
        t1 = time.time()
        W_adam = adam(prob, pen, lam, factors, eta, saves)
        e_W, e_s = [], []
        for t in saves:
            s_flow = np.linalg.svd(W_flow[t], compute_uv=False)
            e_W.append(np.linalg.norm(W_adam[t] - W_flow[t]) / np.linalg.norm(W_flow[t]))
            e_s.append(np.abs(np.linalg.svd(W_adam[t], compute_uv=False) - s_flow).max() / s_flow[0])
        print(f"adam eta={eta:g} window/T={eta / 1e-3 / T:.3g} ({time.time() - t1:.0f}s) e_W: "
              + " ".join(f"{x:.2e}" for x in e_W) + "  e_sigma: " + " ".join(f"{x:.2e}" for x in e_s),
              flush=True)


if __name__ == "__main__":
    main()
