"""Benchmark 3: how simulate and one discrete step scale with n.

    python bench/bench_scaling.py [--sizes 50,100,200,400,800] [--budget 20] [--t-end 1e4]

Problem: n×n, rank 5, observed fraction 0.2, depth 3, balanced-Gaussian init (scale 1e-3), no penalty.
For each n and each formulation (end-product state, docs/math.md §4, and the automatic choice of
:mod:`flowsim.flows.auto`, here the layer state, docs/math.md §6):

* ``simulate`` wall time to ``--t-end`` (200 log-spaced saved times); runs longer than ``--budget`` seconds
  stop there (status ``failed`` — the row says how far they got) and contribute their cost per velocity
  evaluation (wall/nfev) only;
* one discrete GD step (torch, float64, 6 matrix products) — the unit cost of the discrete baseline;
* peak traced memory (tracemalloc: numpy's allocations) of ``simulate`` saving T = 50 and T = 100 snapshots
  over a short horizon; the increment per extra snapshot in words (8 bytes) per n² must stay constant in
  n (O(n²) per saved snapshot);
* one velocity evaluation at the initial state (median), the unit cost of the flow.

Fitted exponents are log-log slopes over the sizes given (expected → 3 for large n: SVD and matrix
products; smaller at small n where per-call overhead dominates).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import _common  # before numpy: pins the BLAS threads
import numpy as np
import torch

from flowsim import EndProductFlow, init_factors, simulate, synthetic_problem
from flowsim.flows.auto import AutoGradientFlow


def _problem(n: int):
    return synthetic_problem(n, n, rank=5, observed=int(round(0.2 * n * n)), seed=0)


def gd_step_time(problem, factors, repeat: int = 5) -> float:
    """Median wall time of one discrete GD step W_j ← W_j − η∇_{W_j}ℓ (closed-form gradients, torch)."""
    Ws = torch.tensor(problem.W_star)
    M = torch.tensor(problem.mask, dtype=torch.float64) * (2.0 / problem.denominator)
    W1, W2, W3 = (torch.tensor(F) for F in factors)
    eta = 1e-3

    def step() -> None:
        with torch.no_grad():
            W21 = W2 @ W1
            G = M * (W3 @ W21 - Ws)
            B = W3.T @ G
            g3, g2, g1 = G @ W21.T, B @ W1.T, W2.T @ B
            W3.sub_(eta * g3)
            W2.sub_(eta * g2)
            W1.sub_(eta * g1)

    return _common.median_time(step, repeat=repeat, min_time=0.1)


def peak_memory(flow_cls, problem, factors, n_save: int) -> float:
    """Peak traced bytes of ``simulate`` saving ``n_save`` snapshots over a short horizon."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    simulate(flow_cls(problem, 3), factors, 1.0, n_save=n_save, t_min=1e-3, progress=False)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return float(peak)


def slope(x, y) -> float:
    """Least-squares slope of log y against log x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y) & (y > 0)
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50,100,200,400,800")
    ap.add_argument("--budget", type=float, default=20.0, help="wall-time budget per simulate run (s)")
    ap.add_argument("--t-end", type=float, default=1e4)
    a = ap.parse_args(argv)
    _common.set_torch_threads()
    sizes = [int(x) for x in a.sizes.split(",")]
    print(_common.header("benchmark 3: scaling with n"), flush=True)
    rows = []
    res: dict[str, dict[str, list]] = {}
    for n in sizes:
        problem = _problem(n)
        factors = init_factors("balanced-gaussian", problem.shape, 3, scale=1e-3, seed=0)
        t_gd = gd_step_time(problem, factors)
        for label, cls in (("end-product", EndProductFlow), ("auto", AutoGradientFlow)):
            probe = cls(problem, 3)
            y0 = probe.initial_state(factors)
            t_vel = _common.median_time(lambda probe=probe, y0=y0: probe(0.0, y0), repeat=3, min_time=0.05)
            t0 = time.perf_counter()
            tr = simulate(cls(problem, 3), factors, a.t_end, progress=False, max_wall_time=a.budget)
            w = time.perf_counter() - t0
            nfev = int(tr.stats["nfev"])
            m50 = peak_memory(cls, problem, factors, 50)
            m100 = peak_memory(cls, problem, factors, 100)
            per_snap = (m100 - m50) / 50 / (8.0 * n * n)
            full = tr.status == "ok"
            r = res.setdefault(label, {"n": [], "vel": [], "per_eval": [], "full_n": [], "full_wall": [],
                                       "mem": []})
            r["n"].append(n)
            r["vel"].append(t_vel)
            r["per_eval"].append(w / max(nfev, 1))
            r["mem"].append(m100)
            if full:
                r["full_n"].append(n)
                r["full_wall"].append(w)
            reached = "t_end" if full else f"t={tr.stats['t_last']:.3g} (budget)"
            rows.append((n, f"{label} ({tr.stats['formulation']})", w, reached, nfev, w / max(nfev, 1) * 1e3,
                         t_vel * 1e3, t_gd * 1e3, m100 / 2**20, per_snap))
            print(f"# {rows[-1]}", flush=True)
    print()
    print(_common.table(rows, ("n", "formulation", "simulate wall s", "reached", "nfev", "wall ms / nfev",
                               "velocity ms", "GD step ms", "peak MiB (T=100)", "words/n² per snapshot")))
    print()
    print("| fitted exponent (log-log slope in n) | value |")
    print("|---|---|")
    gd_times = [row[7] for row in rows if row[1].startswith("end-product")]
    print(f"| one discrete GD step | {slope(sizes, gd_times):.2f} |")
    for label, r in res.items():
        print(f"| one velocity evaluation, {label} | {slope(r['n'], r['vel']):.2f} |")
        print(f"| simulate wall per nfev (incl. metrics), {label} | {slope(r['n'], r['per_eval']):.2f} |")
        if len(r["full_n"]) >= 2:
            print(f"| simulate wall to t_end (n = {','.join(map(str, r['full_n']))}), {label} | "
                  f"{slope(r['full_n'], r['full_wall']):.2f} |")
        print(f"| peak memory (T = 100 snapshots), {label} | {slope(r['n'], r['mem']):.2f} |")


if __name__ == "__main__":
    main()
