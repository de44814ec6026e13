"""``validate`` as a typed run: :class:`ValidateSpec` and :func:`run_validate` compare a discrete optimizer
with a continuous-time model over several step sizes (the errors e_σ, e_W, the gaps and the log-log slopes
of ``docs/math.md`` §11) and write ``validation.json``, ``run.json`` and ``validation.png``."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BadInputError
from ..flows import MODEL_NAMES
from ..integrator import SOLVERS
from ..validation.validate import AGAINST, BETA_SCALINGS, DEFAULT_AGAINST, ValidationResult
from .common import RunResult
from .options import lrs_arg, option, positive_float, positive_int, provenance_field
from .train import DEVICE_NAMES, DTYPES, OptimizerSpec

#: the flows a discrete optimizer can be compared with
FLOWS = tuple(f for fs in AGAINST.values() for f in fs)


@dataclass(frozen=True)
class ValidateSpec(OptimizerSpec):
    """The options of ``flowsim validate`` (names and defaults of ``flowsim validate --help``)."""

    command: ClassVar[str] = "validate"

    optimizer: str = option("gd", choices=tuple(AGAINST))
    lrs: list[float] = option([0.4, 0.2, 0.1, 0.05], lrs_arg)
    against: str | None = option(None, choices=FLOWS)
    model: str = option("layers", choices=MODEL_NAMES)
    convention: str = option("row-major", choices=("row-major", "col-major"))
    beta_scaling: str = option("fixed", choices=BETA_SCALINGS)
    t_end: float = option(50.0, positive_float)
    n_save: int = option(60, positive_int)
    rtol: float = option(1e-10, positive_float)
    atol: float = option(1e-13, positive_float)
    method: str = option("DOP853", choices=tuple(SOLVERS))
    max_wall_time: float | None = option(None, positive_float)
    device: str = option("auto", choices=DEVICE_NAMES)
    dtype: str = option("float64", choices=tuple(DTYPES))
    out: str | None = option(None)
    quiet: bool = option(False, flag=True)
    allow_large: bool = option(False, flag=True)
    provenance: str | None = provenance_field()


def _write(out: Path, res: ValidationResult, params: dict, start: float, final: bool) -> None:
    """validation.json, run.json and the per-η run folders written so far."""
    from ..io import atomic_write_json, command_line, package_versions
    from ..trajectory import write_run
    from ..validation.plots import VALIDATION_JSON, lr_dir

    doc = res.to_json(
        {"t_end": params["t_end"], "model": params["model"], "beta_scaling": params["beta_scaling"]}
    )
    atomic_write_json(out / VALIDATION_JSON, doc)
    for row, disc, flow in zip(res.rows, res.discrete, res.flows):
        sub = lr_dir(out, row["lr"])
        for kind, traj in (("discrete", disc), ("flow", flow)):
            if traj is None or (sub / kind / "run.json").is_file():
                continue
            W, traj.W = traj.W, None  # the matrices are not kept on disk
            write_run(
                sub / kind,
                traj,
                command="train" if kind == "discrete" else "simulate",
                params={**params, "lr": row["lr"], "part_of": "validate"},
                wall_time_s=0.0,
            )
            traj.W = W
    status = res.status if final or res.status != "ok" else "running"
    info = {
        "command": "validate",
        "argv": command_line(),
        "params": params,
        "seed": params.get("seed"),
        "status": status,
        "message": res.message,
        "wall_time_s": time.perf_counter() - start,
        "stats": {"details": res.details},
        "final": {k: doc[k] for k in ("slope_e_sigma", "slope_e_W")} | {"rows": doc["rows"]},
        "versions": package_versions(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out / "run.json", info)


def run_validate(spec: ValidateSpec) -> RunResult:
    """Run the discrete optimizer and the flow of ``spec`` for every step size and write the validation
    folder ``spec.out`` (updated after each step size); print a line per step size and the slopes unless
    ``quiet``. Bad input raises :class:`flowsim.errors.BadInputError` before the folder exists."""
    from .common import recording

    with recording(spec):
        return _run_validate(spec)


def _run_validate(spec: ValidateSpec) -> RunResult:
    from ..flows import make_flow
    from ..validation.batched import resolve_device, resolve_dtype
    from ..validation.plots import plot_run
    from ..validation.validate import check_pairing, scaled_hyper, validate
    from .budget import MAX_ITERATIONS, check_count, check_saved
    from .common import (
        checked_problem,
        exit_code_for,
        factors_from_args,
        penalty_from_args,
        prepare_out_dir,
    )
    from .interrupts import deferred
    from .train import hyper_from_args

    start = time.perf_counter()
    against = spec.against or DEFAULT_AGAINST[spec.optimizer]
    check_pairing(spec.optimizer, against)
    if len(set(spec.lrs)) < 2:
        raise BadInputError("--lrs needs at least two distinct step sizes")
    iters = sum(math.ceil(spec.t_end / lr) for lr in spec.lrs) if all(
        spec.t_end / lr < 1e300 for lr in spec.lrs) else math.inf
    check_count(f"--t-end {spec.t_end:g} with --lrs {min(spec.lrs):g}…", iters, MAX_ITERATIONS,
                spec.allow_large, "iterations in all (t_end/η per step size)")
    problem = checked_problem(spec)
    check_saved("--n-save", spec.n_save * 2 * len(spec.lrs), problem.shape, 0, True, spec.allow_large)
    penalty = penalty_from_args(spec)
    factors = factors_from_args(spec, problem.shape)
    hyper = hyper_from_args(spec)
    device = resolve_device(spec.device)
    resolve_dtype(spec.dtype)
    # every flow is built (and its options checked) before the run directory exists
    for lr in set(spec.lrs):
        h = scaled_hyper(hyper, lr, max(spec.lrs), spec.beta_scaling, spec.optimizer)
        flow_options: dict[str, Any] = {"lr": lr, "convention": spec.convention, "beta1": h.get("beta1", 0.9),
                                        "beta2": h.get("beta2", 0.999), "eps": h.get("eps", 1e-8)}
        make_flow(against, problem, spec.depth, penalty, spec.lam, spec.model, **flow_options)
    if spec.beta_scaling == "bb21" and spec.optimizer != "adam":
        raise BadInputError("--beta-scaling bb21 applies to --optimizer adam only")
    params: dict[str, Any] = spec.params()
    params.update(against=against, problem=problem.description, hyper=hyper, device_used=str(device))
    out = prepare_out_dir(spec.out, "validate")

    def on_row(res: ValidationResult) -> None:
        _write(out, res, params, start, final=False)
        if not spec.quiet:
            r = res.rows[-1]
            print(
                f"lr={r['lr']:<10g} e_sigma={r['e_sigma']:.3e}  e_W={r['e_W']:.3e}  "
                f"erank_gap={r['erank_gap']:.3e}  test_error_gap={r['test_error_gap']:.3e}",
                flush=True,
            )

    res = validate(
        problem, factors, optimizer=spec.optimizer, against=against, lrs=spec.lrs, t_end=spec.t_end,
        penalty=penalty, lam=spec.lam, hyper=hyper, model=spec.model, convention=spec.convention,
        beta_scaling=spec.beta_scaling, n_record=spec.n_save, method=spec.method, rtol=spec.rtol,
        atol=spec.atol, device=str(device), dtype=spec.dtype, max_wall_time=spec.max_wall_time, on_row=on_row,
    )
    with deferred():  # the final files are written whole even when Ctrl-C arrives meanwhile
        _write(out, res, params, start, final=True)
    png = plot_run(out)[0] if res.rows else None
    sl = res.slopes()
    if not spec.quiet:
        print(
            f"{spec.optimizer} vs {against}: slope e_sigma {sl['slope_e_sigma']:.3f}, slope e_W "
            f"{sl['slope_e_W']:.3f}  ({res.status}: {res.message})"
        )
        print(f"output       {out}" + (f"  (plot {png.name})" if png else ""))
    elif res.status != "ok":
        print(f"flowsim validate: {res.status}: {res.message}", file=sys.stderr)
    return RunResult(res.status, res.message, exit_code_for(res.status), out, dict(sl),
                     time.perf_counter() - start)
