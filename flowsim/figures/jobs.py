"""The computations behind the gallery and their cache of run directories.

A *job* is a JSON-able dictionary (``spec``) that says what to compute: a ``simulate`` run
(:func:`flowsim.simulate.simulate`), a discrete ``train`` run (:func:`flowsim.validation.train.train`), a
``razin`` run with its perturbed family
(:func:`flowsim.runs.razin.run_razin`), a ``validate`` comparison
(:func:`flowsim.validation.validate.validate`) or a ``check`` of every registered claim
(:mod:`flowsim.theory.registry`). Its run directory is
``DATA/KIND/LABEL--HASH`` where HASH is a digest of the spec, so a changed spec is recomputed and an
unchanged one is re-plotted instantly. A job is computed into a temporary folder that is renamed into place
only when complete, with ``figure_job.json`` (the spec, wall time and package versions) written last: an
interrupted computation leaves no half-written directory.

Jobs run in the sweep's worker processes (:class:`flowsim.sweep.runner.LocalBackend`, ``workers`` ≥ 2)
with single-threaded BLAS/OpenMP/torch: on a 2-core machine a
multi-threaded BLAS busy-waits on the small (100×100) SVDs of the velocity and is 10–60× slower when the
machine is loaded (measured: 250 ms against 4 ms per gradient-flow velocity).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB_JSON = "figure_job.json"


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


def _factors(spec: dict[str, Any], shape: tuple[int, int]) -> list:
    """A job's initial layer factors: ``init`` at ``init_scale``, ``depth`` layers, seed ``init_seed``."""
    from flowsim.initializations import init_factors

    return init_factors(spec["init"], shape, int(spec["depth"]), float(spec["init_scale"]),
                        int(spec.get("init_seed", 0)))


