"""The computations behind the gallery and their cache of run directories.

A *job* is a JSON-able dictionary (``spec``) that says what to compute: a ``simulate`` run
(:func:`flowsim.simulate.simulate`), a ``razin`` run with its perturbed family
(:mod:`flowsim.theory.razin_cli`), a ``validate`` comparison (:func:`flowsim.validation.validate.validate`)
or a ``check`` of every registered claim (:mod:`flowsim.theory.registry`). Its run directory is
``DATA/KIND/LABEL--HASH`` where HASH is a digest of the spec, so a changed spec is recomputed and an
unchanged one is re-plotted instantly. A job is computed into a temporary folder that is renamed into place
only when complete, with ``figure_job.json`` (the spec, wall time and package versions) written last: an
interrupted computation leaves no half-written directory.

Jobs run in worker processes (``workers`` ≥ 2) with single-threaded BLAS/OpenMP: on a 2-core machine a
multi-threaded BLAS busy-waits on the small (100×100) SVDs of the velocity and is 10–60× slower when the
machine is loaded (measured: 250 ms against 4 ms per gradient-flow velocity).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB_JSON = "figure_job.json"
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Job:
    """One computation: ``label`` (readable part of the folder name) and ``spec`` (what to compute)."""

    label: str
    spec: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.spec["kind"])

    def digest(self) -> str:
        """A short hash of the spec (canonical JSON)."""
        text = json.dumps(self.spec, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def folder(self, data_dir: str | Path) -> Path:
        """The run directory of this job under ``data_dir``."""
        return Path(data_dir) / self.kind / f"{self.label}--{self.digest()}"


def is_done(job: Job, data_dir: str | Path) -> bool:
    """True when the job's run directory is complete (its ``figure_job.json`` holds the same spec)."""
    marker = job.folder(data_dir) / JOB_JSON
    if not marker.is_file():
        return False
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    def canon(x: Any) -> Any:
        return json.loads(json.dumps(x, default=str))

    return canon(saved.get("spec")) == canon(job.spec)


# ---- the computations ---------------------------------------------------------------------------------

def _problem(p: dict[str, Any]):
    from flowsim.problems import synthetic_problem

    return synthetic_problem(int(p["m"]), int(p["n"]), int(p["rank"]), p.get("observed"),
                             int(p.get("seed", 0)), p.get("reduction", "mean"), float(p.get("scale", 1.0)))


