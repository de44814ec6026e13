"""``train`` as a typed run: :class:`TrainSpec` and :func:`run_train` run a discrete optimizer (GD, Adam,
Adagrad, Adamax, RMSprop; ``docs/math.md`` §11) on the layer factors and write its run directory
(``t_k = kη``)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import BadInputError
from ..validation.batched import DTYPES
from ..validation.optimizers import OPTIMIZER_NAMES
from .common import ProblemModelSpec, RunResult
from .options import nonneg_float, option, plain_float, positive_float, positive_int, provenance_field

DEVICE_NAMES = ("auto", "cpu", "cuda")

#: option name -> hyper-parameter name, for the optimizers that accept it
HYPER_OPTIONS = {
    "beta1": "beta1",
    "beta2": "beta2",
    "eps": "eps",
    "momentum": "momentum",
    "dampening": "dampening",
    "weight_decay": "weight_decay",
    "alpha": "alpha",
    "lr_decay": "lr_decay",
    "amsgrad": "amsgrad",
    "nesterov": "nesterov",
    "centered": "centered",
}


@dataclass(frozen=True)
class OptimizerSpec(ProblemModelSpec):
    """The problem and model options followed by the optimizer options of ``train`` and ``validate``
    (unset hyper-parameters keep torch's defaults)."""

    optimizer: str = option("gd", choices=OPTIMIZER_NAMES)
    lr: float = option(0.01, positive_float)
    beta1: float | None = option(None, plain_float)
    beta2: float | None = option(None, plain_float)
    eps: float | None = option(None, nonneg_float)
    momentum: float | None = option(None, nonneg_float)
    dampening: float | None = option(None, nonneg_float)
    weight_decay: float | None = option(None, nonneg_float)
    alpha: float | None = option(None, plain_float)
    lr_decay: float | None = option(None, nonneg_float)
    amsgrad: bool | None = option(None, flag=True)
    nesterov: bool | None = option(None, flag=True)
    centered: bool | None = option(None, flag=True)


@dataclass(frozen=True)
class TrainSpec(OptimizerSpec):
    """The options of ``flowsim train`` (names and defaults of ``flowsim train --help``)."""

    command: ClassVar[str] = "train"

    iters: int = option(10000, positive_int)
    n_save: int = option(200, positive_int)
    check_every: int = option(50, positive_int)
    save_matrices: bool = option(False, flag=True)
    device: str = option("auto", choices=DEVICE_NAMES)
    dtype: str = option("float64", choices=tuple(DTYPES))
    out: str | None = option(None)
    quiet: bool = option(False, flag=True)
    no_plot: bool = option(False, flag=True)
    allow_large: bool = option(False, flag=True)
    provenance: str | None = provenance_field()


def hyper_from_args(args: Any) -> dict[str, Any]:
    """The hyper-parameters given (each must apply to ``args.optimizer``), checked by building the
    optimizer once (bad input before any output exists)."""
    import torch

    from ..validation.optimizers import DEFAULTS, make_optimizer

    accepted = DEFAULTS[args.optimizer]
    out = {}
    for dest, key in HYPER_OPTIONS.items():
        v = getattr(args, dest, None)
        if v is None:
            continue
        if key not in accepted:
            raise BadInputError(f"--{dest.replace('_', '-')} does not apply to --optimizer {args.optimizer}")
        out[key] = v
    if args.optimizer == "gd" and out.get("nesterov") and not out.get("momentum"):
        raise BadInputError("--nesterov needs --momentum > 0")
    make_optimizer(args.optimizer, [torch.zeros(1, 1, dtype=torch.float64)], args.lr, **out)
    return out


def run_train(spec: TrainSpec) -> RunResult:
    """Train the factors of ``spec`` and write ``run.json``, ``trajectory.npz`` and (unless ``no_plot``)
    ``trajectory.png`` into ``spec.out``; print the summary unless ``quiet``. Bad input raises
    :class:`flowsim.errors.BadInputError` before the run directory exists."""
    from ..validation.batched import resolve_device, resolve_dtype
    from ..validation.train import record_iterations, train
    from .budget import MAX_ITERATIONS, check_count, check_saved
    from .common import (
        checked_problem,
        exit_code_for,
        factors_from_args,
        penalty_from_args,
        prepare_out_dir,
        recording,
        write_run_and_plot,
    )

    start = time.perf_counter()
    check_count("--iters", spec.iters, MAX_ITERATIONS, spec.allow_large, "iterations")
    problem = checked_problem(spec)
    check_saved("--n-save", spec.n_save, problem.shape, 0, spec.save_matrices, spec.allow_large)
    penalty = penalty_from_args(spec)
    factors = factors_from_args(spec, problem.shape)
    hyper = hyper_from_args(spec)
    device = resolve_device(spec.device)
    resolve_dtype(spec.dtype)
    record_iterations(spec.iters, spec.n_save)
    out = prepare_out_dir(spec.out, "train")
    traj = train(problem, factors, optimizer=spec.optimizer, lr=spec.lr, iters=spec.iters, penalty=penalty,
                 lam=spec.lam, hyper=hyper, n_record=spec.n_save, device=str(device), dtype=spec.dtype,
                 save_matrices=spec.save_matrices, check_every=spec.check_every,
                 progress=False if spec.quiet else None)
    params = spec.params()
    params["problem"] = problem.description
    params["hyper"] = hyper
    params["device_used"] = str(device)
    wall = time.perf_counter() - start
    with recording(spec):
        png = write_run_and_plot(out, traj, command="train", params=params, wall_time_s=wall,
                                 no_plot=spec.no_plot, time_label="t = kη",
                                 extra_info={"time_map": "t_k = k * lr"})
    if not spec.quiet:
        from .simulate import summary

        text = summary(traj, out, wall, png).splitlines()
        text = [ln for ln in text if not ln.startswith("nfev")]
        text.insert(-2, f"iterations   {traj.stats.get('iterations')} on {device} "
                        f"({traj.stats.get('iterations_per_s', float('nan')):.0f} it/s)")
        print("\n".join(text))
    elif traj.status != "ok":
        print(f"flowsim train: {traj.status}: {traj.message}", file=sys.stderr)
    return RunResult(traj.status, traj.message, exit_code_for(traj.status), out, traj.final_metrics(), wall)
