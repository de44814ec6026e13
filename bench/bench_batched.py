"""Throughput of B batched GD runs against the same B runs as sequential plain torch loops.

Setting: 100×100 completion problem, rank 5, 2000 observed entries, depth 3, Gaussian init (scale 1e-3)
with B different init seeds, GD with η = 0.01, float64. Three timings of the same B·K steps:

* baseline — B sequential loops in plain torch as the papers' public code does them: autograd backward,
  ``torch.optim.SGD``, and the metrics (SVD, effective rank, test error) at every step;
* batched-every-step — :func:`validation.train_batched`, all B runs as stacked tensors, closed-form
  gradients, metrics (one batched SVD) at every step;
* batched — the same with metrics on flowsim's log-spaced grid (``n_record`` iterations).

Ratios are baseline time / variant time, measured in the same process. Run:

    python bench/bench_batched.py [--runs 32] [--iters 20] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from flowsim.initializations import init_factors
from flowsim.problems import synthetic_problem
from flowsim.validation import train_batched


def baseline(problem, inits, lr: float, iters: int, device: torch.device) -> float:
    """B sequential plain-torch loops with the metrics at every step; returns the wall time."""
    W_star = torch.as_tensor(problem.W_star, device=device)
    mask = torch.as_tensor(problem.mask, device=device)
    test = ~mask
    den = torch.linalg.norm(W_star[test])
    start = time.perf_counter()
    for factors in inits:
        params = [torch.tensor(F, device=device, requires_grad=True) for F in factors]
        opt = torch.optim.SGD(params, lr=lr)
        for _ in range(iters):
            opt.zero_grad()
            W = params[0]
            for F in params[1:]:
                W = F @ W
            loss = ((W - W_star)[mask] ** 2).mean()
            loss.backward()
            opt.step()
            with torch.no_grad():
                s = torch.linalg.svdvals(W)
                p = s / s.sum()
                erank = torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum())
                test_err = torch.linalg.norm((W - W_star)[test]) / den
                _ = (float(loss), float(erank), float(test_err))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def batched(problem, inits, lr: float, iters: int, device: torch.device, n_record: int | None) -> float:
    """All runs at once; metrics every step (n_record None) or on the log grid; returns the wall time."""
    start = time.perf_counter()
    rec = np.arange(iters + 1) if n_record is None else None
    trajs = train_batched(
        problem,
        inits,
        optimizer="gd",
        lr=lr,
        iters=iters,
        device=device.type,
        record_iters=rec,
        n_record=n_record or 200,
        progress=False,
        engine="torch",  # this benchmark measures torch batching; bench_discrete.py measures numba
    )
    assert all(t.status == "ok" for t in trajs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=32)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--n-record", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    problem = synthetic_problem(100, 100, 5, 2000, seed=0)
    inits = [init_factors("gaussian", problem.shape, 3, 1e-3, seed=s) for s in range(args.runs)]
    lr = 0.01
    batched(problem, inits[:2], lr, 3, device, None)  # warm-up
    t_base = baseline(problem, inits, lr, args.iters, device)
    t_every = batched(problem, inits, lr, args.iters, device, None)
    t_log = batched(problem, inits, lr, args.iters, device, args.n_record)
    steps = args.runs * args.iters
    print(
        f"B={args.runs} runs × {args.iters} GD steps, 100×100 rank 5, depth 3, float64, device {device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"baseline (sequential, autograd, metrics every step): {t_base:8.2f} s  {steps / t_base:9.1f} steps/s"
    )
    print(
        f"batched, metrics every step:                       {t_every:8.2f} s  {steps / t_every:9.1f} steps/s"
        f"  ratio {t_base / t_every:.2f}x"
    )
    print(
        f"batched, metrics on {args.n_record} log-spaced iterations:       {t_log:8.2f} s  "
        f"{steps / t_log:9.1f} steps/s  ratio {t_base / t_log:.2f}x"
    )
    print(
        f"command: python bench/bench_batched.py --runs {args.runs} --iters {args.iters} "
        f"--n-record {args.n_record} --device {args.device}"
    )


if __name__ == "__main__":
    main()
