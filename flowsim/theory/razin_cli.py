"""``flowsim razin``: the Razin–Cohen 2×2 counterexample with checks C1–C8 (RC20; SPEC §1.2, §4, §7).

Writes ``run.json`` (parameters, status, C1–C7 verdicts and margins, C3 constants, the first times the loss
drops below 1e-1 … 1e-6 with |w₁₁| there, C8, the GD comparison), ``trajectory.npz`` (SPEC §7 plus
``w11``, ``det``, ``norm_max``, ``norm_s12``, ``log_sigma_min``, ``log_abs_det``), ``gd.npz`` with
``--gd``, ``family.npz`` with ``--family``, and the plots of :mod:`flowsim.theory.razin_plots`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import numpy as np

from flowsim.cli.budget import MAX_ITERATIONS, add_allow_large_arg, check_count, check_model, check_saved
from flowsim.cli.common import (
    exit_code_for,
    finite_float,
    make_parser,
    nonneg_int,
    params_from_args,
    positive_float,
    positive_int,
    prepare_out_dir,
    record_tolerances,
    write_results,
)
from flowsim.cli.interrupts import interrupt_requested, note_interrupt
from flowsim.errors import BadInputError
from flowsim.io import atomic_savez

from . import razin as rz


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = make_parser(prog, "Gradient flow on the Razin–Cohen 2×2 completion problem (RC20): every norm → ∞ "
                          "while the rank is minimized; checks C1–C8 along the trajectory.")
    g = p.add_argument_group("problem and network (SPEC §1.2, §4)")
    g.add_argument("--depth", type=int, default=3, metavar="N", help="depth N ≥ 2")
    g.add_argument("--z", type=finite_float, default=1.0, help="observed b₁₂")
    g.add_argument("--zp", type=finite_float, default=1.0, help="observed b₂₁")
    g.add_argument("--eps", type=finite_float, default=0.0, help="observed b₂₂")
    g.add_argument("--det", choices=("pos", "neg"), default="pos", help="sign of det W(0)")
    g.add_argument("--init", choices=rz.INITS, default="balanced",
                   help="balanced (product of scale A), identity (W_j = A^{1/N} I), normal (per-layer std A)")
    g.add_argument("--init-scale", type=positive_float, default=None, metavar="A",
                   help="default: 1e-5 (balanced, identity), 8e-3 (normal)")
    g.add_argument("--seed", type=nonneg_int, default=0, help="seed of the random initializations")
    g = p.add_argument_group("integration")
    g.add_argument("--t-end", type=float, default=rz.DEFAULT_T_END, metavar="T", help="horizon (> 0)")
    g.add_argument("--n-save", type=positive_int, default=300, help="number of log-spaced saved times")
    g.add_argument("--rtol", type=positive_float, default=rz.DEFAULT_RTOL, help="relative tolerance")
    g.add_argument("--atol", type=positive_float, default=rz.DEFAULT_ATOL, help="absolute tolerance")
    g.add_argument("--method", choices=("LSODA", "Radau", "BDF"), default="LSODA", help="stiff scipy solver")
    g.add_argument("--stop-loss", type=positive_float, default=None, metavar="L", help="stop once ℓ < L")
    g.add_argument("--max-wall-time", type=positive_float, default=None, metavar="SECONDS")
    g = p.add_argument_group("comparisons")
    g.add_argument("--gd", action="store_true",
                   help="also run discrete GD (RC20: η = 3e-3, stop at ℓ < 1e-4)")
    g.add_argument("--gd-lr", type=positive_float, default=3e-3, metavar="η")
    g.add_argument("--gd-stop-loss", type=positive_float, default=1e-4, metavar="L")
    g.add_argument("--gd-max-iter", type=positive_int, default=50_000_000)
    g.add_argument("--gd-engine", choices=("auto", "numba", "python"), default="auto")
    g.add_argument("--family", action="store_true",
                   help="also run the perturbed family (z, z′) = (−2, 0.5), ε ∈ {0, 0.01, 0.05, 0.1, 0.5}")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default runs/razin-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true", help="no summary")
    add_allow_large_arg(p)
    return p


def _validate(args: argparse.Namespace) -> tuple[rz.RazinData, float, int]:
    for name, v in (("--z", args.z), ("--zp", args.zp)):
        if v == 0:
            raise BadInputError(f"{name} must be nonzero (RC20's checks use sign(z·z′) and the rank-1 "
                                f"completion z·z′/ε), got 0")
    check_model((2, 2), args.depth, args.allow_large, problem="the 2×2 problem")
    check_saved("--n-save", args.n_save, (2, 2), 4 * max(args.depth, 1), False, args.allow_large)
    if args.gd:
        check_count("--gd-max-iter", args.gd_max_iter, MAX_ITERATIONS, args.allow_large, "iterations")
    data = rz.RazinData(args.z, args.zp, args.eps)
    scale = rz.DEFAULT_INIT_SCALE[args.init] if args.init_scale is None else args.init_scale
    sign = 1 if args.det == "pos" else -1
    rz.validate_run_args(args.depth, args.t_end, args.init, sign, scale)
    if args.gd_engine == "numba":
        from .razin_gd import _numba

        if _numba is None:
            raise BadInputError("--gd-engine numba needs the numba package (pip install numba)")
    return data, scale, sign


def run_family(args: argparse.Namespace, scale: float) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The perturbed family of SPEC §4 C5 with the run's depth and initialization."""
    z, zp = rz.FAMILY_Z
    arrays: dict[str, np.ndarray] = {"eps": np.array(rz.FAMILY_EPS), "z": np.array(z), "zp": np.array(zp)}
    rows = []
    sign = int(np.sign(z * zp))
    for i, e in enumerate(rz.FAMILY_EPS):
        data = rz.RazinData(z, zp, e)
        run, _ = rz.run_razin(data, args.depth, det_sign=sign, init=args.init, init_scale=scale,
                              seed=args.seed, t_end=args.t_end, n_save=args.n_save, rtol=args.rtol,
                              atol=args.atol, method=args.method)
        arrays.update({f"t_{i}": run.t, f"loss_{i}": run.loss, f"w11_{i}": run.W[:, 0, 0],
                       f"sigma_min_{i}": run.sigma[:, 1]})
        c5 = rz.check_c5(run, data)
        if run.model != "chart":
            c5 = {**c5, "observed_holds": c5.get("holds"), "holds": None, "applies": False}
        if run.status == "interrupted":  # an interrupt is not a verdict
            c5 = {**c5, "observed_holds": c5.get("holds"), "holds": None, "note": "interrupted"}
        rows.append({"eps": e, "status": run.status, "rank_one_w11": data.rank_one_w11, "C5": c5})
        if run.status == "interrupted" or interrupt_requested():
            break  # the member was cut short: keep the finished ones, run no more
    return arrays, rows


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    data, scale, sign = _validate(args)
    factors = rz.initial_factors(args.init, args.depth, sign, scale, args.seed)
    flow = rz.make_razin_flow(factors, data, args.depth)
    out = prepare_out_dir(args.out, "razin")
    run_ = rz.integrate_razin(flow, factors, args.t_end, n_save=args.n_save, rtol=args.rtol, atol=args.atol,
                              method=args.method, stop_loss=args.stop_loss, max_wall_time=args.max_wall_time)
    W0 = factors[0]
    for F in factors[1:]:
        W0 = F @ W0
    traj = rz.razin_trajectory(run_, data, W0)
    checks = rz.evaluate_checks(run_, data, args.depth, args.init, scale)
    extra: dict[str, Any] = {
        "checks": checks, "verdicts": rz.verdict_table(checks), "c3_constants": rz.c3_constants(run_),
        "loss_crossings": run_.crossings, "state": run_.model, "init_scale_used": scale,
        "initial_factors": [F.tolist() for F in factors],
    }
    status, message = run_.status, run_.message
    if status == "interrupted":  # measured on a cut trajectory: recorded, but not a verdict
        extra["verdicts"] = {k: "interrupted" for k in extra["verdicts"]}
    if status == "ok":
        try:
            _comparisons(args, out, data, factors, scale, run_, extra)
        except KeyboardInterrupt as exc:  # SIGINT/SIGTERM: keep the flow and the comparisons finished so far
            note_interrupt(exc)
        if interrupt_requested():
            done = ", ".join(k for k in ("C8", "gd", "family") if k in extra) or "none"
            status = "interrupted"
            message = (f"interrupted by the user after the flow ({run_.message}) during the comparisons "
                       f"(finished: {done})")
    params = params_from_args(args)
    params["problem"] = data.problem().description
    record_tolerances(params, run_.stats)
    wall = time.perf_counter() - start
    traj.status, traj.message = status, message
    write_results(out, traj, command="razin", params=params, wall_time_s=wall, extra_info=extra)
    from .razin_plots import plot_run

    pngs = plot_run(out)
    if not args.quiet:
        print(summary(run_, extra, wall, out, pngs, status, message))
    elif status != "ok":
        print(f"flowsim razin: {status}: {message}", file=sys.stderr)
    return exit_code_for(status)


