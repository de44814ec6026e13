"""Batched ensembles: B independent layer-wise gradient flows of the same shape (different problems, seeds,
λ, initializations) integrated together, each with its own DOP853 step-size control.

Two engines:

* ``"numba"``: the compiled engine (:mod:`flowsim.integrator.compiled`), the batch split into ``threads``
  slices integrated at the same time (the compiled kernels release the GIL); every flow takes exactly the
  steps it would take alone, so each trajectory equals the one of
  ``simulate(LayerwiseFlow(..., engine="numba"), ...)`` bit for bit. Budgets (``max_steps``,
  ``max_wall_time``) and Ctrl-C are checked between chunks of steps and apply to every flow still running.
* ``"torch"``: a DOP853 vectorized over the batch (:mod:`flowsim.ensemble_torch`), each flow with its own
  step size, on the CPU or a CUDA device (``device``); the trajectories agree with the scipy and numba
  engines to the tolerance (the sums run in another order). Budgets are checked after every step attempt.

``engine="auto"`` takes torch on a CUDA device, else numba when it is installed, else torch.

Example::

    problems = [synthetic_problem(10, 10, rank=2, observed=50, seed=s) for s in range(256)]
    flows = [LayerwiseFlow(p, depth=3) for p in problems]
    factors = [init_factors("gaussian", (10, 10), 3, 1e-3, seed=s) for s in range(256)]
    trajectories = simulate_ensemble(flows, factors, t_end=1e4)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import BadInputError
from .factors import end_product
from .flows.gf import LayerwiseFlow
from .integrator import BLOWUP, MAX_NONFINITE_EVALS, MIN_RTOL, IntegrationResult, log_time_grid
from .simulate import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_T_END
from .trajectory import Trajectory

#: accepted steps per flow between two checks of the budgets and of Ctrl-C (numba engine)
ENSEMBLE_CHUNK_STEPS = 512
ENSEMBLE_ENGINES = ("auto", "numba", "torch")
ENSEMBLE_DEVICES = ("auto", "cpu", "cuda")


def simulate_ensemble(
    flows: Sequence[LayerwiseFlow],
    factors_list: Sequence[Sequence[np.ndarray]],
    t_end: float = DEFAULT_T_END,
    *,
    t_eval: np.ndarray | None = None,
    n_save: int = 200,
    t_min: float | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    max_steps: int | None = None,
    max_wall_time: float | None = None,
    save_matrices: bool = False,
    threads: int | None = None,
    engine: str = "auto",
    device: str = "auto",
) -> list[Trajectory]:
    """Integrate every ``flows[b]`` from ``factors_list[b]`` to ``t_end`` in one batched solve and return
    one :class:`Trajectory` per flow (same contract and saving times as :func:`flowsim.simulate`).

    All flows must be :class:`LayerwiseFlow` with layer factors of the same shapes; problems, penalties
    (none, ratio, nuclear, Schatten), λ and initial factors may differ. ``threads``: on the numba engine
    the number of slices of the batch run concurrently (default: the number of CPU cores), on the torch
    engine the number of torch CPU threads during the solve (default: torch's setting). ``engine`` is
    ``"numba"``, ``"torch"`` or ``"auto"`` (see the module docstring), ``device`` (torch engine) ``"auto"``
    (CUDA when available, else the CPU), ``"cpu"`` or ``"cuda"``. Raises :class:`BadInputError` for flows
    that cannot be batched, an unknown engine or device, or ``device="cuda"`` without a CUDA device, and
    ImportError for ``engine="numba"`` without numba.
    """
    if engine not in ENSEMBLE_ENGINES:
        raise BadInputError(f"engine must be one of {'|'.join(ENSEMBLE_ENGINES)}, got {engine!r}")
    if len(flows) != len(factors_list) or not flows:
        raise BadInputError("simulate_ensemble needs one list of factors per flow, and at least one flow")
    if not all(isinstance(f, LayerwiseFlow) for f in flows):
        raise BadInputError("simulate_ensemble integrates LayerwiseFlow models only")
    grid = log_time_grid(t_end, n_save, t_min, 0.0) if t_eval is None else np.asarray(t_eval, dtype=float)
    if grid.ndim != 1 or grid.size < 1 or np.any(np.diff(grid) <= 0) or not np.all(np.isfinite(grid)):
        raise BadInputError("saving times must be finite and strictly increasing")
    if ensemble_engine(engine, device) == "torch":
        results = _solve_torch(flows, factors_list, grid, rtol, atol, max_steps, max_wall_time, device,
                               threads)
    else:
        results = _solve_numba(flows, factors_list, grid, rtol, atol, max_steps, max_wall_time, threads)
    return [trajectory_from_result(flow, res, factors, save_matrices)
            for flow, factors, res in zip(flows, factors_list, results)]


def ensemble_engine(engine: str = "auto", device: str = "auto") -> str:
    """The engine :func:`simulate_ensemble` runs: ``engine`` itself unless ``"auto"``, which means torch
    when ``device`` resolves to CUDA, else numba when it is installed, else torch. ``device="cuda"``
    without a CUDA device is a :class:`BadInputError` (also for engine numba, which runs on the CPU)."""
    from .integrator.compiled import numba_available

    if device not in ENSEMBLE_DEVICES:
        raise BadInputError(f"device must be one of {'|'.join(ENSEMBLE_DEVICES)}, got {device!r}")
    if engine == "numba" and device == "cuda":
        raise BadInputError("engine 'numba' runs on the CPU; use engine 'torch' or 'auto' for device 'cuda'")
    if engine == "torch" or device == "cuda":
        if device == "cuda":
            from .ensemble_torch import resolve_device

            resolve_device(device)  # raises without a CUDA device
        return "torch"
    if engine == "numba":
        return "numba"
    if device == "auto" and _cuda_available():
        return "torch"
    return "numba" if numba_available() else "torch"


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _solve_torch(flows: Sequence[LayerwiseFlow], factors_list: Sequence[Sequence[np.ndarray]],
                 grid: np.ndarray, rtol: float, atol: float, max_steps: int | None,
                 max_wall_time: float | None, device: str, threads: int | None) -> list[IntegrationResult]:
    """The torch engine: one vectorized DOP853 over the batch (:func:`flowsim.ensemble_torch.solve_batch`),
    with ``threads`` torch CPU threads during the solve (torch's own setting when None)."""
    import torch

    from .ensemble_torch import BatchField, resolve_device, solve_batch

    dev = resolve_device(device)
    for name, v in (("--rtol", rtol), ("--atol", atol)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise BadInputError(f"{name} must be a finite number > 0, got {v!r}")
    rtol_used = max(float(rtol), MIN_RTOL)
    y0s = [f.initial_state(fac) for f, fac in zip(flows, factors_list)]
    dims = [f.packer.dims for f in flows]  # type: ignore[union-attr]
    if any(d != dims[0] for d in dims):
        raise BadInputError("simulate_ensemble needs flows whose layer factors have the same shapes")
    field = BatchField.build([f.problem for f in flows], dims[0], [f.penalty for f in flows],
                             [f.lam for f in flows], dev)
    start = time.perf_counter()
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    try:
        st = solve_batch(field, np.array(y0s, dtype=float), grid, rtol=rtol_used, atol=float(atol),
                         max_steps=max_steps, max_wall_time=max_wall_time, blowup=BLOWUP,
                         max_nonfinite=MAX_NONFINITE_EVALS)
    finally:
        torch.set_num_threads(before)
    wall = time.perf_counter() - start
    out = []
    for b in range(len(flows)):
        res = _torch_result(st, b, grid, rtol_used, float(atol), wall)
        res.extra.update(engine="torch", device=str(dev), ensemble_size=len(flows))
        out.append(res)
    return out


def _torch_result(st, b: int, grid: np.ndarray, rtol: float, atol: float, wall: float) -> IntegrationResult:
    """The :class:`IntegrationResult` of flow ``b`` of a torch batch, with the statuses and messages of the
    scipy and numba engines."""
    from . import ensemble_torch as _e

    code, t_now, nsteps = int(st.code[b]), float(st.t[b]), int(st.nsteps[b])
    status, message = st.status[b], st.message[b]
    seen = not math.isnan(st.t_nonfinite[b])
    note = f"; the velocity was first non-finite at t={st.t_nonfinite[b]:.6g}" if seen else ""
    if status is None:
        status, message = "ok", "reached t_end"
        if code == _e.INITIAL_NONFINITE:
            status, message = "diverged", f"the velocity is not finite at the initial time t={grid[0]:g}"
        elif code == _e.TOO_SMALL:
            status = "diverged" if seen else "failed"
            message = f"integrator failed at t={t_now:.6g} (step {nsteps + 1}): {_e.TOO_SMALL_STEP}{note}"
        elif code == _e.STATE_DIVERGED:
            status = "diverged"
            message = (f"state became non-finite or exceeded {BLOWUP:.0e} at t={t_now:.6g} (step {nsteps}); "
                       f"last good time t={st.t_prev[b]:.6g}")
        elif code == _e.NONFINITE_STREAK:
            status = "diverged"
            message = (f"the velocity stayed non-finite for {MAX_NONFINITE_EVALS} evaluations after "
                       f"t={t_now:.6g} (step {nsteps}){note}")
    n_saved = int(st.k_save[b])
    return IntegrationResult(
        t=grid[:n_saved].copy(), y=st.ys[b, :n_saved].copy(), status=status, message=message, t_last=t_now,
        nfev=int(st.nfev[b]), njev=0, nlu=0, nsteps=nsteps, method="DOP853", rtol=rtol, atol=atol,
        wall_time_s=wall, y_last=st.y[b].copy(),
    )


def _solve_numba(flows: Sequence[LayerwiseFlow], factors_list: Sequence[Sequence[np.ndarray]],
                 grid: np.ndarray, rtol: float, atol: float, max_steps: int | None,
                 max_wall_time: float | None, threads: int | None) -> list[IntegrationResult]:
    """The numba engine: the compiled DOP853 of every flow, ``threads`` slices of the batch at once."""
    from .integrator.compiled import numba_available

    if not numba_available():
        raise ImportError("simulate_ensemble with engine 'numba' needs numba (pip install numba)")
    from .integrator.compiled import batch
    from .integrator.compiled import dop853 as _d
    from .integrator.compiled.solve import FieldArrays, budget_exhausted, check_tolerances, make_result

    y0s = [f.initial_state(fac) for f, fac in zip(flows, factors_list)]
    fields = [FieldArrays.build(f.problem, f.packer.dims, f.penalty, f.lam) for f in flows]  # type: ignore
    dims = fields[0].dims
    if any(not np.array_equal(fa.dims, dims) for fa in fields):
        raise BadInputError("simulate_ensemble needs flows whose layer factors have the same shapes")
    rtol_used = check_tolerances(rtol, atol)
    start_time = time.perf_counter()
    B, n = len(flows), y0s[0].size
    Y = np.array(y0s, dtype=float)
    YS = np.zeros((B, grid.size, n))
    YS[:, 0] = Y
    Fv = np.empty_like(Y)
    FST = np.tile(np.array([grid[0], 0.0, np.nan, grid[0]]), (B, 1))
    IST = np.zeros((B, 5), dtype=np.int64)
    IST[:, _d.K_SAVE] = 1
    weights = np.array([fa.weight for fa in fields])
    w_stars = np.array([fa.w_star for fa in fields])
    pens = np.array([fa.pen for fa in fields])
    codes = np.full(B, _d.RUNNING, dtype=np.int64)
    bad_start = ~np.all(np.isfinite(Y), axis=1) | (np.max(np.abs(Y), axis=1, initial=0.0) > BLOWUP)
    codes[bad_start] = _d.FINISHED
    statuses: list[str | None] = [None] * B
    messages = [""] * B
    for b in np.nonzero(bad_start)[0]:
        statuses[b] = "diverged"
        messages[b] = f"the initial state is not finite or exceeds {BLOWUP:.0e} (t={grid[0]:g})"
    if grid[-1] <= grid[0]:
        codes[:] = _d.FINISHED
    n_threads = max(1, min(B, threads or os.cpu_count() or 1))
    bounds = np.linspace(0, B, n_threads + 1).astype(int)
    slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            offs = fields[0].offs

            def start_slice(s: slice) -> None:
                batch.start_many(Y[s], Fv[s], FST[s], IST[s], codes[s], grid[-1], dims, offs, weights[s],
                                 w_stars[s], pens[s], rtol_used, atol, np.inf, MAX_NONFINITE_EVALS)

            def advance_slice(s: slice) -> None:
                batch.advance_many(Y[s], Fv[s], FST[s], IST[s], codes[s], grid, YS[s], dims, offs, weights[s],
                                   w_stars[s], pens[s], rtol_used, atol, np.inf, BLOWUP, MAX_NONFINITE_EVALS,
                                   limit)

            run_slices(start_slice, slices)
            while np.any(codes == _d.RUNNING):
                running = codes == _d.RUNNING
                limit = ENSEMBLE_CHUNK_STEPS
                if max_steps is not None:
                    limit = min(limit, max_steps - int(IST[running, _d.NSTEPS].max()))
                run_slices(advance_slice, slices)
                for b in np.nonzero(codes == _d.RUNNING)[0]:
                    status, message = budget_exhausted(max_steps, max_wall_time, start_time, FST[b, _d.T_NOW],
                                                       int(IST[b, _d.NSTEPS]))
                    if status is not None:  # this flow stops; the others go on
                        statuses[b], messages[b] = status, message
                        codes[b] = _d.FINISHED
    except KeyboardInterrupt:
        for b in np.nonzero(codes == _d.RUNNING)[0]:
            statuses[b] = "interrupted"
            messages[b] = (f"interrupted by the user at t={FST[b, _d.T_NOW]:.6g} "
                           f"(step {int(IST[b, _d.NSTEPS])})")
    wall = time.perf_counter() - start_time
    out = []
    for b in range(B):  # type: ignore[assignment]  # (b was a numpy integer above)
        res = make_result(int(codes[b]), statuses[b], messages[b], grid, YS[b], Y[b], FST[b], IST[b],
                          rtol_used, atol, BLOWUP, wall)
        res.extra["ensemble_size"] = B
        out.append(res)
    return out


def run_slices(call: Callable[[slice], None], slices: list[slice]) -> None:
    """``call(sl)`` for every slice of the batch, one thread per slice (the compiled kernels release the
    GIL, so the slices run at the same time)."""
    if len(slices) == 1:
        call(slices[0])
        return
    with ThreadPoolExecutor(len(slices)) as pool:
        list(pool.map(call, slices))


def trajectory_from_result(flow: LayerwiseFlow, res: IntegrationResult, factors: Sequence[np.ndarray],
                           save_matrices: bool = False) -> Trajectory:
    """The :class:`Trajectory` of one integration result, with the statistics :func:`flowsim.simulate`
    records."""
    stats = res.stats()
    stats["integration_nfev"] = res.nfev
    stats["formulation"] = flow.model
    return Trajectory.from_snapshots(res.t, [flow.end_product(y) for y in res.y], flow.problem,
                                     save_matrices=save_matrices, status=res.status, message=res.message,
                                     stats=stats, W0=end_product(factors))
