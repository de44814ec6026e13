"""Jobs of the reproduction experiments (Zhao22 Table 1, Fig. 4, Table 2): protocol files, one table cell as a
picklable job, a resumable runner of cells (serial, or on a process-pool backend), per-step cost
measurement and summary tables.

A protocol is a TOML file with tables ``problem`` (size, rank, observed, init, init_scale), ``protocol``
(seeds, val_fraction, lam per depth, device, dtype), ``stopping`` and ``selection`` (the
:class:`flowsim.validation.reproduce.StoppingRule` of the reported runs and of the η-selection runs),
``lr_grid`` (one list per optimizer) and ``grid`` (optimizers, depths, penalties); an optional ``quick`` table
overrides any of them (merged key by key).
"""

from __future__ import annotations

import copy
import math
import os
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from flowsim.errors import BadInputError, RunFailedError
from flowsim.initializations import init_factors
from flowsim.io import atomic_write_json, read_json
from flowsim.penalties import make_penalty
from flowsim.problems import CompletionProblem, synthetic_problem
from flowsim.ratings import ratings_problem

from .reproduce import StoppingRule, reproduce_cell, verdict


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_protocol(path: str | Path, quick: bool = False, variant: str | None = None) -> dict[str, Any]:
    """The protocol of ``path``: its ``variants.NAME`` table merged over it for ``variant``, then its
    ``quick`` table when ``quick``; bad files and unknown variants are bad input."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"protocol file not found: {p}")
    try:
        proto = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"protocol file {p} is not valid TOML ({exc})") from None
    over = proto.pop("quick", {})
    variants = proto.pop("variants", {})
    if variant is not None:
        if variant not in variants:
            raise BadInputError(f"protocol file {p} has no variant {variant!r} "
                                f"(known: {', '.join(sorted(variants)) or 'none'})")
        proto = _merge(proto, variants[variant])
    if quick:
        proto = _merge(proto, over)
    for key in ("problem", "protocol", "stopping"):
        if key not in proto:
            raise BadInputError(f"protocol file {p} has no [{key}] table")
    proto["variant"] = "quick" if quick else (variant or "full")
    proto["source"] = str(p)
    rule_from(proto["stopping"])
    rule_from(proto.get("selection", proto["stopping"]))
    return proto


def rule_from(table: dict[str, Any]) -> StoppingRule:
    """A :class:`StoppingRule` from a protocol table (unknown keys are bad input)."""
    known = set(StoppingRule.__dataclass_fields__)
    unknown = set(table) - known
    if unknown:
        raise BadInputError(f"unknown stopping-rule keys: {', '.join(sorted(unknown))}")
    return StoppingRule(**{k: (int(v) if k in ("max_iters", "check_every", "window") else float(v))
                           for k, v in table.items()})


def lam_for(proto: dict[str, Any], depth: int, penalty: str) -> float:
    """λ of a cell: 0 without a penalty, else the protocol's λ for that depth."""
    if penalty == "none":
        return 0.0
    lams = proto["protocol"]["lam"]
    if str(depth) not in lams:
        raise BadInputError(f"the protocol gives no λ for depth {depth}")
    return float(lams[str(depth)])


def seed_problems(proto: dict[str, Any], depth: int, observed: int | None = None
                  ) -> tuple[list[CompletionProblem], list[list[np.ndarray]], list[int]]:
    """(problems, initial factors, seeds): per seed, the protocol's problem — synthetic (W* and Ω drawn
    from the seed) or ``kind = "ratings"`` (the seeded train/test split of the ratings file ``path``) —
    and the per-layer initialization drawn from the seed."""
    pb = proto["problem"]
    seeds = [int(s) for s in proto["protocol"]["seeds"]]
    if pb.get("kind", "synthetic") == "ratings":
        block = tuple(int(x) for x in pb["block"]) if pb.get("block") else None
        problems = [ratings_problem(pb["path"], float(pb["test_fraction"]), s, block=block) for s in seeds]
    else:
        m = n = int(pb["size"])
        k = int(pb["observed"]) if observed is None else int(observed)
        problems = [synthetic_problem(m, n, int(pb["rank"]), k, s) for s in seeds]
    shape = problems[0].shape
    factors = [init_factors(pb.get("init", "gaussian"), shape, depth, float(pb["init_scale"]), s)
               for s in seeds]
    return problems, factors, seeds