def _comparisons(args: argparse.Namespace, out, data: rz.RazinData, factors, scale: float, run_: rz.RazinRun,
                 extra: dict[str, Any]) -> None:
    """C8 (symbolic), the GD comparison and the perturbed family, each written to ``extra`` (and its
    ``.npz``) as soon as it is finished."""
    from .razin_symbolic import c8_evidence

    extra["C8"] = c8_evidence(data.z, data.zp) if data.eps == 0 else {"applies": False}
    if args.gd:
        from .razin_gd import run_gd

        gd = run_gd(factors, data, args.gd_lr, args.gd_stop_loss, args.gd_max_iter, args.gd_engine)
        flow_wall = run_.stats["integration_wall_time_s"]
        atomic_savez(out / "gd.npz", {"k": gd.k, "t": gd.t, "loss": gd.loss, "w11": gd.w11, "det": gd.det})
        extra["gd"] = {**gd.summary(), "flow_integration_wall_time_s": flow_wall}
    if args.family:
        fam_arrays, rows = run_family(args, scale)
        atomic_savez(out / "family.npz", fam_arrays)
        extra["family"] = rows


def summary(run_: rz.RazinRun, extra: dict[str, Any], wall: float, out, pngs, status: str | None = None,
            message: str | None = None) -> str:
    """Human-readable summary of a razin run."""
    lines = [f"status       {status or run_.status} ({message or run_.message})",
             f"state        {run_.model}; steps {run_.stats['steps']}, nfev {run_.stats['nfev']}",
             f"final        t={run_.t[-1]:.4g}  loss={run_.loss[-1]:.3e}  w11={run_.W[-1, 0, 0]:.6g}  "
             f"det={run_.det[-1]:.3e}  log10 σ_min={run_.log_sigma_min[-1] / math.log(10):.2f}"]
    for c in run_.crossings:
        lines.append(f"  ℓ < {c['loss']:<7g} first at t={c['t']:.5g}: |w11|={abs(c['w11']):.5g}, "
                     f"σ_min=10^{c['log10_sigma_min']:.2f}")
    lines.append("checks       " + "  ".join(f"{k}:{v}" for k, v in extra["verdicts"].items()))
    for k, v in extra.get("c3_constants", {}).items():
        lines.append(f"  C3 {rz.NORM_LABELS[k]:<11} min ‖W‖√ℓ = {v['min']:.6f}  final {v['final']:.6f}")
    if "C8" in extra and "residual" in extra["C8"]:
        lines.append(f"C8           symbolic facts hold: {extra['C8']['symbolic_facts_hold']}")
    if "gd" in extra:
        g = extra["gd"]
        lines.append(f"GD           {g['status']}: {g['iterations']:,} iterations (t = {g['t_final']:.6g}), "
                     f"wall {g['wall_time_s']:.2f} s ({g['engine']}, compile {g['compile_time_s']:.2f} s); "
                     f"flow wall {g['flow_integration_wall_time_s']:.2f} s")
    for row in extra.get("family", []):
        c5 = row["C5"]
        lines.append(f"family ε={row['eps']:<5g} w11 → {c5.get('final_w11', float('nan')):.6g} "
                     f"(zz′/ε = {row['rank_one_w11']:.6g}); C5 {c5.get('holds')}")
    lines.append(f"wall time    {wall:.2f} s")
    lines.append(f"output       {out}  (plots: {', '.join(p.name for p in pngs)})")
    return "\n".join(lines)
