"""Experiment 2: the sample-size study (Zhao22 Fig. 4 protocol, docs/math.md §13).

Test error and effective rank against the number of observed entries k for
  * depth 1 + Adam + ratio penalty and depth 3 + GD — discrete runs, through ``flowsim sweep``
    (configs/exp2_sample_size.toml; resumable, batched over seeds and k),
  * the minimum-nuclear-norm completion (ADMM, flowsim.validation.baselines.min_nuclear_norm),
  * SoftImpute (Mazumder, Hastie, Tibshirani 2010) with λ chosen on 10% held-out observed entries,
on the same problems (same seed → same W* and Ω), with mean ± standard deviation over the seeds.

Writes into OUT: the sweep folder (``sweep/``), ``results.csv`` (one row per method × k × seed),
``aggregate.csv`` (mean and std per method × k) and ``sample_size.png`` (two panels with error bands).

    python experiments/sample_size.py --out runs/exp2 [--quick] [--workers K]
"""

from __future__ import annotations

import csv
import io
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "exp2_sample_size.toml"
METHOD_LABELS = {
    "train:1:adam:ratio": "depth 1 + Adam + ratio",
    "train:1:adam:ratio+rank-refit": "depth 1 + Adam + ratio, rank refit",
    "train:3:gd:none": "depth 3 + GD",
    "min-nuclear-norm": "min nuclear norm",
    "softimpute": "SoftImpute (λ by hold-out)",
}


def _problem_args(params: dict) -> tuple[int, int, int]:
    size = str(params["size"]).lower().split("x")
    m = int(size[0])
    n = int(size[-1])
    return m, n, int(params["rank"])


def baseline_point(method: str, m: int, n: int, rank: int, k: int, seed: int) -> dict:
    """One baseline fit on the problem of (m, n, rank, k, seed): test error and erank of the completion."""
    from flowsim import synthetic_problem
    from flowsim.metrics import effective_rank
    from flowsim.validation.baselines import min_nuclear_norm, soft_impute_cv

    problem = synthetic_problem(m, n, rank, k, seed)
    start = time.perf_counter()
    try:
        if method == "min-nuclear-norm":
            res = min_nuclear_norm(problem.W_star, problem.mask)
        else:
            res = soft_impute_cv(problem.W_star, problem.mask, seed=seed, n_lams=12, tol=1e-5, max_iter=300)
        rel, rmse = problem.test_errors(res.Z)
        s = np.linalg.svd(res.Z, compute_uv=False)
        status, message = "ok", str(res.stats.get("status", ""))
    except Exception as exc:  # noqa: BLE001 - recorded in the CSV
        rel = rmse = float("nan")
        s = np.zeros(1)
        status, message = "failed", f"{type(exc).__name__}: {exc}"
    return {"method": method, "observed": k, "seed": seed, "status": status, "message": message,
            "test_error": rel, "test_rmse": rmse, "erank": effective_rank(s),
            "wall_time_s": time.perf_counter() - start}


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if a.size else float("nan")


def _ext(a: np.ndarray, fn) -> float:
    a = a[np.isfinite(a)]
    return float(fn(a)) if a.size else float("nan")


def _std(a: np.ndarray) -> float:
    return float(a.std(ddof=1)) if a.size > 1 else float("nan")


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean, standard deviation (ddof 1), min and max over seeds of test error and erank per method and k
    (ok rows only)."""
    out = []
    keys = sorted({(r["method"], int(r["observed"])) for r in rows})
    for method, k in keys:
        sel = [r for r in rows if r["method"] == method and int(r["observed"]) == k and r["status"] == "ok"]
        te = np.array([float(r["test_error"]) for r in sel])
        er = np.array([float(r["erank"]) for r in sel])
        out.append({"method": method, "observed": k, "n_seeds": len(sel),
                    "test_error_mean": _mean(te), "test_error_std": _std(te),
                    "test_error_min": _ext(te, np.min), "test_error_max": _ext(te, np.max),
                    "erank_mean": _mean(er), "erank_std": _std(er),
                    "erank_min": _ext(er, np.min), "erank_max": _ext(er, np.max)})
    return out


def plot(agg: list[dict], path: Path, title: str) -> Path:
    """Two panels (test error, erank) against k: the mean over seeds, and a band from the smallest to the
    largest value over the seeds (a ± std band would cross zero on the log axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in dict.fromkeys(a["method"] for a in agg):
        sel = sorted((a for a in agg if a["method"] == method), key=lambda a: a["observed"])
        k = np.array([a["observed"] for a in sel])
        for ax, key in zip(axes, ("test_error", "erank")):
            mu = np.array([a[f"{key}_mean"] for a in sel])
            lo = np.array([a[f"{key}_min"] for a in sel])
            hi = np.array([a[f"{key}_max"] for a in sel])
            ax.plot(k, mu, marker="o", ms=3, label=METHOD_LABELS.get(method, method))
            ax.fill_between(k, lo, hi, alpha=0.2)
    axes[0].set_ylabel("relative test error")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("effective rank")
    for ax in axes:
        ax.set_xlabel("observed entries k")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    from flowsim.io import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())
    return path