def cell_job(cell: dict[str, Any], proto: dict[str, Any]) -> dict[str, Any]:
    """Run one cell (optimizer, depth, penalty[, observed]) of a protocol over its seeds and return a
    JSON-ready record (per-seed results and the summary)."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    problems, factors, seeds = seed_problems(proto, cell["depth"], cell.get("observed"))
    lam = lam_for(proto, cell["depth"], cell["penalty"])
    penalty = None if cell["penalty"] == "none" else make_penalty(cell["penalty"])
    pr = proto["protocol"]
    results = reproduce_cell(
        problems, factors, seeds, optimizer=cell["optimizer"], lr_grid=proto["lr_grid"][cell["optimizer"]],
        penalty=penalty, lam=lam, rule=rule_from(proto["stopping"]),
        select_rule=rule_from(proto.get("selection", proto["stopping"])),
        val_fraction=float(pr.get("val_fraction", 0.1)), device=pr.get("device", "cpu"),
        dtype=pr.get("dtype", "float64"), engine=pr.get("engine", "torch"),
        select_each_seed=pr.get("select_on", "each") == "each")
    seeds_out = [r.as_dict() for r in results]
    return {"cell": cell, "lam": lam, "seeds": seeds_out, "summary": summarize_seeds(seeds_out),
            "wall_time_s": time.perf_counter() - t0}


def _fmt_list(values: Sequence[Any]) -> str:
    return ";".join("-" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def summarize_seeds(seeds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, min and max over seeds of the test error, effective rank and the two refit errors (a record
    written before the rank refit existed has NaN there); the chosen η, iterations and statuses per seed
    (';'-joined)."""
    def stats(key: str) -> tuple[float, float, float]:
        a = np.array([float(s.get(key, math.nan)) for s in seeds], dtype=float)
        if a.size == 0 or np.all(np.isnan(a)):
            return (math.nan,) * 3
        a = a[~np.isnan(a)]
        return float(np.mean(a)), float(np.min(a)), float(np.max(a))

    te, er, rf, rm = stats("test_error"), stats("erank"), stats("refit_test_error"), stats("test_rmse")
    rr = stats("rank_refit_test_error")
    return {"n_seeds": len(seeds), "err_mean": te[0], "err_min": te[1], "err_max": te[2],
            "rmse_mean": rm[0], "rmse_min": rm[1], "rmse_max": rm[2],
            "erank_mean": er[0], "erank_min": er[1], "erank_max": er[2],
            "refit_err_mean": rf[0], "refit_err_min": rf[1], "refit_err_max": rf[2],
            "rank_refit_err_mean": rr[0], "rank_refit_err_min": rr[1], "rank_refit_err_max": rr[2],
            "lr_chosen": _fmt_list([s["lr"] for s in seeds]),
            "iterations": _fmt_list([s["iterations"] for s in seeds]),
            "status": _fmt_list([s["status"] for s in seeds])}


def cell_id(cell: dict[str, Any]) -> str:
    """A file-name-safe id of a cell."""
    parts = [f"{k}={cell[k]}" for k in sorted(cell)]
    return "_".join(parts).replace("/", "-").replace(":", "-")


