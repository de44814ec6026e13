"""Benchmark 1: flowsim against small-step discrete GD at equal accuracy.

    python bench/bench_flow_vs_gd.py [--t-end 3000] [--etas 1,0.5,0.25] [--target 1e-4]
                                     [--max-gd-iters 200000]

Paper setting (docs/math.md §2, §13): 100×100, rank 5, 2000 observed entries, mean loss, depth 3,
balanced-Gaussian init of scale 1e-3; gradient flow up to ``--t-end`` (3000 covers the learning of all 5
singular values: the script checks that σ_5 is within 1% of its final value at 0.9·t_end).

* reference: flowsim's end-product flow (docs/math.md §4) at rtol 1e-10, atol 1e-14;
* flowsim: ``simulate`` at the default tolerances (rtol 1e-7, atol 1e-10), end-product state and the
  automatic state (:mod:`flowsim.flows.auto`), wall time including the metrics;
* GD: a tight torch loop (float64, closed-form layer gradients, 6 matrix products per step, no autograd;
  σ computed only at the saved times) for each η of ``--etas``; t_k = kη.

e_σ = max_k max_i |σ_i(t_k) − σ_i^{ref}(t_k)| / σ_1^{ref}(t_k) over saved times t_k (multiples of every η).
GD's e_σ is first order in η, so the largest η reaching ``--target`` is η* = η_ref·(target/e_σ(η_ref))^{1/p}
with the slope p fitted over the η run; if η* needs more than ``--max-gd-iters`` steps its wall time is
(steps)·(measured cost per step) — the table says which. Ratio = GD wall time at η* / flowsim wall time.
"""

from __future__ import annotations

import argparse
import time

import _common  # before numpy: pins the BLAS threads
import numpy as np
import torch

from flowsim import EndProductFlow, init_factors, simulate, synthetic_problem
from flowsim.flows.auto import AutoGradientFlow


def e_sigma(sig: np.ndarray, ref: np.ndarray) -> float:
    """max_k max_i |σ_i − σ_i^ref| / σ_1^ref at common times (docs/math.md §11)."""
    return float(np.max(np.abs(sig - ref) / ref[:, :1]))


