"""Discrete full-batch training of the layer factors (torch or numba engine), B runs at once
(docs/math.md §11).

Each run k-th iterate W_j^{(k)} is mapped to the flow time t_k = kη (docs/math.md §11). Metrics (docs/math.md
§2) are recorded on a log-spaced iteration grid only (one batched SVD per recorded iteration, none in
between), and returned as :class:`flowsim.trajectory.Trajectory` objects, the same contract as the flows
(docs/contract.md).

The iterations run in one of two engines with the same operations in the same order: batched torch tensors
(any device, float32 or float64) or a compiled numba loop over the runs (CPU float64; ~100× faster per
step on 10×10 and 2.5–3× on 100×100 at depth 3, bench/bench_discrete.py). ``engine="auto"`` picks numba
where it applies.

Divergence: a run whose objective becomes non-finite or exceeds ``BLOWUP`` is marked at the exact
iteration (tracked on the device without a host sync) and stops being recorded; the check that reads the
marks back runs every ``check_every`` iterations and at every recorded iteration. The other runs of a
batch go on (their slices never mix). Ctrl-C returns what was recorded, with status ``interrupted``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from flowsim.errors import BadInputError
from flowsim.factors import end_product, layer_dims
from flowsim.penalties import Penalty
from flowsim.problems import CompletionProblem
from flowsim.trajectory import Trajectory

from .batched import BatchedProblems, TorchRuns, resolve_device, resolve_dtype, to_numpy
from .compiled_runs import CompiledRuns, choose_engine
from .optimizers import make_optimizer

BLOWUP = 1e100


def record_iterations(iters: int, n_record: int = 200) -> np.ndarray:
    """Iterations at which metrics are recorded: 0, then ``n_record`` log-spaced integers in [1, iters]
    (duplicates removed), always ending at ``iters``."""
    if iters < 0:
        raise BadInputError(f"--iters must be ≥ 0, got {iters}")
    if iters == 0:
        return np.array([0])
    grid = np.unique(np.round(np.geomspace(1, iters, max(int(n_record), 1))).astype(np.int64))
    return np.unique(np.concatenate([[0], grid, [iters]]))


def _as_list(x: Any, B: int, name: str) -> list:
    if isinstance(x, (list, tuple, np.ndarray)):
        if len(x) != B:
            raise BadInputError(f"{name}: expected {B} values (one per run), got {len(x)}")
        return list(x)
    return [x] * B


def train_batched(
    problems: CompletionProblem | Sequence[CompletionProblem],
    factors: Sequence[Sequence[np.ndarray]],
    *,
    optimizer: str = "gd",
    lr: float | Sequence[float] = 0.01,
    iters: int = 1000,
    penalty: Penalty | None = None,
    lam: float | Sequence[float] = 0.0,
    hyper: dict[str, Any] | None = None,
    n_record: int = 200,
    record_iters: Sequence[int] | None = None,
    device: str = "auto",
    dtype: str = "float64",
    save_matrices: bool = False,
    check_every: int = 50,
    progress: bool | None = None,
    engine: str = "auto",
) -> list[Trajectory]:
    """Train B runs together and return one :class:`Trajectory` per run (t_k = kη_b).

    ``factors`` holds the B initial factor lists (all with the same layer shapes); ``problems`` is one
    problem shared by all runs or B problems of one shape; ``lr``, ``lam`` and every entry of ``hyper``
    may be one number or B numbers. ``record_iters`` overrides the log-spaced grid of ``n_record`` points.
    Runs that diverge stop being recorded (status ``diverged``, message with the iteration).

    ``engine``: ``torch`` (batched tensors, any device and dtype), ``numba`` (compiled loop over the runs,
    CPU float64, :mod:`flowsim.validation.compiled_runs`) or ``auto`` (numba for CPU float64 runs of layers
    up to ``AUTO_MAX_DIM`` wide with a compiled penalty when numba is installed, else torch). Both engines do
    the same operations in the same order; their trajectories agree to round-off. ``stats['engine']`` records
    which one ran and ``stats['engine_note']`` why.

    Example::

        problem = synthetic_problem(20, 20, rank=2, observed=200, seed=0)
        inits = [init_factors("gaussian", problem.shape, 3, 1e-3, seed=s) for s in range(8)]
        trajs = train_batched(problem, inits, optimizer="adam", lr=0.01, iters=5000)
    """
    start = time.perf_counter()
    B = len(factors)
    if B < 1:
        raise BadInputError("at least one run is needed")
    probs = list(problems) if isinstance(problems, (list, tuple)) else [problems] * B
    if len(probs) != B:
        raise BadInputError(f"expected {B} problems (one per run), got {len(probs)}")
    if not isinstance(iters, (int, np.integer)) or iters < 0:
        raise BadInputError(f"--iters must be an integer ≥ 0, got {iters!r}")
    dims = layer_dims(factors[0])
    for f in factors:
        if layer_dims(f) != dims:
            raise BadInputError("batched runs need factors of the same layer shapes")
    if (dims[-1], dims[0]) != probs[0].shape:
        raise BadInputError(
            f"factors give a {dims[-1]}×{dims[0]} end product, the problem is {probs[0].shape}"
        )
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    lrs = [float(x) for x in _as_list(lr, B, "lr")]
    lams = [float(x) for x in _as_list(lam, B, "lam")]
    bp = BatchedProblems.stack(probs, penalty, lams, dev, dt)
    params = [
        torch.as_tensor(np.stack([np.asarray(f[j], dtype=float) for f in factors]), dtype=dt, device=dev)
        for j in range(len(dims) - 1)
    ]
    opt = make_optimizer(optimizer, params, lrs, **(hyper or {}))
    rec = record_iterations(iters, n_record) if record_iters is None else np.unique(np.asarray(record_iters))
    if rec.size == 0 or rec[0] < 0 or rec[-1] > iters:
        raise BadInputError(f"recorded iterations must lie in [0, {iters}]")
    if not isinstance(check_every, (int, np.integer)) or check_every < 1:
        raise BadInputError(f"--check-every must be an integer ≥ 1, got {check_every!r}")
    engine_used, engine_note = choose_engine(engine, dev, dt, bp, dims)
    runs: TorchRuns | CompiledRuns = (
        CompiledRuns(factors, bp, opt, BLOWUP) if engine_used == "numba" else TorchRuns(params, bp, opt)
    )
    rec_set = set(int(k) for k in rec)
    k_end = int(rec[-1])

    records: list[dict[str, np.ndarray]] = []
    rec_k: list[int] = []
    snapshots: list[np.ndarray] = []
    W0 = None
    last_W: np.ndarray | None = None  # end product of each run at its last recorded iteration
    alive = np.ones(B, dtype=bool)
    status, message = ["ok"] * B, [f"completed {iters} iterations"] * B
    last_rec_alive = np.zeros(B, dtype=np.int64)
    bar = _progress(progress, k_end)
    k = 0
    interrupted = False
    try:
        runs.start()
        while True:
            # every landing point is a check point: a recorded iteration, a multiple of check_every, k_end
            fb = runs.bad_iterations()
            newly = alive & (fb >= 0)
            for b in np.flatnonzero(newly):
                alive[b] = False
                status[b] = "diverged"
                message[b] = (
                    f"objective became non-finite or exceeded {BLOWUP:.0e} at iteration {fb[b]} "
                    f"(t={fb[b] * lrs[b]:.6g}); last recorded iteration {last_rec_alive[b]}"
                )
            if not alive.any():
                break
            if k in rec_set:
                W = torch.as_tensor(runs.end_products(), device=dev)
                if W0 is None:
                    W0 = to_numpy(W)
                records.append(bp.metrics(W))
                rec_k.append(k)
                last_rec_alive[alive] = k
                W_np = to_numpy(W)
                last_W = W_np if last_W is None else np.where(alive[:, None, None], W_np, last_W)
                if save_matrices:
                    snapshots.append(W_np)
                if bar is not None:
                    bar.update(k - bar.n)
            if k >= k_end:
                break
            k = _next_landing(k, rec, check_every, k_end)
            runs.advance(k)
    except KeyboardInterrupt:
        interrupted = True
        k = runs.k
        for b in np.flatnonzero(alive):
            status[b] = "interrupted"
            message[b] = f"interrupted by the user at iteration {k} (t={k * lrs[b]:.6g})"
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    W_last = last_W
    out = []
    for b in range(B):
        n_ok = sum(1 for kk in rec_k if kk <= last_rec_alive[b]) if status[b] == "diverged" else len(rec_k)
        n_ok = max(n_ok, 0)
        ks = np.array(rec_k[:n_ok], dtype=np.int64)
        arr = {key: np.array([r[key][b] for r in records[:n_ok]]) for key in (records[0] if records else {})}
        m_, n_ = probs[b].shape
        sigma = arr.get("sigma", np.zeros((0, min(m_, n_)))).reshape(len(ks), min(m_, n_))
        W_final = W_last[b] if (W_last is not None and n_ok) else end_product(factors[b])
        stats = {
            "optimizer": opt.describe() | {"lr": lrs[b]},
            "lam": lams[b],
            "iterations": int(k),
            "iterations_requested": int(iters),
            "recorded": int(n_ok),
            "batch_size": B,
            "device": str(dev),
            "dtype": str(dt).replace("torch.", ""),
            "engine": engine_used,
            "engine_note": engine_note,
            "train_wall_time_s": wall,
            "iterations_per_s": k / wall if wall > 0 else float("nan"),
        }
        out.append(
            Trajectory(
                t=ks * lrs[b],
                sigma=sigma,
                loss=arr.get("loss", np.zeros(0)),
                test_error=arr.get("test_error", np.zeros(0)),
                test_rmse=arr.get("test_rmse", np.zeros(0)),
                erank=arr.get("erank", np.zeros(0)),
                norm_fro=arr.get("norm_fro", np.zeros(0)),
                norm_nuc=arr.get("norm_nuc", np.zeros(0)),
                norm_spec=arr.get("norm_spec", np.zeros(0)),
                det=arr.get("det"),
                W0=W0[b] if W0 is not None else np.asarray(end_product(factors[b])),
                W_star=probs[b].W_star.copy(),
                mask=probs[b].mask.copy(),
                W_final=W_final,
                W=np.array([s[b] for s in snapshots[:n_ok]]).reshape(n_ok, m_, n_) if save_matrices else None,
                extra={"iteration": ks},
                status=status[b],
                message=message[b],
                stats=stats,
            )
        )
    if interrupted:
        for tr in out:
            tr.stats["interrupted"] = True
    return out


def _next_landing(k: int, rec: np.ndarray, check_every: int, k_end: int) -> int:
    """The next iteration after k where the loop stops to check divergence: the next recorded iteration,
    the next multiple of ``check_every`` or ``k_end``, whichever comes first."""
    i = int(np.searchsorted(rec, k, side="right"))
    nxt = int(rec[i]) if i < rec.size else k_end
    return min(nxt, (k // check_every + 1) * check_every, k_end)


def train(
    problem: CompletionProblem,
    factors: Sequence[np.ndarray],
    *,
    optimizer: str = "gd",
    lr: float = 0.01,
    iters: int = 1000,
    penalty: Penalty | None = None,
    lam: float = 0.0,
    **kwargs: Any,
) -> Trajectory:
    """One discrete run (B = 1 of :func:`train_batched`); returns its :class:`Trajectory` with t_k = kη.

    Example::

        traj = train(problem, init_factors("balanced-gaussian", problem.shape, 3, 1e-3), lr=0.01, iters=10**4)
    """
    return train_batched(
        problem, [factors], optimizer=optimizer, lr=lr, iters=iters, penalty=penalty, lam=lam, **kwargs
    )[0]


def _progress(enabled: bool | None, total: int):
    import sys

    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, delay=2.0, desc="training", unit="it", leave=False)
