"""``razin`` as a typed run: :class:`RazinSpec` and :func:`run_razin` integrate the gradient flow on the
Razin–Cohen 2×2 completion problem (RC20; ``docs/math.md`` §10) with the checks C1–C8.

Writes ``run.json`` (parameters, status, C1–C7 verdicts and margins, C3 constants, the first times the loss
drops below 1e-1 … 1e-6 with |w₁₁| there, C8, the GD comparison), ``trajectory.npz`` (the standard arrays
plus ``w11``, ``det``, ``norm_max``, ``norm_s12``, ``log_sigma_min``, ``log_abs_det``), ``gd.npz`` with
``gd``, ``family.npz`` with ``family``, and the plots of :mod:`flowsim.theory.razin_plots`.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import BadInputError
from ..factors import end_product
from ..io import atomic_savez
from ..theory import razin as rz
from .budget import MAX_ITERATIONS, check_count, check_model, check_saved
from .common import RunResult, exit_code_for, prepare_out_dir, record_tolerances, recording, write_results
from .interrupts import interrupt_requested, note_interrupt
from .options import (
    RunSpec,
    finite_float,
    nonneg_int,
    option,
    plain_float,
    plain_int,
    positive_float,
    positive_int,
    provenance_field,
)


@dataclass(frozen=True)
class RazinSpec(RunSpec):
    """The options of ``flowsim razin`` (names and defaults of ``flowsim razin --help``)."""

    command: ClassVar[str] = "razin"

    depth: int = option(3, plain_int)
    z: float = option(1.0, finite_float)
    zp: float = option(1.0, finite_float)
    eps: float = option(0.0, finite_float)
    det: str = option("pos", choices=("pos", "neg"))
    init: str = option("balanced", choices=rz.INITS)
    init_scale: float | None = option(None, positive_float)
    seed: int = option(0, nonneg_int)
    t_end: float = option(rz.DEFAULT_T_END, plain_float)
    n_save: int = option(300, positive_int)
    rtol: float = option(rz.DEFAULT_RTOL, positive_float)
    atol: float = option(rz.DEFAULT_ATOL, positive_float)
    method: str = option("LSODA", choices=("LSODA", "Radau", "BDF"))
    stop_loss: float | None = option(None, positive_float)
    max_wall_time: float | None = option(None, positive_float)
    gd: bool = option(False, flag=True)
    gd_lr: float = option(3e-3, positive_float)
    gd_stop_loss: float = option(1e-4, positive_float)
    gd_max_iter: int = option(50_000_000, positive_int)
    gd_engine: str = option("auto", choices=("auto", "numba", "python"))
    family: bool = option(False, flag=True)
    out: str | None = option(None)
    quiet: bool = option(False, flag=True)
    allow_large: bool = option(False, flag=True)
    provenance: str | None = provenance_field()


def _validate(spec: RazinSpec) -> tuple[rz.RazinData, float, int]:
    for name, v in (("--z", spec.z), ("--zp", spec.zp)):
        if v == 0:
            raise BadInputError(f"{name} must be nonzero (RC20's checks use sign(z·z′) and the rank-1 "
                                f"completion z·z′/ε), got 0")
    check_model((2, 2), spec.depth, spec.allow_large, problem="the 2×2 problem")
    check_saved("--n-save", spec.n_save, (2, 2), 4 * max(spec.depth, 1), False, spec.allow_large)
    if spec.gd:
        check_count("--gd-max-iter", spec.gd_max_iter, MAX_ITERATIONS, spec.allow_large, "iterations")
    data = rz.RazinData(spec.z, spec.zp, spec.eps)
    scale = rz.DEFAULT_INIT_SCALE[spec.init] if spec.init_scale is None else spec.init_scale
    sign = 1 if spec.det == "pos" else -1
    rz.validate_run_args(spec.depth, spec.t_end, spec.init, sign, scale)
    if spec.gd_engine == "numba":
        from ..theory.razin_gd import _numba

        if _numba is None:
            raise BadInputError("--gd-engine numba needs the numba package (pip install numba)")
    return data, scale, sign


def run_family(spec: RazinSpec, scale: float) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The perturbed family of docs/math.md §10 C5 with the run's depth and initialization."""
    z, zp = rz.FAMILY_Z
    arrays: dict[str, np.ndarray] = {"eps": np.array(rz.FAMILY_EPS), "z": np.array(z), "zp": np.array(zp)}
    rows = []
    sign = int(np.sign(z * zp))
    for i, e in enumerate(rz.FAMILY_EPS):
        data = rz.RazinData(z, zp, e)
        run, _ = rz.run_razin(data, spec.depth, det_sign=sign, init=spec.init, init_scale=scale,
                              seed=spec.seed, t_end=spec.t_end, n_save=spec.n_save, rtol=spec.rtol,
                              atol=spec.atol, method=spec.method)
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


