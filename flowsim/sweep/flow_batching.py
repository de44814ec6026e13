"""Batched execution of ``simulate`` points: the layer-wise gradient flows (``docs/math.md`` §6) of one
shape integrated in one :func:`flowsim.ensemble.simulate_ensemble` call, each point still written to its
own run directory as ``flowsim simulate`` writes it.

Points that share everything that fixes the shapes and the solve (problem size, depth, flow, model,
horizon, saving grid, tolerances, budgets) and differ only in per-run quantities (seeds, observed count,
rank, initialization, penalty and λ) form a batch. The ensemble runs on the numba engine, whose flows take
exactly the steps of their own compiled run, so a batched point's ``trajectory.npz`` equals the one of its
single run bit for bit, and its ``run.json`` differs only in the wall times and a ``batch`` entry (size and
wall time of the batch). A point whose single run would not take the compiled engine (a large state, an
end-product or non-smooth formulation picked by ``--model auto``, another flow or method, a wall-time
budget, which is per run) or whose options are bad runs alone, as the sweep runs any other point.

As for the ``train`` batches (:mod:`flowsim.sweep.batching`), the batches are a deterministic function of
the whole point list of the sweep, so a resumed sweep forms the same batches and gets the same numbers;
only the unfinished points of a batch are written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Point

#: options that may differ within one batch of simulate points (per-flow quantities of the ensemble)
PER_FLOW_OPTIONS = {"seed", "init_seed", "observed", "rank", "init", "init_scale", "penalty", "lam"}


def batched_simulate_available() -> bool:
    """True when the compiled engine behind the batches (numba) is installed."""
    from ..integrator.compiled import numba_available

    return numba_available()


def flow_batch_key(point: Point) -> tuple:
    """Points with equal keys can share a batch."""
    return tuple(sorted((k, v) for k, v in point.params.items() if k not in PER_FLOW_OPTIONS))


def _batchable_params(params: dict[str, Any]) -> bool:
    return (str(params.get("flow", "gf")) == "gf" and str(params.get("method", "DOP853")) == "DOP853"
            and params.get("max_wall_time") is None)


def group_flow_points(points: Sequence[Point], batch_size: int) -> list[list[Point]]:
    """Deterministic batches: ``simulate`` points of the gradient flow grouped by :func:`flow_batch_key`
    (in first-seen order), each group cut into chunks of at most ``batch_size``; every other point is its
    own group."""
    if (batch_size <= 1 or not points or points[0].command != "simulate"
            or not batched_simulate_available()):
        return [[p] for p in points]
    groups: dict[tuple, list[Point]] = {}
    out: list[list[Point]] = []
    for p in points:
        if _batchable_params(p.params):
            groups.setdefault(flow_batch_key(p), []).append(p)
        else:
            out.append([p])
    for g in groups.values():
        out += [g[i:i + batch_size] for i in range(0, len(g), batch_size)]
    return out


@dataclass
class _Prepared:
    """One point of a batch, checked and built as :func:`flowsim.runs.simulate.run_simulate` builds it."""

    index: int
    spec: Any
    problem: Any
    flow: Any
    inner: Any
    factors: list


def _prepare(index: int, spec: Any) -> _Prepared | None:
    """The point's problem, flow and factors with the checks of ``run_simulate``; None when its single run
    would not take the compiled engine (it then runs alone)."""
    from ..flows import LayerwiseFlow
    from ..flows.auto import AutoGradientFlow
    from ..integrator import engine_for
    from ..runs.simulate import prepare_simulation

    if spec.flow != "gf" or spec.method != "DOP853" or spec.max_wall_time is not None:
        return None
    problem, flow, factors = prepare_simulation(spec, note_slow=False)
    size = flow.initial_state(factors).size
    inner = flow.chosen if isinstance(flow, AutoGradientFlow) else flow
    if type(inner) is not LayerwiseFlow or flow.t0 != 0.0 or engine_for(inner, size, spec.method) != "numba":
        return None
    return _Prepared(index, spec, problem, flow, inner, list(factors))


def run_simulate_batch(items: list[tuple[str, list[str], dict, str]], write: list[bool]
                       ) -> list[dict[str, Any]]:
    """Integrate the ``simulate`` points ``items`` (command, argv, params, run_dir) together and write the
    run directories of the points with ``write[i]`` true, each as :func:`flowsim.runs.simulate.run_simulate`
    writes it (plot included unless the point's spec says ``no_plot``). Points that cannot join the batch
    run alone (:func:`flowsim.sweep.runner.run_point`)."""
    from ..ensemble import simulate_ensemble
    from ..errors import BadInputError
    from ..runs.common import prepare_out_dir
    from ..runs.simulate import write_simulation
    from ..simulate import formulation_stats
    from .runner import clear_run_dir, point_spec, point_status, run_point, write_failure

    start = time.perf_counter()
    results: list[dict[str, Any] | None] = [None] * len(items)
    batch: list[_Prepared] = []
    for i, (item, w) in enumerate(zip(items, write)):
        if not w:
            results[i] = {"status": point_status(item[3]), "skipped": True}
            continue
        try:
            prepared = _prepare(i, point_spec(*item))
        except (BadInputError, ValueError):
            prepared = None  # run alone: run_point records the bad input as that point's failure
        if prepared is None:
            results[i] = run_point(*item)
        else:
            batch.append(prepared)
    if batch:
        s0 = batch[0].spec
        trajs = simulate_ensemble([p.inner for p in batch], [p.factors for p in batch], s0.t_end,
                                  n_save=s0.n_save, rtol=s0.rtol, atol=s0.atol, max_steps=s0.max_steps,
                                  save_matrices=s0.save_matrices, engine="numba", threads=1)
        wall = time.perf_counter() - start
        share = wall / len(batch)
        for p, traj in zip(batch, trajs):
            run_dir = Path(items[p.index][3])
            # the statistics of a single run (simulate): the formulation the flow chose, no ensemble size
            traj.stats.pop("ensemble_size", None)
            traj.stats.update(formulation_stats(p.flow))
            try:
                clear_run_dir(run_dir)
                out = prepare_out_dir(str(run_dir), "simulate")
                write_simulation(out, p.spec, p.problem, p.flow, traj, share,
                                 extra_info={"batch": {"size": len(batch), "wall_time_s": wall}})
            except Exception as exc:  # noqa: BLE001 - recorded, never stops the sweep
                write_failure(run_dir, "simulate", items[p.index][2], f"{type(exc).__name__}: {exc}", share)
            results[p.index] = {"status": point_status(run_dir), "exit_code": None, "wall_time_s": share}
    return [r if r is not None else {"status": None, "skipped": True} for r in results]
