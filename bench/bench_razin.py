"""Razin–Cohen 2×2 (RC20; docs/math.md §10): flowsim's flow against RC20's discrete GD to the same loss.

    python bench/bench_razin.py [--depth 3] [--stop-loss 1e-4] [--engines numba,python]
                                [--python-max-iter 200000]

Both start from the same balanced factors (scale 1e-5, det > 0; RC20's setting). Timed:

* flow: :func:`flowsim.theory.razin.run_razin` (the chart state with LSODA and its explicit Jacobian) until
  ℓ < ``--stop-loss``;
* GD: :func:`flowsim.theory.razin_gd.run_gd` with η = 3e-3 (RC20) until ℓ < ``--stop-loss``, per engine
  (``numba``: compiled scalar loop, compile time excluded; ``python``: the same loop interpreted, capped at
  ``--python-max-iter`` iterations and extrapolated linearly to the iteration count numba needed).

Also shown: |w₁₁| and the time kη (or t) at which each reached the loss, to check they did the same work.
Ratio = GD wall / flow wall, measured in the same run.
"""

from __future__ import annotations

import argparse

import _common  # before numpy: pins the BLAS threads

from flowsim.theory.razin import RazinData, initial_factors, integrate_razin, make_razin_flow
from flowsim.theory.razin_gd import run_gd


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--stop-loss", type=float, default=1e-4)
    ap.add_argument("--engines", default="numba,python")
    ap.add_argument("--python-max-iter", type=int, default=200_000)
    a = ap.parse_args(argv)
    data = RazinData()
    factors = initial_factors("balanced", a.depth, 1, 1e-5, 0)
    print(_common.header("Razin–Cohen 2×2: flow vs RC20 GD (η = 3e-3)"), flush=True)
    flow = make_razin_flow(factors, data, a.depth)
    w_flow, run = _common.wall(lambda: integrate_razin(flow, factors, 1e9, stop_loss=a.stop_loss))
    rows = [("flowsim flow (chart, LSODA)", run.status, f"t = {run.t[-1]:.4g}", float(abs(run.W[-1][0, 0])),
             int(run.stats.get("nfev", 0)), w_flow)]
    walls = {}
    k_numba = None
    for engine in filter(None, a.engines.split(",")):
        try:
            if engine == "python" and k_numba is not None:
                res = run_gd(factors, data, 3e-3, a.stop_loss, max_iter=min(a.python_max_iter, k_numba),
                             engine="python")
                per_iter = res.wall_time_s / max(res.iterations, 1)
                wall = per_iter * k_numba
                how = f"{res.iterations} its measured, ×{k_numba / max(res.iterations, 1):.1f} extrapolated"
                k = k_numba
            else:
                res = run_gd(factors, data, 3e-3, a.stop_loss, engine=engine)
                wall, k, how = res.wall_time_s, res.iterations, res.status
                if engine == "numba":
                    k_numba = k
        except (ImportError, ValueError) as exc:
            print(f"# engine {engine} unavailable: {exc}")
            continue
        walls[engine] = wall
        status = res.status if wall == res.wall_time_s else "capped, extrapolated"
        rows.append((f"RC20 GD, engine {res.engine} ({how})", status, f"kη = {k * 3e-3:.4g}",
                     float(abs(res.W_final[0, 0])), k, wall))
        print(f"# {rows[-1]}", flush=True)
    print()
    print(_common.table(rows, ("run", "status", "time reached", "|w11| at the end", "nfev / iterations",
                               "wall s")))
    print()
    print("| ratio | value |")
    print("|---|---|")
    for engine, w in walls.items():
        print(f"| GD ({engine}) wall / flow wall to ℓ < {a.stop_loss:g} | {w / w_flow:.2f} |")


if __name__ == "__main__":
    main()
