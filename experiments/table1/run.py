"""Zhao22 Table 1 side by side with the published numbers: optimizer × depth × penalty, several seeds,
η chosen on a validation split of the observed entries, a stated stopping rule (configs/table1.toml).

    python experiments/table1/run.py --out runs/table1 [--workers 2]       # full grid (see README for cost)
    python experiments/table1/run.py --out runs/table1 --variant ci2h      # the 2-hour variant (2 cores)
    python experiments/table1/run.py --out runs/table1q --quick            # CI variant
    python experiments/table1/run.py --estimate [--quick]                  # per-step costs, wall time
    python experiments/table1/run.py --out DIR --optimizers adam --depths 1 --penalties ratio  # a subset

Writes into OUT: ``cells/*.json`` (one record per cell, resumable), ``results.csv`` (per cell: the paper's
Err and Rk, our mean/min/max test error and effective rank over seeds, chosen η, iterations, statuses,
subspace-refit error, verdict), ``table1.md`` (the rendered table) and ``run.json`` (protocol, versions).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CONFIG = ROOT / "configs" / "table1.toml"
PUBLISHED = HERE / "published.csv"
NAMES = {"adam": "Adam", "adagrad": "Adagrad", "adamax": "Adamax", "rmsprop": "RMSProp", "gd": "GD"}
PENALTY_NAMES = {"ratio": "ratio", "schatten:1/2:2/3": "Sch ½:⅔", "schatten:1/3:2/3": "Sch ⅓:⅔",
                 "schatten:1/3:1/2": "Sch ⅓:½", "nuclear": "nuclear", "none": "none"}


def load_published(path: Path = PUBLISHED) -> dict[tuple[str, int, str], tuple[float, float]]:
    """Zhao22 Table 1: (optimizer, depth, penalty) → (Err, Rk)."""
    with open(path, newline="") as fh:
        return {(r["optimizer"], int(r["depth"]), r["penalty"]): (float(r["err"]), float(r["rank"]))
                for r in csv.DictReader(fh)}


def cells_of(proto: dict, optimizers=None, depths=None, penalties=None) -> list[dict]:
    """The grid's cells, optionally restricted."""
    g = proto["grid"]
    return [{"optimizer": o, "depth": int(d), "penalty": p}
            for o in g["optimizers"] if not optimizers or o in optimizers
            for d in g["depths"] if not depths or int(d) in depths
            for p in g["penalties"] if not penalties or p in penalties]


def _e(x: float) -> str:
    if not math.isfinite(x):
        return "∞" if x > 0 else "–"
    return f"{x:.2g}" if x < 0.1 or x >= 100 else f"{x:.2f}"


def render_markdown(rows: list[dict], proto: dict, wall_s: float | None, n_grid: int | None = None) -> str:
    """The side-by-side table (one line per cell) and a verdict count."""
    pb, st = proto["problem"], proto["stopping"]
    where = "per seed" if proto["protocol"].get("select_on", "each") == "each" else "on the first seed"
    head = (f"Zhao22 Table 1 ({proto['variant']}: {pb['size']}×{pb['size']}, rank {pb['rank']}, "
            f"{pb['observed']} observed, seeds {proto['protocol']['seeds']}, ≤ {st['max_iters']} "
            "iterations). "
            "Err = relative test error (mean over seeds, [min–max]); Rk = Zhao22's rank, erank = our "
            f"effective rank (mean); η chosen {where} on 10 % of the observed entries; subspace refit = "
            "test error after the least-squares refit of the core on the learned singular subspaces; rank "
            "refit = after the rank-r least-squares refit without the penalty (docs/math.md §13.1; – where "
            "the cell was run before it existed).\n\n")
    if proto["variant"] == "quick":
        head += ("**Quick variant: a smaller problem than the paper's; the verdicts only exercise the "
                 "pipeline.**\n\n")
    lines = ["| Optimizer | N | Penalty | paper Err / Rk | ours Err [min–max] | erank | η (per seed) | "
             "iterations | subspace refit Err | rank refit Err | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {NAMES.get(r['optimizer'], r['optimizer'])} | {r['depth']} | "
            f"{PENALTY_NAMES.get(r['penalty'], r['penalty'])} | {_e(r['paper_err'])} / {r['paper_rank']:g} | "
            f"{_e(r['err_mean'])} [{_e(r['err_min'])}–{_e(r['err_max'])}] | {r['erank_mean']:.3g} | "
            f"{r['lr_chosen']} | {r['iterations']} | {_e(r['refit_err_mean'])} | "
            f"{_e(float(r.get('rank_refit_err_mean', math.nan)))} | {r['verdict']} |")
    verdicts = ("reproduces", "qualitatively", "does not")
    counts = {v: sum(1 for r in rows if r["verdict"] == v) for v in verdicts}
    tail = "\n\nVerdicts: " + ", ".join(f"{k}: {v}" for k, v in counts.items())
    if n_grid is not None and len(rows) < n_grid:
        tail += f" ({len(rows)} of the grid's {n_grid} cells run)"
    if wall_s is not None:
        tail += f"; wall time of the cells {wall_s:.0f} s (sum over cells, each in one process)"
    return head + "\n".join(lines) + tail + "\n"


