"""The Adam ODE (BB21, ``adam-ode``) at step η against discrete Adam at the same η on the paper's depth-1
problem (100×100, rank 5, 2000 observed, balanced Gaussian init of scale 1e-3, seed 0) with the ratio penalty
at λ: figure 3's Adam row and its reference.

    python experiments/depth1_adam/ode_vs_adam.py LAM ETAS TIMES      # e.g. 1e-2 1e-2,5e-3 0.1,0.3,1,3

For each η: discrete Adam (β = (0.9, 0.999), ε = 1e-8) and the ODE from t0 = η (RK45, rtol 1e-6, atol 1e-9),
compared at each t = kη of TIMES: e_W = ‖W_ode − W_adam‖_F/‖W_adam‖_F, e_σ = max_i |Δσ_i|/σ₁(W_adam), and
the test error, effective rank and σ₁ of both (Adam / ODE).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from flowsim.flows import make_flow
from flowsim.initializations import init_factors
from flowsim.integrator import integrate
from flowsim.metrics import effective_rank
from flowsim.penalties import make_penalty
from flowsim.problems import synthetic_problem
from flowsim.validation.train import train


def main() -> None:
    lam = float(sys.argv[1])
    etas = [float(x) for x in sys.argv[2].split(",")]
    times = [float(x) for x in sys.argv[3].split(",")]
    problem = synthetic_problem(100, 100, 5, 2000, 0)
    factors = init_factors("balanced-gaussian", problem.shape, 1, 1e-3, 0)
    penalty = make_penalty("ratio" if lam > 0 else "none")
    for eta in etas:
        iters = [int(round(t / eta)) for t in times]
        start = time.perf_counter()
        disc = train(problem, factors, optimizer="adam", lr=eta, iters=iters[-1], penalty=penalty, lam=lam,
                     record_iters=iters, save_matrices=True, progress=False, device="cpu",
                     hyper={"beta1": 0.9, "beta2": 0.999, "eps": 1e-8})
        t_disc = time.perf_counter() - start
        flow = make_flow("adam-ode", problem, 1, penalty, lam, "layers", lr=eta, beta1=0.9, beta2=0.999,
                         eps=1e-8)
        start = time.perf_counter()
        res = integrate(flow, flow.initial_state(factors), np.array([flow.t0, *times]), method="RK45",
                        rtol=1e-6, atol=1e-9)
        t_ode = time.perf_counter() - start
        print(f"λ = {lam:g}, η = {eta:g}: discrete Adam {t_disc:.1f} s; ODE {res.status} in {t_ode:.1f} s "
              f"({res.nsteps} steps)")
        assert disc.W is not None
        for t in times:
            Wa = disc.W[int(np.argmin(np.abs(disc.t - t)))]
            Wo = flow.end_product(res.y[int(np.argmin(np.abs(res.t - t)))])
            sa, so = np.linalg.svd(Wa, compute_uv=False), np.linalg.svd(Wo, compute_uv=False)
            print(f"  t = {t:g}: e_W = {np.linalg.norm(Wo - Wa) / np.linalg.norm(Wa):.3e}  "
                  f"e_σ = {np.max(np.abs(so - sa)) / sa[0]:.3e}  test error "
                  f"{problem.test_errors(Wa)[0]:.4f} / {problem.test_errors(Wo)[0]:.4f}  erank "
                  f"{effective_rank(sa):.2f} / {effective_rank(so):.2f}  σ₁ {sa[0]:.3f} / {so[0]:.3f}")


if __name__ == "__main__":
    main()
