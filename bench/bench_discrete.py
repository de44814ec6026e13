"""Discrete training engines: torch (batched tensors) against numba (compiled loop), per step and end to end.

    python bench/bench_discrete.py [--sizes 10,100] [--depth 3] [--rounds 5] [--optimizers gd,adam,...]
                                   [--validate] [--torch-max-iters 50000] [--no-compile]

1. Per-step cost of :func:`flowsim.validation.train.train` with ``engine="torch"`` and ``engine="numba"`` for
each
   optimizer on an m×m completion problem (rank 2, 60 % observed for m = 10, the paper's 100×100 with
   3000 observed entries), depth ``--depth``, in interleaved rounds (torch, numba, torch, …); each call
   runs enough iterations to last ~0.2 s, recording only the end points. Ratios of the minima and of the
   medians over rounds, and the agreement max|W_numba − W_torch|/max|W_torch| of the final end products
   after the same iterations (the torch call's count, at least 500).
2. First-call cost of the numba engine: a fresh process with an empty ``NUMBA_CACHE_DIR`` (compilation)
   and a second one reusing that cache (loading), each minus the same process's import time.
3. ``--validate``: the discrete part of ``flowsim validate --size 10 --rank 2 --observed 60 --depth 3
   --init-scale 1 --seed 0 --optimizer adam --against adam-ode --lrs 1e-4,3e-5,1e-5,3e-6 --t-end 0.5``
   (the same problem, factors and recorded iterations) with both engines; torch runs longer than
   ``--torch-max-iters`` iterations are timed up to that count and extrapolated linearly (marked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import _common  # before numpy: pins the BLAS threads
import numpy as np

from flowsim.initializations import init_factors
from flowsim.problems import synthetic_problem
from flowsim.validation.optimizers import OPTIMIZER_NAMES
from flowsim.validation.train import record_iterations, train

LRS = {"gd": 0.01, "adam": 1e-3, "adagrad": 0.01, "adamax": 1e-3, "rmsprop": 1e-4}
OBSERVED = {10: 60, 100: 3000}


def _problem(m: int, depth: int):
    problem = synthetic_problem(m, m, 2, OBSERVED.get(m, int(0.6 * m * m)), seed=0)
    return problem, init_factors("gaussian", problem.shape, depth, 1.0, seed=1)


def _calibrate(fn, target: float = 0.2) -> int:
    """Iterations that make one call of ``fn(iters)`` last about ``target`` seconds."""
    k = 20
    while True:
        t0 = time.perf_counter()
        fn(k)
        dt = time.perf_counter() - t0
        if dt > 0.05 or k > 10**7:
            return max(20, int(k * target / dt))
        k *= 4


def per_step_table(sizes: list[int], depth: int, optimizers: list[str], rounds: int) -> str:
    rows = []
    for m in sizes:
        problem, f = _problem(m, depth)
        for name in optimizers:

            def run(engine, iters, name=name, problem=problem, f=f):
                return train(problem, f, optimizer=name, lr=LRS[name], iters=iters, n_record=1, engine=engine)

            run("numba", 2)  # compile / load the kernels outside the timing
            k = {e: _calibrate(lambda it, e=e: run(e, it)) for e in ("torch", "numba")}
            per_step: dict[str, list[float]] = {"torch": [], "numba": []}
            for _ in range(rounds):
                for e in ("torch", "numba"):
                    t0 = time.perf_counter()
                    run(e, k[e])
                    per_step[e].append((time.perf_counter() - t0) / k[e])
            k_cmp = max(k["torch"], 500)
            a, b = run("torch", k_cmp), run("numba", k_cmp)
            agree = float(np.max(np.abs(b.W_final - a.W_final)) / np.max(np.abs(a.W_final)))
            t_min = {e: min(v) for e, v in per_step.items()}
            t_med = {e: statistics.median(v) for e, v in per_step.items()}
            rows.append((
                f"{m}×{m}", name, t_min["torch"] * 1e6, t_min["numba"] * 1e6,
                t_min["torch"] / t_min["numba"], t_med["torch"] / t_med["numba"], k_cmp, agree,
            ))  # fmt: skip
            print(f"  {m}×{m} {name}: done", file=sys.stderr, flush=True)
    head = ("problem", "optimizer", "torch µs/step (min)", "numba µs/step (min)", "ratio of minima",
            "ratio of medians", "iterations compared", "max|ΔW|/max|W|")  # fmt: skip
    return _common.table(rows, head)


_FIRST_CALL = """
import time
t0 = time.perf_counter()
from flowsim.initializations import init_factors
from flowsim.problems import synthetic_problem
from flowsim.validation.train import train
t1 = time.perf_counter()
p = synthetic_problem(10, 10, 2, 60, seed=0)
train(p, init_factors("gaussian", p.shape, 3, 1.0, seed=1), optimizer="adam", lr=1e-3, iters=2,
      engine="numba")
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def first_call_table() -> str:
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold (compiles, empty cache)", "warm (loads the on-disk cache)"):
            out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True,
                                 check=True)  # fmt: skip
            imp, first = (float(x) for x in out.stdout.split())
            rows.append((label, imp, first))
    return _common.table(rows, ("numba engine, new process", "import s", "first train() call s"))


