"""flowsim against the peer ODE libraries on the same layer-wise gradient flow (ACH18 Eq. 3).

    python bench/bench_peers.py [--rounds 3] [--cases default,small,ensemble] [--batch 256] [--loop 16]
                                [--ensemble-rounds 1]

Cases (depth 3, t_end = 1e4, rtol 1e-7, atol 1e-10, 200 log-spaced saving times, ``gaussian`` init 1e-3):

* ``default`` — the default problem, 100×100, rank 5, 2000 observed entries;
* ``small`` — 10×10, rank 2, 50 observed entries;
* ``ensemble`` — ``--batch`` problems of the small shape (seeds 0…B−1): ``simulate_ensemble`` on its numba
  engine (one thread, and one thread per core) and on its torch engine (CPU, one thread), against a loop of
  ``simulate`` calls on the scipy engine and on the compiled engine (the loops run over the first
  ``--loop`` problems and are scaled to B, said in the table) and against diffrax ``Tsit5`` under
  ``jax.vmap`` + ``jax.jit`` (all B problems in one solve, compile time apart), ``--ensemble-rounds``
  interleaved rounds.

Contestants of the single-flow cases, timed in interleaved rounds (one of each per round) with one BLAS
thread: flowsim ``simulate`` with ``engine="scipy"`` and with the automatic engine (compiled for small
states; the compiled engine forced as well where auto picks scipy), a hand-written ``solve_ivp`` script
(the field in 8 lines, DOP853, the same ``t_eval``; it computes only the final σ), torchdiffeq ``dopri8``
and diffrax ``Dopri8``/``Tsit5`` under ``jax.jit`` (compile time, first call minus the median of later
calls, reported apart) when installed (``pip install flowsim[peers]``).
The table gives the minimum and median wall time, the ratio of each to the script's (min/min, median/median),
the minimum process CPU time and its ratio to the script's (the measure that a loaded machine inflates
least: one BLAS thread, so CPU time is the work done), evaluations, and the agreement
max_i |σ_i − σ_i(script)| / σ_1 of the final singular values.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable

import _common  # noqa: F401  (pins the BLAS threads before numpy is imported)

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np
from scipy.integrate import solve_ivp

from flowsim import LayerwiseFlow, init_factors, simulate, synthetic_problem
from flowsim.integrator import engine_for, log_time_grid

DEPTH, T_END, RTOL, ATOL, N_SAVE, INIT_SCALE = 3, 1e4, 1e-7, 1e-10, 200, 1e-3
CASES = {"default": (100, 5, 2000), "small": (10, 2, 50)}


def setup(size: int, rank: int, observed: int, seed: int = 0):
    problem = synthetic_problem(size, size, rank, observed, seed=seed)
    return problem, init_factors("gaussian", problem.shape, DEPTH, INIT_SCALE, seed=seed)


def sigma_of(y: np.ndarray, shapes: list[tuple[int, int]]) -> np.ndarray:
    """Singular values of W_N⋯W_1 from a flat state."""
    offs = np.cumsum([0] + [a * b for a, b in shapes])
    W = y[offs[0]:offs[1]].reshape(shapes[0])
    for j in range(1, len(shapes)):
        W = y[offs[j]:offs[j + 1]].reshape(shapes[j]) @ W
    return np.linalg.svd(W, compute_uv=False)


# --- contestants: each returns (final σ, number of evaluations) -------------------------------------------

def run_flowsim(problem, factors, engine: str) -> tuple[np.ndarray, int]:
    traj = simulate(LayerwiseFlow(problem, DEPTH, engine=engine), factors, T_END, n_save=N_SAVE, rtol=RTOL,
                    atol=ATOL)
    assert traj.status == "ok", traj.message
    return traj.sigma[-1], int(traj.stats["nfev"])


def run_script(problem, factors) -> tuple[np.ndarray, int]:
    """What a researcher writes in an afternoon: the layer-wise field for depth 3 and solve_ivp."""
    M, Ws = problem.mask.astype(float), problem.W_star
    c = 2 * problem.scale / problem.denominator
    shapes = [F.shape for F in factors]
    offs = np.cumsum([0] + [a * b for a, b in shapes])

    def field(t, y):
        W1, W2, W3 = (y[offs[j]:offs[j + 1]].reshape(shapes[j]) for j in range(3))
        P = W2 @ W1
        G = c * M * (W3 @ P - Ws)
        B = W3.T @ G
        return -np.concatenate([(W2.T @ B).ravel(), (B @ W1.T).ravel(), (G @ P.T).ravel()])

    y0 = np.concatenate([F.ravel() for F in factors])
    sol = solve_ivp(field, (0.0, T_END), y0, method="DOP853", rtol=RTOL, atol=ATOL,
                    t_eval=log_time_grid(T_END, N_SAVE))
    return sigma_of(sol.y[:, -1], shapes), int(sol.nfev)


def make_torchdiffeq(problem, factors) -> Callable[[], tuple[np.ndarray, int]]:
    import torch
    from torchdiffeq import odeint

    _common.set_torch_threads()
    M = torch.tensor(problem.mask, dtype=torch.float64)
    Ws = torch.tensor(problem.W_star)
    c = 2 * problem.scale / problem.denominator
    shapes = [F.shape for F in factors]
    offs = np.cumsum([0] + [a * b for a, b in shapes])
    count = [0]

    def field(t, y):
        count[0] += 1
        W1, W2, W3 = (y[offs[j]:offs[j + 1]].reshape(shapes[j]) for j in range(3))
        P = W2 @ W1
        G = c * M * (W3 @ P - Ws)
        B = W3.T @ G
        return -torch.cat([(W2.T @ B).reshape(-1), (B @ W1.T).reshape(-1), (G @ P.T).reshape(-1)])

    y0 = torch.tensor(np.concatenate([F.ravel() for F in factors]))
    ts = torch.tensor(log_time_grid(T_END, N_SAVE))

    def run():
        count[0] = 0
        with torch.no_grad():
            ys = odeint(field, y0, ts, method="dopri8", rtol=RTOL, atol=ATOL)
        return sigma_of(ys[-1].numpy(), shapes), count[0]

    return run


def make_diffrax(problem, factors, solver_name: str) -> Callable[[], tuple[np.ndarray, int]]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import diffrax
    import jax.numpy as jnp

    M = jnp.asarray(problem.mask, dtype=jnp.float64)
    Ws = jnp.asarray(problem.W_star)
    c = 2 * problem.scale / problem.denominator
    shapes = [F.shape for F in factors]
    offs = [int(v) for v in np.cumsum([0] + [a * b for a, b in shapes])]

    def field(t, y, args):
        W1, W2, W3 = (y[offs[j]:offs[j + 1]].reshape(shapes[j]) for j in range(3))
        P = W2 @ W1
        G = c * M * (W3 @ P - Ws)
        B = W3.T @ G
        return -jnp.concatenate([(W2.T @ B).ravel(), (B @ W1.T).ravel(), (G @ P.T).ravel()])

    solver = getattr(diffrax, solver_name)()
    ts = jnp.asarray(log_time_grid(T_END, N_SAVE))

    @jax.jit
    def solve(y0):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field), solver, t0=0.0, t1=T_END, dt0=None, y0=y0,
                                  saveat=diffrax.SaveAt(ts=ts),
                                  stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
                                  max_steps=10**6)
        return sol.ys[-1], sol.stats["num_steps"]

    y0 = jnp.asarray(np.concatenate([F.ravel() for F in factors]))
    stages = {"Dopri8": 13, "Tsit5": 6}[solver_name]  # evaluations per step (FSAL-aware)

    def run():
        y, steps = solve(y0)
        y.block_until_ready()
        return sigma_of(np.asarray(y), shapes), int(steps) * stages

    return run


# --- timing -----------------------------------------------------------------------------------------------

def interleaved(runs: dict[str, Callable], rounds: int, warm_up: bool = True) -> dict[str, dict]:
    """Each contestant once per round, in the same order every round, wall and process CPU time; the first
    call of each (warm-up, jit compilation) is timed apart (``warm_up=False``: only the contestants whose
    name says ``jit`` get a warm-up call)."""
    out: dict[str, dict] = {}
    for name, fn in runs.items():
        out[name] = {"first": float("nan"), "times": [], "cpu": [], "sigma": None, "nfev": 0}
        if warm_up or "jit" in name:
            t0 = time.perf_counter()
            sigma, nfev = fn()
            out[name].update(first=time.perf_counter() - t0, sigma=sigma, nfev=nfev)
    for _ in range(rounds):
        for name, fn in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            sigma, nfev = fn()
            out[name]["times"].append(time.perf_counter() - t0)
            out[name]["cpu"].append(time.process_time() - c0)
            out[name].update(sigma=sigma, nfev=nfev)
    return out


def single_case(case: str, rounds: int) -> str:
    size, rank, observed = CASES[case]
    problem, factors = setup(size, rank, observed)
    runs: dict[str, Callable] = {
        "hand-written solve_ivp script": lambda: run_script(problem, factors),
        "flowsim simulate, engine scipy": lambda: run_flowsim(problem, factors, "scipy"),
        "flowsim simulate, engine auto": lambda: run_flowsim(problem, factors, "auto"),
    }
    flow = LayerwiseFlow(problem, DEPTH)
    if engine_for(flow, flow.initial_state(factors).size) != "numba" and importlib.util.find_spec("numba"):
        runs["flowsim simulate, engine numba (forced)"] = lambda: run_flowsim(problem, factors, "numba")
    if importlib.util.find_spec("torchdiffeq"):
        runs["torchdiffeq dopri8"] = make_torchdiffeq(problem, factors)
    if importlib.util.find_spec("diffrax"):
        runs["diffrax Dopri8 (jit)"] = make_diffrax(problem, factors, "Dopri8")
        runs["diffrax Tsit5 (jit)"] = make_diffrax(problem, factors, "Tsit5")
    res = interleaved(runs, rounds)
    ref = res["hand-written solve_ivp script"]
    rows = []
    for name, r in res.items():
        tmin, tmed = min(r["times"]), statistics.median(r["times"])
        compile_s = r["first"] - tmed if "jit" in name else float("nan")
        agree = float(np.max(np.abs(r["sigma"] - ref["sigma"])) / ref["sigma"][0])
        cmin = min(r["cpu"])
        rows.append((name, tmin, tmed, tmin / min(ref["times"]), tmed / statistics.median(ref["times"]),
                     cmin, cmin / min(ref["cpu"]), r["nfev"], 1e6 * tmed / r["nfev"], compile_s, agree))
    head = (f"## {case}: {size}×{size}, rank {rank}, {observed} observed, depth {DEPTH}, t_end {T_END:g}, "
            f"{rounds} interleaved rounds, {_common.load_line()} (at the end)")
    return head + "\n\n" + _common.table(rows, (
        "contestant", "min s", "median s", "min / script", "median / script", "CPU min s", "CPU / script",
        "evaluations", "µs / eval", "compile s", "\\|Δσ\\|/σ₁ vs script"))


def make_diffrax_ensemble(specs: list) -> Callable[[], tuple[np.ndarray, int]]:
    """diffrax Tsit5 on all problems at once: the solve of :func:`make_diffrax` (per-flow step control)
    under ``jax.vmap`` over (W*, mask, c, y0), jitted; returns the final σ of every flow and the total
    number of evaluations."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import diffrax
    import jax.numpy as jnp

    shapes = [F.shape for F in specs[0][1]]
    offs = [int(v) for v in np.cumsum([0] + [a * b for a, b in shapes])]

    def field(t, y, args):
        M, Ws, c = args
        W1, W2, W3 = (y[offs[j]:offs[j + 1]].reshape(shapes[j]) for j in range(3))
        P = W2 @ W1
        G = c * M * (W3 @ P - Ws)
        B = W3.T @ G
        return -jnp.concatenate([(W2.T @ B).ravel(), (B @ W1.T).ravel(), (G @ P.T).ravel()])

    ts = jnp.asarray(log_time_grid(T_END, N_SAVE))

    def one(y0, M, Ws, c):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Tsit5(), t0=0.0, t1=T_END, dt0=None, y0=y0,
                                  args=(M, Ws, c), saveat=diffrax.SaveAt(ts=ts),
                                  stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
                                  max_steps=10**6)
        return sol.ys[-1], sol.stats["num_steps"]

    solve = jax.jit(jax.vmap(one))
    Y0 = jnp.asarray(np.array([np.concatenate([F.ravel() for F in f]) for _, f in specs]))
    Ms = jnp.asarray(np.array([p.mask.astype(float) for p, _ in specs]))
    Wss = jnp.asarray(np.array([p.W_star for p, _ in specs]))
    cs = jnp.asarray(np.array([2 * p.scale / p.denominator for p, _ in specs]))

    def run():
        Y, steps = solve(Y0, Ms, Wss, cs)
        Y.block_until_ready()
        return np.array([sigma_of(np.asarray(y), shapes) for y in Y]), int(np.sum(steps)) * 6

    return run


