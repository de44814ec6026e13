"""Batched execution of discrete ``train`` points (docs/math.md §11: B independent runs as stacked tensors).

Points of ``flowsim train`` that share everything that fixes the tensor shapes and the update rule (problem
size, depth, optimizer and its hyper-parameters, penalty, iteration budget, recording grid, dtype, device)
and differ only in per-run quantities (seeds, observed count, rank, init, λ, η) are trained together with
``flowsim.validation.train.train_batched``; each point still gets its own run directory with the same
``run.json``/``trajectory.npz`` contract as ``flowsim train``. Batched points write no ``trajectory.png``
(``flowsim plot DIR`` draws it on demand).

The batches are a deterministic function of the whole point list of the sweep (not of which points are
still unfinished), so a resumed sweep recomputes the same batches and gets the same numbers bit for bit;
only the unfinished points of a batch are written.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from typing import Any

from .config import Point

#: options that may differ within one batch (per-run quantities of train_batched)
PER_RUN_OPTIONS = {"seed", "init_seed", "observed", "rank", "init", "init_scale", "lam", "lr"}
DEFAULT_BATCH_SIZE = 8


def batched_train_available() -> bool:
    """True when the validation package provides ``train_batched`` and the ``train`` run."""
    try:
        importlib.import_module("flowsim.runs.train")
        return hasattr(importlib.import_module("flowsim.validation.train"), "train_batched")
    except ImportError:
        return False


def batch_key(point: Point) -> tuple:
    """Points with equal keys can share a batch."""
    return tuple(sorted((k, v) for k, v in point.params.items() if k not in PER_RUN_OPTIONS))


def group_points(points: Sequence[Point], batch_size: int) -> list[list[Point]]:
    """Deterministic batches: ``train`` points grouped by :func:`batch_key` (in first-seen order), each
    group cut into chunks of at most ``batch_size``; every other point is its own group."""
    if batch_size <= 1 or not points or points[0].command != "train" or not batched_train_available():
        return [[p] for p in points]
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        groups.setdefault(batch_key(p), []).append(p)
    out = []
    for g in groups.values():
        out += [g[i:i + batch_size] for i in range(0, len(g), batch_size)]
    return out


def run_train_batch(items: list[tuple[str, list[str], dict, str]], write: list[bool]) -> list[dict[str, Any]]:
    """Train the points ``items`` (command, argv, params, run_dir) together; write the run directories of
    the points with ``write[i]`` true. Mirrors :func:`flowsim.runs.train.run_train` except the plot. Falls
    back to one-by-one runs when the batch cannot be formed."""
    from pathlib import Path

    from flowsim.validation.batched import resolve_device, resolve_dtype
    from flowsim.validation.train import record_iterations, train_batched

    from ..errors import BadInputError
    from ..io import recorded_command_line
    from ..runs.common import factors_from_args, penalty_from_args, prepare_out_dir, problem_from_args
    from ..runs.train import TrainSpec, hyper_from_args
    from ..trajectory import write_run
    from .runner import clear_run_dir, point_status, run_point, write_failure

    start = time.perf_counter()
    prepared = []
    try:
        for _command, argv, params, run_dir in items:
            # a batched point records the options of ``flowsim train ARGV --out RUN_DIR --quiet`` (no
            # ``--no-plot``: it writes no plot anyway)
            spec = TrainSpec.from_options({**params, "out": run_dir, "quiet": True}, provenance=" ".join(
                ["flowsim", "train", *argv, "--out", str(run_dir), "--quiet"]))
            problem = problem_from_args(spec)
            prepared.append((spec, problem, penalty_from_args(spec), factors_from_args(spec, problem.shape),
                             hyper_from_args(spec)))
        a0 = prepared[0][0]
        device = resolve_device(a0.device)
        resolve_dtype(a0.dtype)
        record_iterations(a0.iters, a0.n_save)
    except (BadInputError, ValueError):
        # a bad point: run each point alone, so that only the bad one is recorded as failed
        return [run_point(*it) if w else {"status": point_status(it[3]), "skipped": True}
                for it, w in zip(items, write)]
    hyper = prepared[0][4]
    trajs = train_batched(
        [p[1] for p in prepared], [p[3] for p in prepared], optimizer=a0.optimizer,
        lr=[p[0].lr for p in prepared], iters=a0.iters, penalty=prepared[0][2],
        lam=[p[0].lam for p in prepared],
        hyper=hyper, n_record=a0.n_save, device=str(device), dtype=a0.dtype, save_matrices=a0.save_matrices,
        check_every=a0.check_every, progress=False)
    wall = time.perf_counter() - start
    results = []
    for (spec, problem, _pen, _f, hyp), traj, it, w in zip(prepared, trajs, items, write):
        run_dir = Path(it[3])
        if not w:
            results.append({"status": point_status(run_dir), "skipped": True})
            continue
        try:
            clear_run_dir(run_dir)
            out = prepare_out_dir(str(run_dir), "train")
            params = spec.params()
            params["problem"] = problem.description
            params["hyper"] = hyp
            params["device_used"] = str(device)
            with recorded_command_line(spec.command_line()):
                write_run(out, traj, command="train", params=params, wall_time_s=wall / len(items),
                          extra_info={"time_map": "t_k = k * lr",
                                      "batch": {"size": len(items), "wall_time_s": wall}})
        except Exception as exc:  # noqa: BLE001 - recorded, never stops the sweep
            write_failure(run_dir, "train", it[2], f"{type(exc).__name__}: {exc}", wall / len(items))
        results.append({"status": point_status(run_dir), "exit_code": None, "wall_time_s": wall / len(items)})
    return results
