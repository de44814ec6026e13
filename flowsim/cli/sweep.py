"""``flowsim sweep CONFIG.toml --out DIR [--workers K] [--scheduler ADDRESS] [--quick]`` (docs/contract.md).

Runs every point of the grid described by the TOML configuration (see :mod:`flowsim.sweep.config`), one
run directory per point under ``DIR/points/``, and rebuilds ``DIR/summary.csv``. Rerunning the same command
resumes: finished points are skipped, unfinished ones redone. Exit codes: 0 when every point is ok, 3 when
some point diverged or failed (the sweep still ran them all), 2 for bad input (also when every point
was bad input), 130 on Ctrl-C, 143 on SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EXIT_OK, EXIT_RUN_FAILED, BadInputError
from ..sweep.config import load_config


def build_parser(prog: str) -> argparse.ArgumentParser:
    from .common import make_parser, positive_int

    p = make_parser(prog, "Run a parameter grid of a flowsim command on local processes or a Dask cluster; "
                          "resumable; writes one run directory per point and summary.csv.")
    p.add_argument("config", metavar="CONFIG.toml", help="sweep configuration (TOML)")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep folder (created; reused to resume)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="K",
                   help="local worker processes (default: number of CPUs)")
    p.add_argument("--threads-per-worker", type=positive_int, default=None, metavar="T",
                   help="BLAS/torch threads per local worker (default: CPUs / workers)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address (e.g. tcp://host:8786); points run as Dask futures")
    p.add_argument("--quick", action="store_true", help="apply the configuration's [quick] overrides")
    p.add_argument("--allow-large", action="store_true",
                   help="run a grid beyond the point limit (the error message gives the estimate)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def _check_out(out: str, config_path: str) -> Path:
    """Validate ``--out`` before anything is created: a folder (new, empty, or an earlier sweep)."""
    from ..runs.common import prepare_out_dir
    from ..sweep.runner import SWEEP_JSON

    path = Path(out)
    if path.is_dir() and any(path.iterdir()) and not (path / SWEEP_JSON).is_file():
        raise BadInputError(f"--out {path} is a non-empty folder that is not a sweep folder")
    return prepare_out_dir(out, "sweep")


#: local worker processes per CPU beyond which ``--allow-large`` is needed (each imports numpy, scipy, torch)
MAX_WORKERS_PER_CPU = 4
#: resident memory of one idle worker process (numpy, scipy, torch and the commands imported: 0.35 GB
#: measured with resource.getrusage on the development machine)
WORKER_BYTES = 3.5e8


def _check_workers(workers: int | None, allow_large: bool) -> None:
    """Refuse a local pool far larger than the machine (processes that only compete for the CPUs)."""
    import os

    n_cpu = os.cpu_count() or 1
    if workers is not None and workers > MAX_WORKERS_PER_CPU * n_cpu and not allow_large:
        gb = workers * WORKER_BYTES / 1e9
        raise BadInputError(f"--workers {workers} on {n_cpu} CPUs needs about {gb:.3g} GB for the worker "
                            f"processes alone (limit {MAX_WORKERS_PER_CPU} per CPU); pass "
                            f"--allow-large to run it anyway")


def run(args: argparse.Namespace) -> int:
    from ..sweep.runner import DaskBackend, run_sweep

    cfg = load_config(args.config, quick=args.quick, allow_large=args.allow_large)
    points = cfg.points()
    _check_workers(args.workers, args.allow_large)
    # everything that can be bad input is checked before the sweep folder is touched
    backend = DaskBackend(args.scheduler) if args.scheduler is not None else None
    try:
        out = _check_out(args.out, args.config)
    except BaseException:
        if backend is not None:
            backend.close()
        raise
    outcome = run_sweep(cfg, out, workers=args.workers, quiet=args.quiet,
                        threads_per_worker=args.threads_per_worker, backend=backend)
    report, report_error = None, None
    if cfg.report and not outcome.interrupted:
        report, report_error = _report(out, cfg.report)
    from ..sweep.summary import read_summary

    rows = read_summary(outcome.summary)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    if not args.quiet:
        print(f"sweep        {len(points)} points ({outcome.skipped} already finished, "
              f"{len(points) - outcome.skipped} run now)")
        print("status       " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for r in rows:
            if r["status"] in ("failed", "diverged"):
                print(f"  {r['id']} {r['status']}: {r['message']}")
        print(f"wall time    {outcome.wall_time_s:.1f} s")
        print(f"summary      {outcome.summary}" + (f"\nreport       {report}" if report else ""))
        if report_error:
            print(f"report       {cfg.report} not written: {report_error}")
    if outcome.interrupted:
        from ..runs.interrupts import exit_code

        print("flowsim sweep: interrupted; rerun the same command to resume", file=sys.stderr)
        return exit_code()
    bad = [r for r in rows if str(r.get("message", "")).startswith("bad input: ")]
    if rows and len(bad) == len(rows):
        raise BadInputError(f"every point is bad input (they are retried on resume); the first: "
                            f"{bad[0]['message'][len('bad input: '):]}")
    return EXIT_OK if counts.get("ok", 0) == len(rows) else EXIT_RUN_FAILED


def _report(out: Path, name: str) -> tuple[Path | None, str | None]:
    """Write report ``name``; a report that cannot be rendered is noted, never an error of the sweep."""
    from ..sweep.tables import write_report

    try:
        return write_report(out, name), None
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - the points are the results; the report is a view of them
        return None, f"{type(exc).__name__}: {exc}"