def estimate(proto: dict, cells: list[dict], workers: int) -> str:
    """Measured per-iteration costs of the batches the protocol runs, and the wall time they imply when every
    run goes to its budget (an upper bound: the stopping rule ends runs earlier)."""
    from flowsim.validation.reproduce_jobs import measure_step_cost, rule_from

    m = int(proto["problem"]["size"])
    S = len(proto["protocol"]["seeds"])
    sel, fin = rule_from(proto.get("selection", proto["stopping"])), rule_from(proto["stopping"])
    cache: dict[tuple, float] = {}
    total = 0.0
    lines = []
    each = proto["protocol"].get("select_on", "each") == "each"
    for c in cells:
        G = len(proto["lr_grid"][c["optimizer"]])
        kind = "none" if c["penalty"] == "none" else "ratio"
        for B, iters in ((G * S if each else G, sel.max_iters), (S, fin.max_iters)):
            key = (c["depth"], kind, B, c["optimizer"])
            if key not in cache:
                cache[key] = measure_step_cost(m, c["depth"], c["optimizer"], kind, B)
                lines.append(f"  depth {c['depth']} {c['optimizer']:8s} penalty {kind:5s} batch {B:2d}: "
                             f"{cache[key] * 1e3:7.2f} CPU ms/iteration")
            total += cache[key] * iters
    lines.append(f"upper bound (every run to its budget: selection {sel.max_iters}, final {fin.max_iters} "
                 f"iterations): {total:.0f} s on one core = {total / workers / 3600:.2f} h on {workers} "
                 "workers")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from flowsim.cli.common import make_parser, positive_int
    from flowsim.errors import BadInputError
    from flowsim.io import (
        atomic_write_bytes,
        atomic_write_csv,
        atomic_write_json,
        command_line,
        package_versions,
        read_json,
    )
    from flowsim.sweep.experiments import run_cells, run_guarded
    from flowsim.validation.reproduce import StoppingRule
    from flowsim.validation.reproduce_jobs import (
        cell_id,
        cell_job,
        load_protocol,
        rule_from,
        with_verdicts,
    )

    p = make_parser("python experiments/table1/run.py", "Zhao22 Table 1 reproduction with verdicts.")
    p.add_argument("--out", default=None, help="output folder (resumable); required unless --estimate")
    p.add_argument("--quick", action="store_true", help="the quick (CI) variant of the protocol")
    p.add_argument("--config", default=str(CONFIG), help="protocol file")
    p.add_argument("--variant", default=None, help="a [variants.NAME] of the protocol file (e.g. ci2h)")
    p.add_argument("--workers", type=positive_int, default=2, help="local worker processes")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cells on this Dask scheduler (e.g. tcp://host:8786; OUT on a shared disk)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="torch device (overrides the protocol's; cuda runs the torch engine)")
    p.add_argument("--optimizers", nargs="*", default=None, help="restrict to these optimizers")
    p.add_argument("--depths", nargs="*", type=int, default=None, help="restrict to these depths")
    p.add_argument("--penalties", nargs="*", default=None, help="restrict to these penalties")
    p.add_argument("--estimate", action="store_true",
                   help="measure per-step costs and estimate the wall time")
    p.add_argument("--report", action="store_true",
                   help="only rebuild results.csv and table1.md from the cells already in OUT")
    args = p.parse_args(argv)
    try:
        proto = load_protocol(args.config, quick=args.quick, variant=args.variant)
        if args.device is not None:
            proto["protocol"]["device"] = args.device
        published = load_published()
        cells = cells_of(proto, args.optimizers, args.depths, args.penalties)
        if not cells:
            raise BadInputError("the restrictions leave no cell")
        unknown = {c["optimizer"] for c in cells} - set(proto["lr_grid"])
        if unknown:
            raise BadInputError(f"no η grid for {', '.join(sorted(unknown))}")
        if args.estimate:
            print(estimate(proto, cells, args.workers))
            return 0
        if args.out is None:
            raise BadInputError("--out is required")
        from flowsim.validation.reproduce_jobs import experiment_dir

        out = experiment_dir(args.out)
    except BadInputError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if not args.report:
        _, code = run_guarded(p.prog, out, lambda: run_cells(cells, cell_job, proto, out,
                                                             workers=args.workers, scheduler=args.scheduler))
        if code:
            return code
    wall = time.perf_counter() - t0
    # the tables cover every cell of the grid recorded in OUT (restricted runs add up in one folder)
    grid = cells_of(proto)
    records = [read_json(out / "cells" / f"{cell_id(c)}.json") for c in grid
               if (out / "cells" / f"{cell_id(c)}.json").is_file()]
    rows = with_verdicts(records, published)
    atomic_write_csv(out / "results.csv", rows)
    cell_wall = sum(float(r["wall_time_s"]) for r in records)
    atomic_write_bytes(out / "table1.md", render_markdown(rows, proto, cell_wall, len(grid)).encode())
    rule: StoppingRule = rule_from(proto["stopping"])
    atomic_write_json(out / "run.json", {
        "command": "experiments/table1/run.py", "argv": command_line(), "protocol": proto,
        "stopping_rule": rule.describe(),
        "selection_rule": rule_from(proto.get("selection", proto["stopping"])).describe(),
        "cells": len(cells), "cells_recorded": len(records), "grid_cells": len(grid), "workers": args.workers,
        "report_only": args.report, "wall_time_s": wall,
        "cell_wall_time_s": cell_wall, "versions": package_versions()})
    print(f"{len(cells)} cells asked, {len(records)} of {len(grid)} recorded, {wall:.0f} s; "
          f"{out / 'results.csv'}, {out / 'table1.md'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
