"""Zhao22 Table 2 (ratings data, depth-1 network): GD, GD + penalty, Adam, Adam + penalty, test RMSE on the
held-out ratings, side by side with the published numbers.

    python experiments/table2/run.py --data ml-100k/u.data --test-fraction 0.1 --out runs/t2-90 --device auto
    python experiments/table2/run.py --data ml-100k/u.data --test-fraction 0.2 --out runs/t2-80 --device auto
    python experiments/table2/run.py --data ml-100k/u.data --block 300x400 --out runs/table2-cpu   # CPU-sized
    python experiments/table2/run.py --quick --out runs/table2-quick    # a synthetic file in u.data format

The file is MovieLens ``u.data`` (user, item, rating, timestamp, tab-separated) or CSV/TSV triplets; it is not
shipped. Per seed, the ratings are split into training and test (``--test-fraction``, seeded); η is chosen
from the grid on 10 % of the training ratings, the chosen run is retrained on all training ratings, and the
test RMSE over the held-out ratings is reported. The penalty is Zhao22's ratio ‖W‖_*/‖W‖_F.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: Zhao22 Table 2, MovieLens-100K, depth 1: test RMSE on the 90:10 and 80:20 splits
PUBLISHED = {("gd", "none"): (2.814, 2.797), ("gd", "ratio"): (2.808, 2.821),
             ("adam", "none"): (1.844, 1.822), ("adam", "ratio"): (0.915, 0.921)}
ROWS = [("gd", "none"), ("gd", "ratio"), ("adam", "none"), ("adam", "ratio")]
LABELS = {("gd", "none"): "GD", ("gd", "ratio"): "GD + penalty", ("adam", "none"): "Adam",
          ("adam", "ratio"): "Adam + penalty"}


def protocol(args) -> dict:
    """The protocol dict of :mod:`flowsim.validation.reproduce_jobs` for a ratings file."""
    block = list(args.block) if args.block else None
    return {
        "variant": "quick" if args.quick else "full",
        "problem": {"kind": "ratings", "path": str(args.data), "test_fraction": args.test_fraction,
                    "block": block, "init": "gaussian", "init_scale": args.init_scale},
        "protocol": {"seeds": list(range(args.seeds)), "val_fraction": 0.1, "lam": {"1": args.lam},
                     "device": args.device, "dtype": args.dtype},
        "stopping": {"max_iters": args.max_iters, "check_every": args.check_every,
                     "window": 10 * args.check_every, "rtol": 1e-5, "loss_floor": 1e-20},
        "selection": {"max_iters": max(args.check_every, args.max_iters // 4),
                      "check_every": args.check_every,
                      "window": 5 * args.check_every, "rtol": 1e-4, "loss_floor": 1e-20},
        "lr_grid": {"gd": list(args.gd_lrs), "adam": list(args.adam_lrs)},
    }


def render(rows: list[dict], proto: dict, split_col: int) -> str:
    """The side-by-side Markdown table."""
    pb = proto["problem"]
    head = (f"Zhao22 Table 2 ({pb['path']}, test fraction {pb['test_fraction']}, "
            f"block {pb['block'] or 'all'}, "
            f"seeds {proto['protocol']['seeds']}, λ = {proto['protocol']['lam']['1']:g}): test RMSE over the "
            "held-out ratings (mean [min–max] over seeds).\n\n")
    lines = ["| Model (depth 1) | paper RMSE | ours RMSE [min–max] | η (per seed) | iterations |",
             "|---|---|---|---|---|"]
    for r in rows:
        paper = PUBLISHED[(r["optimizer"], r["penalty"])][split_col] if split_col >= 0 else float("nan")
        lines.append(f"| {LABELS[(r['optimizer'], r['penalty'])]} | {paper:.3f} | {r['rmse_mean']:.3f} "
                     f"[{r['rmse_min']:.3f}–{r['rmse_max']:.3f}] | {r['lr_chosen']} | {r['iterations']} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from flowsim.cli.common import (
        make_parser,
        nonneg_float,
        positive_float,
        positive_int,
        size_arg,
    )
    from flowsim.errors import BadInputError
    from flowsim.io import (
        atomic_write_bytes,
        atomic_write_csv,
        atomic_write_json,
        command_line,
        package_versions,
    )
    from flowsim.ratings import load_ratings, top_block, write_synthetic_ratings
    from flowsim.sweep.experiments import run_cells, run_guarded
    from flowsim.validation.reproduce_jobs import cell_job, experiment_dir

    p = make_parser("python experiments/table2/run.py", "Zhao22 Table 2 on a ratings file.")
    p.add_argument("--data", default=None, help="ratings file (MovieLens u.data or CSV/TSV triplets)")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--test-fraction", type=positive_float, default=0.1, help="held-out fraction (0.1, 0.2)")
    p.add_argument("--block", type=size_arg, default=None, metavar="UxI",
                   help="keep the U most active users and I most rated items (CPU-sized)")
    p.add_argument("--seeds", type=positive_int, default=1, help="number of seeds (splits and inits)")
    p.add_argument("--lam", type=nonneg_float, default=1e-2, help="λ of the ratio penalty")
    p.add_argument("--max-iters", type=positive_int, default=20_000, help="iteration budget of a run")
    p.add_argument("--check-every", type=positive_int, default=200, help="iterations between checks")
    p.add_argument("--gd-lrs", type=positive_float, nargs="+", default=[10.0, 100.0, 1000.0],
                   help="GD η grid")
    p.add_argument("--adam-lrs", type=positive_float, nargs="+", default=[1e-3, 1e-2], help="Adam η grid")
    p.add_argument("--init-scale", type=positive_float, default=1e-3, help="initialization scale")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"), help="torch dtype")
    p.add_argument("--workers", type=positive_int, default=1, help="rows run in parallel (CPU)")
    p.add_argument("--quick", action="store_true",
                   help="a synthetic 60×80 file in u.data format, 3000 iterations")
    args = p.parse_args(argv)
    try:
        out = experiment_dir(args.out)
        if args.quick:
            args.data = write_synthetic_ratings(out / "synthetic_u.data")
            args.max_iters, args.check_every = 3000, 100
        if args.data is None:
            raise BadInputError("--data PATH is required (or --quick)")
        data = load_ratings(args.data)
        if args.block:
            data = top_block(data, *args.block)
    except BadInputError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    proto = protocol(args)
    cells = [{"optimizer": o, "depth": 1, "penalty": pen} for o, pen in ROWS]
    t0 = time.perf_counter()
    records, code = run_guarded(p.prog, out, lambda: run_cells(cells, cell_job, proto, out,
                                                               workers=args.workers))
    if records is None:
        return code
    wall = time.perf_counter() - t0
    rows = [{**rec["cell"], "lam": rec["lam"], **rec["summary"], "wall_time_s": rec["wall_time_s"]}
            for rec in records]
    split_col = {0.1: 0, 0.2: 1}.get(round(args.test_fraction, 6), -1)
    for r in rows:
        r["paper_rmse"] = PUBLISHED[(r["optimizer"], r["penalty"])][split_col] if split_col >= 0 else None
    atomic_write_csv(out / "results.csv", rows)
    atomic_write_bytes(out / "table2.md", render(rows, proto, split_col).encode())
    atomic_write_json(out / "run.json", {
        "command": "experiments/table2/run.py", "argv": command_line(), "protocol": proto,
        "data": {"users": data.shape[0], "items": data.shape[1], "ratings": len(data)},
        "test_metric": "test_rmse over the held-out ratings", "wall_time_s": wall,
        "versions": package_versions()})
    print((out / "table2.md").read_text())
    print(f"{len(cells)} rows, {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
