"""Reports rendered from a finished sweep: Experiment 1 (Zhao22 Table 1) as a Markdown table.

Layout of Zhao22 Table 1: one row per optimizer × depth, a pair of columns (test error, effective rank)
per penalty. ``Err`` is the relative test error ‖P_Ωᶜ(W − W*)‖_F/‖P_Ωᶜ(W*)‖_F (docs/math.md §2; with RMS(W*) =
1 it agrees in scale with the RMSE the paper's code prints), ``Rk`` the effective rank (RV07) rounded to an
integer, as in the paper. Cells with several points (seeds) show the mean (and ± the standard deviation
of Err when there are ≥ 2 seeds). A cell whose run diverged or failed shows its status.

Points come from the grid labelled ``main``; a grid labelled ``sensitivity`` is rendered as an η × λ table
per (optimizer, depth, penalty) cell it covers. Render with::

    python -m flowsim.sweep.tables SWEEP_DIR [--output FILE.md]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import EXIT_BAD_INPUT, BadInputError
from ..io import atomic_write_bytes, read_json

OPTIMIZER_NAMES = {"adam": "Adam", "adagrad": "Adagrad", "adamax": "Adamax", "rmsprop": "RMSprop", "gd": "GD"}
PENALTY_LABELS = {"ratio": "ratio", "nuclear": "nuclear", "none": "none"}
PENALTY_ORDER = ["ratio", "schatten:1/2:2/3", "schatten:0.5:0.666667", "schatten:1/3:2/3",
                 "schatten:0.333333:0.666667", "schatten:1/3:1/2", "schatten:0.333333:0.5", "nuclear", "none"]


def penalty_label(spec: str) -> str:
    """Short column label: ``schatten:0.5:0.666667`` → ``S1/2:2/3`` (fractions with denominators ≤ 6);
    others unchanged."""
    from fractions import Fraction

    spec = str(spec)
    if spec.startswith("schatten:"):
        _, p, q = spec.split(":")
        fp, fq = (Fraction(float(Fraction(x))).limit_denominator(6) for x in (p, q))
        return f"S{fp}:{fq}"
    return PENALTY_LABELS.get(spec, spec)


def _rows(out: Path) -> list[dict[str, Any]]:
    """Points of the sweep with labels, options, status and final metrics (from the run directories)."""
    from .runner import FINISHED, RUN_JSON, SWEEP_JSON, point_dir

    try:
        sweep = read_json(out / SWEEP_JSON)
    except (OSError, ValueError):
        raise BadInputError(f"{out} is not a sweep folder (no readable {SWEEP_JSON})") from None
    entries = sweep.get("points") if isinstance(sweep, dict) else None
    if not isinstance(entries, list):
        raise BadInputError(f"{out / SWEEP_JSON} lists no points")
    rows = []
    for entry in entries:
        try:
            info = read_json(point_dir(out, entry["id"]) / RUN_JSON)
        except (OSError, ValueError):
            info = {}
        info = info if isinstance(info, dict) else {}
        status = info.get("status") if info.get("status") in FINISHED else "pending"
        final = info.get("final") or {}
        rows.append({"id": entry["id"], "labels": entry.get("labels", []), "params": entry["params"],
                     "status": status, "test_error": _num(final.get("test_error")),
                     "erank": _num(final.get("erank")), "wall_time_s": _num(info.get("wall_time_s"))})
    return rows


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _depth(params: dict[str, Any]) -> int:
    d = _num(params.get("depth", 0))
    return int(d) if math.isfinite(d) else 0


def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return m, sd


def _cell(group: list[dict[str, Any]], rank_digits: int = 0) -> tuple[str, str]:
    """(Err, Rk) text of one table cell from its points."""
    if not group:
        return "", ""
    bad = [g["status"] for g in group if g["status"] != "ok"]
    if len(bad) == len(group):
        return bad[0], bad[0]
    ok = [g for g in group if g["status"] == "ok"]
    err, err_sd = _mean_std([g["test_error"] for g in ok])
    rk, _ = _mean_std([g["erank"] for g in ok])
    e = "nan" if not math.isfinite(err) else f"{err:.3f}"
    if math.isfinite(err_sd):
        e += f" ± {err_sd:.3f}"
    if bad:
        e += f" ({len(bad)} {bad[0]})"
    r = "nan" if not math.isfinite(rk) else (f"{round(rk)}" if rank_digits == 0 else f"{rk:.{rank_digits}f}")
    return e, r


def _ordered(values: list[Any], preferred: list[Any]) -> list[Any]:
    seen = list(dict.fromkeys(values))
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


def render_table1(out: str | Path) -> str:
    """Experiment 1 (Zhao22 Table 1 protocol) as Markdown: rows optimizer × depth, Err/Rk per penalty,
    followed by the η × λ sensitivity tables of the ``sensitivity`` grid."""
    out = Path(out)
    rows = _rows(out)
    main = [r for r in rows if "main" in r["labels"]] or [r for r in rows if not r["labels"]]
    if not main:
        raise BadInputError(f"{out}: no point of a grid labelled 'main'")
    cells: dict[tuple, list] = defaultdict(list)
    for r in main:
        p = r["params"]
        cells[(str(p.get("optimizer", "?")), _depth(p), str(p.get("penalty", "none")))].append(r)
    opts = _ordered([k[0] for k in cells], list(OPTIMIZER_NAMES))
    depths = sorted({k[1] for k in cells})
    pens = _ordered([k[2] for k in cells], PENALTY_ORDER)
    header = ["Optimizer", "N"] + [f"{penalty_label(q)} {c}" for q in pens for c in ("Err", "Rk")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (2 * len(pens))) + "|"]
    for o in opts:
        for d in depths:
            vals = []
            for q in pens:
                vals += list(_cell(cells.get((o, d, q), [])))
            lines.append("| " + " | ".join([OPTIMIZER_NAMES.get(o, o), str(d), *vals]) + " |")
    text = "\n".join(lines) + "\n"
    lams = defaultdict(set)
    for r in main:
        p = r["params"]
        lams[(_depth(p), str(p.get("penalty")))].add(p.get("lam"))
    by_depth: dict[int, set] = defaultdict(set)
    for (d, q), vs in lams.items():
        if q != "none":
            by_depth[d] |= {_num(v) for v in vs if v is not None}
    notes = [f"λ = {', '.join(f'{v:g}' for v in sorted(vs))} at N = {d}"
             for d, vs in sorted(by_depth.items()) if vs]
    lrs = defaultdict(set)
    for r in main:
        if r["params"].get("lr") is not None:
            lrs[str(r["params"].get("optimizer"))].add(_num(r["params"]["lr"]))
    if lrs:
        notes.append("η: " + ", ".join(f"{OPTIMIZER_NAMES.get(o, o)} {', '.join(f'{x:g}' for x in sorted(v))}"
                                       for o, v in lrs.items()))
    text += "\nErr = relative test error, Rk = effective rank (rounded). " + "; ".join(notes) + ".\n"
    sens = [r for r in rows if "sensitivity" in r["labels"]]
    if sens:
        text += "\n" + render_sensitivity(sens)
    return text


def render_sensitivity(rows: list[dict[str, Any]]) -> str:
    """η × λ tables (Err / erank with 2 decimals) for every (optimizer, depth, penalty) cell of ``rows``."""
    by_cell: dict[tuple, list] = defaultdict(list)
    for r in rows:
        p = r["params"]
        if p.get("lr") is None or p.get("lam") is None:
            continue  # a sensitivity table needs both axes
        by_cell[(str(p.get("optimizer", "?")), _depth(p), str(p.get("penalty", "none")))].append(r)
    parts = []
    for (o, d, q), group in by_cell.items():
        lrs = sorted({_num(g["params"]["lr"]) for g in group})
        lams = sorted({_num(g["params"]["lam"]) for g in group})
        parts.append(f"Sensitivity of the {OPTIMIZER_NAMES.get(o, o)}, N={d}, {penalty_label(q)} cell "
                     "(Err / Rk; rows η, columns λ):\n")
        lines = ["| η \\ λ | " + " | ".join(f"{v:g}" for v in lams) + " |", "|---|" + "---:|" * len(lams)]
        for lr in lrs:
            vals = []
            for lam in lams:
                sub = [g for g in group
                       if _num(g["params"]["lr"]) == lr and _num(g["params"]["lam"]) == lam]
                e, k = _cell(sub, rank_digits=2)
                vals.append(f"{e} / {k}" if sub else "")
            lines.append(f"| {lr:g} | " + " | ".join(vals) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


REPORTS: dict[str, Callable[[str | Path], str]] = {"table1": render_table1}


def write_report(out: str | Path, name: str) -> Path:
    """Render report ``name`` of the sweep folder ``out`` into ``out/<name>.md`` (atomic)."""
    if name not in REPORTS:
        raise BadInputError(f"unknown report {name!r}; choose from {sorted(REPORTS)}")
    path = Path(out) / f"{name}.md"
    atomic_write_bytes(path, REPORTS[name](out).encode())
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m flowsim.sweep.tables SWEEP_DIR [--report table1] [--output FILE]``: print the table."""
    p = argparse.ArgumentParser(prog="python -m flowsim.sweep.tables",
                                description="Render a sweep report as Markdown.")
    p.add_argument("dir", help="sweep folder (with sweep.json)")
    p.add_argument("--report", choices=sorted(REPORTS), default="table1")
    p.add_argument("--output", default=None, help="also write the Markdown to this file")
    args: argparse.Namespace = p.parse_args(argv)
    try:
        text = REPORTS[args.report](args.dir)
    except BadInputError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.output:
        atomic_write_bytes(args.output, text.encode())
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