def compute_simulate(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """A ``flowsim simulate`` run directory (SPEC §7) from the spec's problem, flow, penalty and init."""
    from flowsim.flows import make_flow
    from flowsim.initializations import init_factors
    from flowsim.penalties import make_penalty
    from flowsim.simulate import simulate
    from flowsim.trajectory import write_run

    start = time.perf_counter()
    problem = _problem(spec["problem"])
    flow = make_flow(spec["flow"], problem, int(spec["depth"]), make_penalty(spec["penalty"]),
                     float(spec["lam"]), spec.get("model", "end-product"), **spec.get("options", {}))
    factors = init_factors(spec["init"], problem.shape, int(spec["depth"]), float(spec["init_scale"]),
                           int(spec.get("init_seed", 0)))
    traj = simulate(flow, factors, float(spec["t_end"]), n_save=int(spec["n_save"]), t_min=spec.get("t_min"),
                    method=spec.get("method", "DOP853"), rtol=float(spec.get("rtol", 1e-7)),
                    atol=float(spec.get("atol", 1e-10)), max_steps=spec.get("max_steps"), progress=False)
    if traj.status == "interrupted":
        raise KeyboardInterrupt
    params = {**spec, "problem_description": problem.description, "flow_description": flow.describe()}
    write_run(out, traj, command="simulate", params=params, wall_time_s=time.perf_counter() - start)
    return {"status": traj.status, "message": traj.message}


def compute_razin(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """A ``flowsim razin --family`` run directory (RC20; SPEC §4): trajectory, checks, family.npz, plots."""
    from flowsim.theory import razin_cli

    argv = ["--depth", str(spec["depth"]), "--init", spec.get("init", "balanced"),
            "--t-end", repr(float(spec["t_end"])), "--n-save", str(spec["n_save"]), "--out", str(out),
            "--quiet"]
    if spec.get("init_scale") is not None:
        argv += ["--init-scale", repr(float(spec["init_scale"]))]
    if spec.get("family", True):
        argv.append("--family")
    args = razin_cli.build_parser("flowsim razin").parse_args(argv)
    rc = razin_cli.run(args)
    if rc in (130, 143):
        raise KeyboardInterrupt
    info = json.loads((out / "run.json").read_text())
    return {"status": info.get("status"), "message": info.get("message")}


def compute_validate(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """``validation.json`` (SPEC §7) of a discrete optimizer against a flow over step sizes (SPEC §5)."""
    from flowsim.initializations import init_factors
    from flowsim.io import atomic_write_json
    from flowsim.validation.validate import validate

    problem = _problem(spec["problem"])
    factors = init_factors(spec["init"], problem.shape, int(spec["depth"]), float(spec["init_scale"]),
                           int(spec.get("init_seed", 0)))
    res = validate(problem, factors, optimizer=spec["optimizer"], against=spec["against"], lrs=spec["lrs"],
                   t_end=float(spec["t_end"]), n_record=int(spec["n_record"]),
                   beta_scaling=spec.get("beta_scaling", "fixed"), device="cpu")
    if res.status == "interrupted":
        raise KeyboardInterrupt
    atomic_write_json(out / "validation.json", res.to_json({"t_end": spec["t_end"], "spec": spec}))
    return {"status": res.status, "message": res.message}


def compute_check(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """``check.json``: the records of every built-in claim (SPEC §6, §7 ``check --json``)."""
    from flowsim.theory.registry import CheckConfig, evaluate, load_builtin_claims
    from flowsim.theory.report import write_json

    config = CheckConfig(quick=bool(spec.get("quick", False)), seed=int(spec.get("seed", 0)))
    records = [evaluate(c, config) for c in load_builtin_claims().values()]
    write_json(out / "check.json", records)
    errored = [r.id for r in records if r.errored]
    return {"status": "failed" if errored else "ok",
            "message": f"claims that raised: {errored}" if errored else ""}


COMPUTE: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "simulate": compute_simulate, "razin": compute_razin, "validate": compute_validate,
    "check": compute_check,
}


def run_job(job: Job, data_dir: str | Path) -> Path:
    """Compute ``job`` into its run directory (atomically: a temporary folder renamed when complete)."""
    from flowsim.io import atomic_write_json, package_versions

    final = job.folder(data_dir)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    try:
        outcome = COMPUTE[job.kind](job.spec, tmp)
        atomic_write_json(tmp / JOB_JSON, {"spec": job.spec, "label": job.label, "outcome": outcome,
                                           "wall_time_s": time.perf_counter() - start,
                                           "versions": package_versions()})
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# ---- running many jobs ----------------------------------------------------------------------------------

@contextlib.contextmanager
def single_threaded_env() -> Iterator[None]:
    """Set the BLAS/OpenMP thread counts to 1 for processes started inside the block (unless the user set
    them)."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    for k in THREAD_ENV:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _worker(job: Job, data_dir: str) -> tuple[str, float]:
    start = time.perf_counter()
    run_job(job, data_dir)
    return str(job.folder(data_dir)), time.perf_counter() - start


@dataclass
class JobReport:
    """What :func:`ensure_jobs` did: the jobs computed (with wall times), reused, and failed (error text)."""

    computed: dict[str, float]
    reused: list[str]
    failed: dict[str, str]


def ensure_jobs(
    jobs: Sequence[Job], data_dir: str | Path, *, workers: int = 2, log: Callable[[str], None] | None = None
) -> JobReport:
    """Compute every job whose run directory is missing; ``workers`` processes (1: in this process).

    A job that raises is recorded in ``failed`` (the others go on); Ctrl-C stops the pool and re-raises
    (finished jobs stay cached)."""
    log = log or (lambda s: None)
    unique: dict[Path, Job] = {}
    for j in jobs:
        unique.setdefault(j.folder(data_dir), j)
    todo = [j for j in unique.values() if not is_done(j, data_dir)]
    report = JobReport({}, [str(p) for p, j in unique.items() if j not in todo], {})
    if not todo:
        return report
    log(f"computing {len(todo)} run(s) into {data_dir} ({len(report.reused)} cached) "
        f"with {workers} worker(s)")
    if workers <= 1:
        for j in todo:
            start = time.perf_counter()
            try:
                run_job(j, data_dir)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed run is reported; the other figures go on
                report.failed[str(j.folder(data_dir))] = f"{type(exc).__name__}: {exc}"
                log(f"  failed   {j.label}: {type(exc).__name__}: {exc}")
                continue
            report.computed[str(j.folder(data_dir))] = time.perf_counter() - start
            log(f"  computed {j.label} ({time.perf_counter() - start:.1f} s)")
        return report
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # longest first (the simulate runs at large depth), so the pool ends together
    order = {"simulate": 0, "validate": 1, "razin": 2, "check": 3}
    todo.sort(key=lambda j: (order.get(j.kind, 9), -int(j.spec.get("depth", 0))))
    with single_threaded_env():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker)
        try:
            futures = {pool.submit(_worker, j, str(data_dir)): j for j in todo}
            for fut in as_completed(futures):
                j = futures[fut]
                try:
                    path, wall = fut.result()
                except Exception as exc:  # noqa: BLE001 - reported, the other jobs go on
                    report.failed[str(j.folder(data_dir))] = f"{type(exc).__name__}: {exc}"
                    log(f"  failed   {j.label}: {type(exc).__name__}: {exc}")
                    continue
                report.computed[path] = wall
                log(f"  computed {j.label} ({wall:.1f} s)")
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return report