class JobBackend(Protocol):
    """Where :func:`run_jobs` runs cells in parallel: ``submit(fn, *args)`` returns a future,
    ``as_completed(futures)`` yields them as they finish, ``close(wait=False)`` stops the running ones at once
    (e.g. :class:`flowsim.sweep.runner.LocalBackend`, whose workers exit when the parent dies)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def as_completed(self, futures: Sequence[Any]) -> Iterator[Any]: ...

    def close(self, wait: bool = True) -> None: ...


def run_jobs(
    cells: Sequence[dict[str, Any]],
    job: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
    proto: dict[str, Any],
    out: Path,
    backend: JobBackend | None = None,
    log: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """Run ``job(cell, proto)`` for every cell not yet in ``out/cells/`` — one after the other, or on
    ``backend`` —; each record is written atomically as it finishes, so an interrupted run resumes where it
    stopped. A cell whose job raises is not recorded and does not stop the others; when all have run,
    :class:`flowsim.errors.RunFailedError` names the failed cells. SIGINT/SIGTERM (``KeyboardInterrupt``)
    stop the backend's running cells at once and propagate; the finished cells are kept."""
    folder = out / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for c in cells:
        path = folder / f"{cell_id(c)}.json"
        if path.is_file():
            records[cell_id(c)] = read_json(path)
        else:
            todo.append(c)
    if log and len(todo) < len(cells):
        log(f"{len(cells) - len(todo)} cells already done in {folder}")

    def done(c: dict[str, Any], rec: dict[str, Any]) -> None:
        atomic_write_json(folder / f"{cell_id(c)}.json", rec)
        records[cell_id(c)] = rec
        if log:
            s = rec["summary"]
            log(f"[{len(records)}/{len(cells)}] {cell_id(c)}: err {s['err_mean']:.3g} erank "
                f"{s['erank_mean']:.3g} η {s['lr_chosen']} iters {s['iterations']} "
                f"({rec['wall_time_s']:.0f} s)")

    failed: list[str] = []

    def fail(c: dict[str, Any], exc: Exception) -> None:
        failed.append(f"{cell_id(c)}: {type(exc).__name__}: {exc}".splitlines()[0])
        if log:
            log(f"cell {failed[-1]} (not recorded; the same command retries it)")

    if backend is None or len(todo) <= 1:
        for c in todo:
            try:
                rec = job(c, proto)
            except Exception as exc:  # noqa: BLE001 - one failing cell must not stop the others
                fail(c, exc)
                continue
            done(c, rec)
    else:
        interrupted = False
        try:
            futures = {backend.submit(job, c, proto): c for c in todo}
            for fut in backend.as_completed(list(futures)):
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 - as above
                    fail(futures[fut], exc)
                    continue
                done(futures[fut], rec)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            backend.close(wait=not interrupted)
    if failed:
        raise RunFailedError(f"{len(failed)} of {len(cells)} cells failed (the others are kept in {folder}): "
                             + "; ".join(failed))
    return [records[cell_id(c)] for c in cells]


def with_verdicts(records: Sequence[dict[str, Any]], published: dict[tuple, tuple[float, float]]
                  ) -> list[dict[str, Any]]:
    """Flat CSV rows: the cell, the published (Err, Rk), our summary and the verdict
    (:func:`flowsim.validation.reproduce.verdict`)."""
    rows = []
    for rec in records:
        c, s = rec["cell"], rec["summary"]
        key = (c["optimizer"], int(c["depth"]), c["penalty"])
        p_err, p_rank = published.get(key, (math.nan, math.nan))
        v = verdict(p_err, p_rank, s["err_mean"], s["erank_mean"]) if np.isfinite(p_err) else ""
        rows.append({**c, "lam": rec["lam"], "paper_err": p_err, "paper_rank": p_rank, **s, "verdict": v,
                     "wall_time_s": round(float(rec["wall_time_s"]), 1)})
    return rows


def measure_step_cost(
    m: int, depth: int, optimizer: str, penalty: str, batch: int, steps: int = 30, dtype: str = "float64"
) -> float:
    """CPU seconds per iteration of a batch of ``batch`` runs (m×m, rank-5-like problem, one torch thread),
    measured over ``steps`` iterations after one warm-up step. CPU time, not wall time: it is the wall time
    on an idle core, and stays meaningful on a shared machine."""
    import torch

    from ..factors import prefix_products
    from .batched import BatchedProblems, layer_gradients, resolve_dtype
    from .optimizers import make_optimizer

    torch.set_num_threads(1)
    prob = synthetic_problem(m, m, min(5, m), max(1, m * m // 5), 0)
    dt = resolve_dtype(dtype)
    pen = None if penalty == "none" else make_penalty(penalty)
    bp = BatchedProblems.stack([prob] * batch, pen, [1e-2 if pen else 0.0] * batch, torch.device("cpu"), dt)
    fs = [init_factors("gaussian", (m, m), depth, 1e-3, s) for s in range(batch)]
    params = [torch.as_tensor(np.stack([f[j] for f in fs]), dtype=dt) for j in range(depth)]
    opt = make_optimizer(optimizer, params, [1e-3] * batch)
    t = 0.0
    for i in range(steps + 1):
        if i == 1:
            t = time.process_time()
        pre = prefix_products(params, identity=False)
        _, G = bp.loss_and_grad(pre[-1])
        opt.step(layer_gradients(params, G, pre))
    return (time.process_time() - t) / steps


def experiment_dir(path: str | Path) -> Path:
    """The output folder of a resumable experiment: created when missing, reused when it exists (finished
    cells are kept); a file in its place, or a folder that cannot be created or written, is bad input."""
    out = Path(path)
    if not str(path).strip():
        raise BadInputError("--out must be a folder path, got an empty string")
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"--out {out} cannot be created ({exc.strerror or type(exc).__name__})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise BadInputError(f"--out {out} is not writable")
    return out


def cpu_count() -> int:
    """CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