def gd_sigmas(problem, factors, eta: float, save_steps: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Discrete GD W_j ← W_j − η ∇_{W_j}ℓ in a tight torch loop; σ(W) at iterations ``save_steps``.

    Returns (σ (T, min(m,n)), wall time in s, iterations)."""
    Ws = torch.tensor(problem.W_star)
    M = torch.tensor(problem.mask, dtype=torch.float64) * (2.0 * problem.scale / problem.denominator)
    W1, W2, W3 = (torch.tensor(F) for F in factors)
    saves = set(int(k) for k in save_steps)
    out = []
    K = int(save_steps[-1])
    start = time.perf_counter()
    with torch.no_grad():
        for k in range(K + 1):
            W21 = W2 @ W1
            W = W3 @ W21
            if k in saves:
                out.append(torch.linalg.svdvals(W).numpy())
            if k == K:
                break
            G = M * (W - Ws)  # ∇ℓ(W) = (2c/D) P_Ω(W − W*)
            B = W3.T @ G  # W_3ᵀ G; layer gradients G W_{2:1}ᵀ, B W_1ᵀ, W_2ᵀ B (docs/math.md §6)
            g3, g2, g1 = G @ W21.T, B @ W1.T, W2.T @ B
            W3 -= eta * g3
            W2 -= eta * g2
            W1 -= eta * g1
    return np.array(out), time.perf_counter() - start, K


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--t-end", type=float, default=3000.0)
    ap.add_argument("--etas", default="1,0.5,0.25", help="GD step sizes (powers of 2 keep t_k exact)")
    ap.add_argument("--target", type=float, default=1e-4)
    ap.add_argument("--max-gd-iters", type=int, default=200_000)
    ap.add_argument("--n-save", type=int, default=40)
    a = ap.parse_args(argv)
    _common.set_torch_threads()
    problem = synthetic_problem(100, 100, rank=5, observed=2000, seed=0)
    factors = init_factors("balanced-gaussian", problem.shape, 3, scale=1e-3, seed=0)
    # saved times: integers on a log grid (multiples of every η = 2^-k)
    t_save = np.unique(np.round(np.geomspace(1.0, a.t_end, a.n_save)))
    t_eval = np.concatenate([[0.0], t_save])
    print(_common.header("benchmark 1: flow vs small-step GD at equal accuracy"), flush=True)

    w_ref, ref = _common.wall(lambda: simulate(EndProductFlow(problem, 3), factors, a.t_end, t_eval=t_eval,
                                               rtol=1e-10, atol=1e-14, progress=False))
    s_ref = ref.sigma
    i90 = int(np.searchsorted(ref.t, 0.9 * a.t_end))
    learned = bool(abs(s_ref[i90, 4] - s_ref[-1, 4]) <= 0.01 * s_ref[-1, 4])
    print(f"# reference rtol 1e-10: {w_ref:.1f} s, nfev {ref.stats['nfev']}; σ_1..6 at t_end "
          f"{np.round(s_ref[-1, :6], 3).tolist()}; all 5 learned by 0.9·t_end: {learned}", flush=True)

    rows = []
    flow_rows = {}
    for label, flow in (("end-product", EndProductFlow(problem, 3)), ("auto", AutoGradientFlow(problem, 3))):
        w, tr = _common.wall(lambda flow=flow: simulate(flow, factors, a.t_end, t_eval=t_eval,
                                                        progress=False))
        err = e_sigma(tr.sigma, s_ref)
        flow_rows[label] = (w, err)
        rows.append((f"flowsim default tol, {label} ({tr.stats['formulation']})", "—", tr.stats["nfev"], err,
                     w, "measured"))
        print(f"# {rows[-1]}", flush=True)

    etas = sorted((float(x) for x in a.etas.split(",")), reverse=True)
    gd = []
    for eta in etas:
        steps = np.round(t_eval / eta).astype(int)
        sig, w, K = gd_sigmas(problem, factors, eta, steps)
        err = e_sigma(sig, s_ref)
        gd.append((eta, err, w, K))
        rows.append(("GD (torch loop)", eta, K, err, w, "measured"))
        print(f"# {rows[-1]}", flush=True)
    eta_arr = np.array([g[0] for g in gd])
    err_arr = np.array([g[1] for g in gd])
    slope = float(np.polyfit(np.log(eta_arr), np.log(err_arr), 1)[0]) if len(gd) > 1 else 1.0
    cost_per_step = float(np.median([g[2] / g[3] for g in gd]))
    ok = [g for g in gd if g[1] <= a.target]
    if ok:
        eta_star, _, w_gd, K_star = max(ok, key=lambda g: g[0])
        how = "measured"
    else:
        e0, err0 = gd[-1][0], gd[-1][1]
        eta_star = e0 * (a.target / err0) ** (1.0 / max(slope, 1e-3))
        K_star = int(np.ceil(a.t_end / eta_star))
        if K_star <= a.max_gd_iters:
            steps = np.round(t_eval / eta_star).astype(int)
            sig, w_gd, K_star = gd_sigmas(problem, factors, eta_star, steps)
            err = e_sigma(sig, s_ref)
            how = f"measured (e_σ {err:.2e})"
        else:
            w_gd = K_star * cost_per_step
            how = f"{K_star:.2e} steps × {cost_per_step * 1e3:.3f} ms/step"
    rows.append(("GD at the largest η reaching the target", eta_star, K_star, a.target, w_gd, how))
    print()
    print(_common.table(rows, ("run", "η", "steps / nfev", "e_σ", "wall s", "how")))
    print(f"\nfitted slope d log e_σ / d log η = {slope:.2f} (expected ≈ 1); target e_σ ≤ {a.target:g}")
    print("| ratio | value | goal |")
    print("|---|---|---|")
    for label, (w, err) in flow_rows.items():
        met = "" if err <= a.target else f" (flowsim e_σ {err:.1e} misses the target)"
        r = w_gd / w
        verdict = "met" if r >= 100 else "NOT met"
        print(f"| GD wall at η* / flowsim {label} wall{met} | {r:.0f} | ≥ 100 {verdict} |")


if __name__ == "__main__":
    main()