def run_razin(spec: RazinSpec) -> RunResult:
    """Integrate the flow of ``spec``, evaluate C1–C8 and the comparisons (``gd``, ``family``) and write the
    run directory ``spec.out`` with its plots; print the summary unless ``quiet``. Bad input raises
    :class:`flowsim.errors.BadInputError` before the run directory exists; an interrupt during the flow or
    the comparisons is the status ``interrupted`` (exit code 130/143), with what finished written."""
    with recording(spec):
        return _run_razin(spec)


def _run_razin(spec: RazinSpec) -> RunResult:
    start = time.perf_counter()
    data, scale, sign = _validate(spec)
    factors = rz.initial_factors(spec.init, spec.depth, sign, scale, spec.seed)
    flow = rz.make_razin_flow(factors, data, spec.depth)
    out = prepare_out_dir(spec.out, "razin")
    run_ = rz.integrate_razin(flow, factors, spec.t_end, n_save=spec.n_save, rtol=spec.rtol, atol=spec.atol,
                              method=spec.method, stop_loss=spec.stop_loss, max_wall_time=spec.max_wall_time)
    W0 = end_product(factors)
    traj = rz.razin_trajectory(run_, data, W0)
    checks = rz.evaluate_checks(run_, data, spec.depth, spec.init, scale)
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
            _comparisons(spec, out, data, factors, scale, run_, extra)
        except KeyboardInterrupt as exc:  # SIGINT/SIGTERM: keep the flow and the comparisons finished so far
            note_interrupt(exc)
        if interrupt_requested():
            done = ", ".join(k for k in ("C8", "gd", "family") if k in extra) or "none"
            status = "interrupted"
            message = (f"interrupted by the user after the flow ({run_.message}) during the comparisons "
                       f"(finished: {done})")
    params = spec.params()
    params["problem"] = data.problem().description
    record_tolerances(params, run_.stats)
    wall = time.perf_counter() - start
    traj.status, traj.message = status, message
    write_results(out, traj, command="razin", params=params, wall_time_s=wall, extra_info=extra)
    from ..theory.razin_plots import plot_run

    pngs = plot_run(out)
    if not spec.quiet:
        print(summary(run_, extra, wall, out, pngs, status, message))
    elif status != "ok":
        print(f"flowsim razin: {status}: {message}", file=sys.stderr)
    last = len(run_.t) > 0
    final = {"t": float(run_.t[-1]) if last else math.nan, "loss": float(run_.loss[-1]) if last else math.nan,
             "w11": float(run_.W[-1, 0, 0]) if last else math.nan, "verdicts": dict(extra["verdicts"])}
    return RunResult(status, message, exit_code_for(status), out, final, wall)


def _comparisons(spec: RazinSpec, out, data: rz.RazinData, factors, scale: float, run_: rz.RazinRun,
                 extra: dict[str, Any]) -> None:
    """C8 (symbolic), the GD comparison and the perturbed family, each written to ``extra`` (and its
    ``.npz``) as soon as it is finished."""
    from ..theory.razin_symbolic import c8_evidence

    extra["C8"] = c8_evidence(data.z, data.zp) if data.eps == 0 else {"applies": False}
    if spec.gd:
        from ..theory.razin_gd import run_gd

        gd = run_gd(factors, data, spec.gd_lr, spec.gd_stop_loss, spec.gd_max_iter, spec.gd_engine)
        flow_wall = run_.stats["integration_wall_time_s"]
        atomic_savez(out / "gd.npz", {"k": gd.k, "t": gd.t, "loss": gd.loss, "w11": gd.w11, "det": gd.det})
        extra["gd"] = {**gd.summary(), "flow_integration_wall_time_s": flow_wall}
    if spec.family:
        fam_arrays, rows = run_family(spec, scale)
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
