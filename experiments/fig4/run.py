"""Zhao22 Fig. 4: relative test error and effective rank against the number of observed entries k, at the
paper's size (configs/fig4.toml), with bands over seeds.

    python experiments/fig4/run.py --out runs/fig4 [--workers 2]      # 100×100, rank 5, 3 seeds
    python experiments/fig4/run.py --out runs/fig4q --quick           # CI variant
    python experiments/fig4/run.py --out runs/fig4 --variant ci2h     # sized for a shared 2-core machine
    python experiments/fig4/run.py --out runs/fig4 --replot            # redo the aggregate and the figure

Methods: depth 1 + Adam + ratio penalty and depth 3 + GD, each at the η chosen per seed and k on 10 % of
the observed entries (:func:`flowsim.validation.reproduce.reproduce_cell`, the stopping rule of the
protocol); the minimum-nuclear-norm completion (ADMM, :func:`flowsim.validation.baselines.min_nuclear_norm`)
and SoftImpute with λ chosen on 10 % of the observed entries (experiments/sample_size.py). The
same seed gives the same W* and Ω for every method.

Writes into OUT: ``cells/*.json`` (trained methods, resumable), ``baselines/*.json``, ``results.csv`` (one
row per method × k × seed), ``aggregate.csv`` (mean, std, min, max over seeds), ``fig4.png`` (line = mean,
band = min–max over seeds) and ``run.json``.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CONFIG = ROOT / "configs" / "fig4.toml"


def sample_size_module():
    """experiments/sample_size.py (its baselines, aggregation and plot are reused)."""
    spec = importlib.util.spec_from_file_location("flowsim_experiments_sample_size",
                                                  ROOT / "experiments" / "sample_size.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def baseline_job(cell: dict, proto: dict) -> dict:
    """One baseline fit (method, k, seed) on the protocol's problem, as a record for the job runner."""
    ss = sample_size_module()
    pb = proto["problem"]
    row = ss.baseline_point(cell["method"], int(pb["size"]), int(pb["size"]), int(pb["rank"]),
                            int(cell["observed"]), int(cell["seed"]))
    return {"cell": cell, "row": row, "wall_time_s": row["wall_time_s"],
            "summary": {"err_mean": row["test_error"], "erank_mean": row["erank"], "lr_chosen": "-",
                        "iterations": "-"}}


def _refit_shown(seed: dict, cell: dict, proto: dict) -> bool:
    """Whether a seed's rank refit is a completion: its record says it was well posed; a record written
    before that was recorded is checked again for the row/column condition on the regenerated mask."""
    if not np.isfinite(float(seed.get("rank_refit_test_error", float("nan")))):
        return False
    if "rank_refit_note" in seed:
        return not seed["rank_refit_note"]
    from flowsim.problems import synthetic_problem
    from flowsim.validation.refit import fewest_entries_per_line

    pb = proto["problem"]
    mask = synthetic_problem(int(pb["size"]), int(pb["size"]), int(pb["rank"]), int(cell["observed"]),
                             int(seed["seed"])).mask
    return fewest_entries_per_line(mask) >= int(seed.get("rank_refit_rank", 0)) > 0


def trained_rows(records: list[dict], proto: dict) -> list[dict]:
    """One row per trained method × k × seed (status ok unless diverged; ``stop``: the rule that ended it).
    A penalized method gets a second row, method ``…+rank-refit``: the same run after the rank-r refit
    without the penalty (:func:`flowsim.validation.refit.rank_refit`, docs/math.md §13.1), where that refit
    is well posed (every row and column of Ω holds ≥ r entries, no blow-up); its erank column holds the
    refit's rank."""
    rows = []
    for rec in records:
        c = rec["cell"]
        method = f"train:{c['depth']}:{c['optimizer']}:{c['penalty']}"
        for s in rec["seeds"]:
            row = {"method": method, "observed": int(c["observed"]), "seed": s["seed"],
                   "status": "diverged" if s["status"] == "diverged" else "ok", "stop": s["status"],
                   "message": s["message"], "test_error": s["test_error"], "test_rmse": s["test_rmse"],
                   "erank": s["erank"], "lr": s["lr"], "iterations": s["iterations"],
                   "refit_test_error": s["refit_test_error"],
                   "rank_refit_test_error": s.get("rank_refit_test_error", float("nan")),
                   "wall_time_s": rec["wall_time_s"]}
            rows.append(row)
            if c["penalty"] != "none" and _refit_shown(s, c, proto):
                rows.append(row | {"method": method + "+rank-refit", "test_error": s["rank_refit_test_error"],
                                   "test_rmse": float("nan"), "erank": float(s.get("rank_refit_rank", 0))})
    return rows