def compute_simulate(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """A ``flowsim simulate`` run directory (docs/contract.md §2) from the spec's
    problem, flow, penalty and init."""
    from flowsim.flows import make_flow
    from flowsim.penalties import make_penalty
    from flowsim.simulate import simulate
    from flowsim.trajectory import write_run

    start = time.perf_counter()
    problem = _problem(spec["problem"])
    flow = make_flow(spec["flow"], problem, int(spec["depth"]), make_penalty(spec["penalty"]),
                     float(spec["lam"]), spec.get("model", "end-product"), **spec.get("options", {}))
    factors = _factors(spec, problem.shape)
    traj = simulate(flow, factors, float(spec["t_end"]), n_save=int(spec["n_save"]), t_min=spec.get("t_min"),
                    method=spec.get("method", "DOP853"), rtol=float(spec.get("rtol", 1e-7)),
                    atol=float(spec.get("atol", 1e-10)), max_steps=spec.get("max_steps"), progress=False)
    if traj.status == "interrupted":
        raise KeyboardInterrupt
    params = {**spec, "problem_description": problem.description, "flow_description": flow.describe()}
    write_run(out, traj, command="simulate", params=params, wall_time_s=time.perf_counter() - start)
    return {"status": traj.status, "message": traj.message}


def compute_train(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """A ``flowsim train`` run directory (docs/contract.md §2): the discrete optimizer on the spec's
    problem, penalty and init, recorded at ``n_record`` log-spaced iterations (t = kη), on the CPU."""
    from flowsim.penalties import make_penalty
    from flowsim.trajectory import write_run
    from flowsim.validation.train import train

    start = time.perf_counter()
    problem = _problem(spec["problem"])
    factors = _factors(spec, problem.shape)
    traj = train(problem, factors, optimizer=spec["optimizer"], lr=float(spec["lr"]),
                 iters=int(spec["iters"]), penalty=make_penalty(spec["penalty"]), lam=float(spec["lam"]),
                 hyper=spec.get("hyper"), n_record=int(spec["n_record"]), device="cpu", progress=False)
    if traj.status == "interrupted":
        raise KeyboardInterrupt
    params = {**spec, "problem_description": problem.description}
    write_run(out, traj, command="train", params=params, wall_time_s=time.perf_counter() - start)
    return {"status": traj.status, "message": traj.message}


def compute_razin(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """A ``flowsim razin --family`` run directory (RC20; ``docs/math.md`` §10): trajectory, checks,
    family.npz, plots, through :func:`flowsim.runs.razin.run_razin`."""
    from flowsim.io import command_line
    from flowsim.runs.outdir import release_dir
    from flowsim.runs.razin import RazinSpec, run_razin

    options: dict[str, Any] = {"depth": int(spec["depth"]), "init": spec.get("init", "balanced"),
                               "t_end": float(spec["t_end"]), "n_save": int(spec["n_save"]), "out": str(out),
                               "quiet": True, "family": bool(spec.get("family", True))}
    if spec.get("init_scale") is not None:
        options["init_scale"] = float(spec["init_scale"])
    # run.json records this process's command line, as the gallery always did
    result = run_razin(RazinSpec.from_options(options, provenance=command_line()))
    release_dir(out)
    if result.status == "interrupted":
        raise KeyboardInterrupt
    return {"status": result.status, "message": result.message}


def compute_validate(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """``validation.json`` (docs/contract.md §3) of a discrete optimizer against a flow over
    step sizes (docs/math.md §11)."""
    from flowsim.io import atomic_write_json
    from flowsim.validation.validate import validate

    problem = _problem(spec["problem"])
    factors = _factors(spec, problem.shape)
    res = validate(problem, factors, optimizer=spec["optimizer"], against=spec["against"], lrs=spec["lrs"],
                   t_end=float(spec["t_end"]), n_record=int(spec["n_record"]),
                   beta_scaling=spec.get("beta_scaling", "fixed"), device="cpu")
    if res.status == "interrupted":
        raise KeyboardInterrupt
    atomic_write_json(out / "validation.json", res.to_json({"t_end": spec["t_end"], "spec": spec}))
    return {"status": res.status, "message": res.message}


def compute_check(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """``check.json``: the records of every built-in claim (docs/contract.md §4 ``check --json``)."""
    from flowsim.theory.registry import CheckConfig, evaluate, load_builtin_claims
    from flowsim.theory.report import write_json

    config = CheckConfig(quick=bool(spec.get("quick", False)), seed=int(spec.get("seed", 0)))
    records = [evaluate(c, config) for c in load_builtin_claims().values()]
    write_json(out / "check.json", records)
    errored = [r.id for r in records if r.errored]
    return {"status": "failed" if errored else "ok",
            "message": f"claims that raised: {errored}" if errored else ""}


COMPUTE: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "simulate": compute_simulate, "train": compute_train, "razin": compute_razin,
    "validate": compute_validate, "check": compute_check,
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

    The worker processes are the sweep's (:class:`flowsim.sweep.runner.LocalBackend`: spawned, one
    BLAS/OpenMP/torch thread each, stopped with the parent). A job that raises is recorded in ``failed``
    (the others go on); Ctrl-C stops the workers and re-raises (finished jobs stay cached)."""
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

    def failed(j: Job, exc: BaseException) -> None:
        report.failed[str(j.folder(data_dir))] = f"{type(exc).__name__}: {exc}"
        log(f"  failed   {j.label}: {type(exc).__name__}: {exc}")

    if workers <= 1:
        for j in todo:
            start = time.perf_counter()
            try:
                run_job(j, data_dir)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed run is reported; the other figures go on
                failed(j, exc)
                continue
            report.computed[str(j.folder(data_dir))] = time.perf_counter() - start
            log(f"  computed {j.label} ({time.perf_counter() - start:.1f} s)")
        return report
    from flowsim.sweep.runner import LocalBackend

    # longest first (the simulate runs at large depth), so the pool ends together
    order = {"simulate": 0, "validate": 1, "razin": 2, "check": 3}
    todo.sort(key=lambda j: (order.get(j.kind, 9), -int(j.spec.get("depth", 0))))
    backend = LocalBackend(workers, threads=1)
    futures: dict[Any, Job] = {}
    try:
        futures = {backend.submit(_worker, j, str(data_dir)): j for j in todo}
        for fut in backend.as_completed(list(futures)):
            j = futures[fut]
            try:
                path, wall = fut.result()
            except Exception as exc:  # noqa: BLE001 - reported, the other jobs go on
                failed(j, exc)
                continue
            report.computed[path] = wall
            log(f"  computed {j.label} ({wall:.1f} s)")
    except KeyboardInterrupt:
        backend.cancel(list(futures))
        backend.close(wait=False)
        raise
    backend.close()
    return report