def validate_table(torch_max_iters: int) -> str:
    from flowsim.cli.common import factors_from_args, problem_from_args
    from flowsim.cli.validate import build_parser

    args = build_parser("flowsim validate").parse_args(
        "--size 10 --rank 2 --observed 60 --depth 3 --init-scale 1 --seed 0 --optimizer adam "
        "--against adam-ode --lrs 1e-4,3e-5,1e-5,3e-6 --t-end 0.5 --out /dev/null".split()
    )
    problem = problem_from_args(args)
    f = factors_from_args(args, problem.shape)
    train(problem, f, optimizer="adam", lr=1e-3, iters=2, engine="numba")  # load the kernels (see 2.)
    rows, totals = [], {"torch": 0.0, "numba": 0.0}
    for lr in sorted(args.lrs, reverse=True):
        rec = record_iterations(int(np.ceil(args.t_end / lr - 1e-9)), args.n_save)
        kw = dict(optimizer="adam", lr=lr, iters=int(rec[-1]), record_iters=rec, save_matrices=True)
        w_n, tr_n = _common.wall(lambda kw=kw: train(problem, f, engine="numba", **kw))
        if rec[-1] <= torch_max_iters:
            w_t, tr_t = _common.wall(lambda kw=kw: train(problem, f, engine="torch", **kw))
            agree = float(np.max(np.abs(tr_n.W - tr_t.W)) / np.max(np.abs(tr_t.W)))
            note = "measured"
        else:
            cut = rec[rec <= torch_max_iters]
            kw_c = kw | dict(iters=int(cut[-1]), record_iters=cut)
            w_c, tr_t = _common.wall(lambda kw_c=kw_c: train(problem, f, engine="torch", **kw_c))
            w_t = w_c * rec[-1] / cut[-1]
            agree = float(np.max(np.abs(tr_n.W[: len(cut)] - tr_t.W)) / np.max(np.abs(tr_t.W)))
            note = f"extrapolated from {int(cut[-1])} iterations"
        totals["torch"] += w_t
        totals["numba"] += w_n
        rows.append((f"{lr:g}", int(rec[-1]), w_t, w_n, w_t / w_n, agree, note))
        print(f"  validate lr={lr:g}: done", file=sys.stderr, flush=True)
    rows.append(("all", "", totals["torch"], totals["numba"], totals["torch"] / totals["numba"], "", ""))
    head = ("η", "iterations", "torch s", "numba s", "ratio", "max|ΔW|/max|W| (recorded)", "torch time")
    return _common.table(rows, head)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,100")
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--optimizers", default=",".join(OPTIMIZER_NAMES))
    ap.add_argument("--validate", action="store_true")
    ap.add_argument("--torch-max-iters", type=int, default=50_000)
    ap.add_argument("--no-compile", action="store_true", help="skip the first-call (compile) measurement")
    a = ap.parse_args(argv)
    _common.set_torch_threads()
    print(_common.header("Discrete training: torch engine vs numba engine (flowsim.validation.train)"),
          flush=True)
    if not a.no_compile:
        print("\n" + first_call_table(), flush=True)
    sizes = [int(x) for x in a.sizes.split(",") if x]
    if sizes:
        print("\n" + per_step_table(sizes, a.depth, a.optimizers.split(","), a.rounds), flush=True)
    if a.validate:
        print("\n" + validate_table(a.torch_max_iters), flush=True)
    print(f"\n# {_common.load_line()}")


if __name__ == "__main__":
    main()