def main(argv: list[str] | None = None) -> int:
    import csv

    from flowsim.cli.common import make_parser, positive_int
    from flowsim.errors import BadInputError
    from flowsim.io import atomic_write_csv, atomic_write_json, command_line, package_versions
    from flowsim.sweep.experiments import run_cells, run_guarded
    from flowsim.validation.reproduce_jobs import cell_job, experiment_dir, load_protocol

    p = make_parser("python experiments/fig4/run.py", "Zhao22 Fig. 4 at the paper's size.")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--quick", action="store_true", help="the quick (CI) variant")
    p.add_argument("--config", default=str(CONFIG), help="protocol file")
    p.add_argument("--variant", default=None, help="a [variants.NAME] of the protocol file (e.g. ci2h)")
    p.add_argument("--workers", type=positive_int, default=2, help="local worker processes")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cells on this Dask scheduler (e.g. tcp://host:8786; OUT on a shared disk)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="torch device (overrides the protocol's; cuda runs the torch engine)")
    p.add_argument("--no-min-nuclear-norm", "--no-cvxpy", dest="no_cvxpy", action="store_true",
                   help="skip the minimum-nuclear-norm baseline")
    p.add_argument("--replot", action="store_true", help="only redo aggregate.csv and fig4.png")
    args = p.parse_args(argv)
    try:
        proto = load_protocol(args.config, quick=args.quick, variant=args.variant)
        if args.device is not None:
            proto["protocol"]["device"] = args.device
        out = experiment_dir(args.out)
        if "fig4" not in proto:
            raise BadInputError(f"{args.config} has no [fig4] table")
    except BadInputError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    ss = sample_size_module()
    pb, f4 = proto["problem"], proto["fig4"]
    seeds = [int(s) for s in proto["protocol"]["seeds"]]
    title = (f"Zhao22 Fig. 4 ({proto['variant']}: {pb['size']}×{pb['size']}, rank {pb['rank']}, "
             f"{len(seeds)} seeds; mean, min–max band)")
    if args.replot:
        with open(out / "results.csv", newline="") as fh:
            agg = ss.aggregate(list(csv.DictReader(fh)))
        atomic_write_csv(out / "aggregate.csv", agg)
        print(ss.plot(agg, out / "fig4.png", title))
        return 0
    ks = [int(k) for k in f4["observed"]]
    cells = [{"optimizer": o, "depth": int(d), "penalty": pen, "observed": k}
             for o, d, pen in f4["trained"] for k in ks]
    methods = [m for m in f4.get("baselines", []) if not (args.no_cvxpy and m == "min-nuclear-norm")]
    t0 = time.perf_counter()
    base_cells = [{"method": m, "observed": k, "seed": s} for m in methods for k in ks for s in seeds]
    where = {"workers": args.workers, "scheduler": args.scheduler}

    def work() -> tuple[list, float, list]:
        trained = run_cells(cells, cell_job, proto, out, **where)
        t = time.perf_counter() - t0
        return trained, t, (run_cells(base_cells, baseline_job, proto, out / "baselines", **where)
                            if base_cells else [])

    done, code = run_guarded(p.prog, out, work)
    if done is None:
        return code
    records, t_trained, base = done
    t_base = time.perf_counter() - t0 - t_trained
    rows = trained_rows(records, proto) + [b["row"] for b in base]
    atomic_write_csv(out / "results.csv", rows)
    agg = ss.aggregate(rows)
    atomic_write_csv(out / "aggregate.csv", agg)
    png = ss.plot(agg, out / "fig4.png", title)
    atomic_write_json(out / "run.json", {
        "command": "experiments/fig4/run.py", "argv": command_line(), "protocol": proto, "baselines": methods,
        "wall_time_trained_s": t_trained, "wall_time_baselines_s": t_base, "versions": package_versions()})
    print(f"trained {len(cells)} cells in {t_trained:.0f} s; "
          f"baselines {len(base_cells)} fits in {t_base:.0f} s")
    print(f"outputs {out / 'results.csv'}, {out / 'aggregate.csv'}, {png}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