def ensemble_case(batch: int, loop: int, rounds: int) -> str:
    from flowsim.ensemble import simulate_ensemble

    size, rank, observed = CASES["small"]
    specs = [setup(size, rank, observed, seed=s) for s in range(batch)]
    cores = os.cpu_count() or 1

    def ensemble(engine: str, threads: int) -> Callable[[], tuple[np.ndarray, int]]:
        def run():
            trajs = simulate_ensemble([LayerwiseFlow(p, DEPTH) for p, _ in specs], [f for _, f in specs],
                                      T_END, n_save=N_SAVE, rtol=RTOL, atol=ATOL, engine=engine,
                                      threads=threads)
            assert all(t.status == "ok" for t in trajs)
            return np.array([t.sigma[-1] for t in trajs]), sum(int(t.stats["nfev"]) for t in trajs)
        return run

    def loop_engine(engine: str) -> Callable[[], tuple[np.ndarray, int]]:
        def run():
            trajs = [simulate(LayerwiseFlow(p, DEPTH, engine=engine), f, T_END, n_save=N_SAVE, rtol=RTOL,
                              atol=ATOL) for p, f in specs[:loop]]
            return np.array([t.sigma[-1] for t in trajs]), sum(int(t.stats["nfev"]) for t in trajs)
        return run

    runs: dict[str, Callable] = {"loop of simulate, engine scipy": loop_engine("scipy")}
    if importlib.util.find_spec("numba"):
        simulate_ensemble([LayerwiseFlow(p, DEPTH) for p, _ in specs[:2]], [f for _, f in specs[:2]], 1.0,
                          engine="numba")  # loads (or compiles) the kernels
        runs["loop of simulate, engine numba"] = loop_engine("numba")
        runs["simulate_ensemble numba, 1 thread"] = ensemble("numba", 1)
        if cores > 1:
            runs[f"simulate_ensemble numba, {cores} threads"] = ensemble("numba", cores)
    runs["simulate_ensemble torch (CPU), 1 thread"] = ensemble("torch", 1)
    if importlib.util.find_spec("diffrax"):
        runs["diffrax Tsit5, jax.vmap (jit)"] = make_diffrax_ensemble(specs)
    res = interleaved(runs, rounds, warm_up=False)
    ref = res["loop of simulate, engine scipy"]
    ref_min = min(ref["times"]) * batch / loop
    ref_med = statistics.median(ref["times"]) * batch / loop
    rows = []
    for name, r in res.items():
        scale = batch / loop if name.startswith("loop") else 1.0
        tmin, tmed = min(r["times"]) * scale, statistics.median(r["times"]) * scale
        label = f"{name} ({loop} runs × {batch // loop})" if scale != 1.0 else name
        compile_s = r["first"] - tmed if "jit" in name else float("nan")
        agree = float(np.max(np.abs(r["sigma"][:loop] - ref["sigma"]) / ref["sigma"][:, :1]))
        rows.append((label, tmin, tmed, ref_min / tmin, ref_med / tmed, r["nfev"] * scale, compile_s, agree))
    head = (f"## ensemble: {batch} problems {size}×{size} (seeds 0…{batch - 1}), depth {DEPTH}, "
            f"t_end {T_END:g}, {rounds} interleaved round(s), {_common.load_line()} (at the end)")
    return head + "\n\n" + _common.table(rows, (
        "contestant", "min s", "median s", "speed-up vs scipy loop (min)", "(median)", "evaluations",
        "compile s", "\\|Δσ\\|/σ₁ vs scipy loop (first runs)"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default="default,small,ensemble")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--loop", type=int, default=16, help="flows timed in the loops (scaled to --batch)")
    ap.add_argument("--ensemble-rounds", type=int, default=1, help="interleaved rounds of the ensemble case")
    args = ap.parse_args(argv)
    print(_common.header("flowsim vs peer ODE libraries (bench/bench_peers.py)"))
    versions = []
    for mod in ("scipy", "numba", "torch", "torchdiffeq", "jax", "diffrax"):
        if importlib.util.find_spec(mod):
            versions.append(f"{mod} {__import__(mod).__version__}")
    print("# " + ", ".join(versions))
    for case in args.cases.split(","):
        print()
        print(ensemble_case(args.batch, args.loop, args.ensemble_rounds) if case == "ensemble"
              else single_case(case, args.rounds))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