def main(argv: list[str] | None = None) -> int:
    from flowsim.cli.common import make_parser, positive_int
    from flowsim.errors import BadInputError
    from flowsim.io import atomic_write_csv
    from flowsim.sweep import load_config, run_sweep
    from flowsim.sweep.runner import point_dir

    p = make_parser("python experiments/sample_size.py", "Experiment 2: sample-size study (Zhao22 Fig. 4).")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--quick", action="store_true", help="the quick variant of the configuration")
    p.add_argument("--workers", type=positive_int, default=2, help="local worker processes")
    p.add_argument("--config", default=str(CONFIG), help="sweep configuration")
    p.add_argument("--no-min-nuclear-norm", "--no-cvxpy", dest="no_cvxpy", action="store_true",
                   help="skip the minimum-nuclear-norm baseline")
    p.add_argument("--replot", action="store_true", help="only redo aggregate.csv and the plot (results.csv)")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, quick=args.quick)
    except BadInputError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    label = "quick" if args.quick else "full"
    m, n, rank = _problem_args(cfg.points()[0].params)
    seeds = sorted({int(pt.params["seed"]) for pt in cfg.points()})
    title = f"Sample-size study ({label}: {m}×{n}, rank {rank}, {len(seeds)} seeds; mean, min–max band)"
    if args.replot:
        with open(out / "results.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        agg = aggregate(rows)
        atomic_write_csv(out / "aggregate.csv", agg)
        print(plot(agg, out / "sample_size.png", title))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    outcome = run_sweep(cfg, out / "sweep", workers=args.workers, quiet=False)
    t_sweep = time.perf_counter() - t0
    from flowsim.io import read_json

    rows = []
    for pt in cfg.points():
        info = read_json(point_dir(out / "sweep", pt.id) / "run.json")
        pr = pt.params
        final = info.get("final") or {}
        rows.append({"method": f"train:{pr['depth']}:{pr['optimizer']}:{pr['penalty']}",
                     "observed": int(pr["observed"]), "seed": int(pr["seed"]), "status": info["status"],
                     "message": info.get("message", ""),
                     "test_error": final.get("test_error", float("nan")),
                     "test_rmse": final.get("test_rmse", float("nan")),
                     "erank": final.get("erank", float("nan")),
                     "wall_time_s": info.get("wall_time_s")})
    ks = sorted({int(pt.params["observed"]) for pt in cfg.points()})
    methods = ["softimpute"] if args.no_cvxpy else ["min-nuclear-norm", "softimpute"]
    t1 = time.perf_counter()
    jobs = [(meth, m, n, rank, k, s) for meth in methods for k in ks for s in seeds]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows += list(pool.map(baseline_point, *zip(*jobs)))
    t_base = time.perf_counter() - t1
    atomic_write_csv(out / "results.csv", rows)
    agg = aggregate(rows)
    atomic_write_csv(out / "aggregate.csv", agg)
    png = plot(agg, out / "sample_size.png", title)
    print(f"sweep        {outcome.n_points} points, {outcome.skipped} already finished, {t_sweep:.0f} s")
    print(f"baselines    {len(jobs)} fits ({', '.join(methods)}), {t_base:.0f} s")
    print(f"outputs      {out / 'results.csv'}, {out / 'aggregate.csv'}, {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
