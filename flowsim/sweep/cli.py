"""``flowsim sweep CONFIG.toml --out DIR [--workers K] [--scheduler ADDRESS] [--quick]`` (SPEC §7).

Runs every point of the grid described by the TOML configuration (see :mod:`flowsim.sweep.config`), one
run directory per point under ``DIR/points/``, and rebuilds ``DIR/summary.csv``. Rerunning the same command
resumes: finished points are skipped, unfinished ones redone. Exit codes: 0 when every point is ok, 3 when
some point diverged or failed (the sweep still ran them all), 2 for bad input, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, BadInputError
from .config import load_config


def build_parser(prog: str) -> argparse.ArgumentParser:
    from ..cli.common import make_parser, positive_int

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
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def _check_out(out: str, config_path: str) -> Path:
    """Validate ``--out`` before anything is created: a folder (new, empty, or an earlier sweep)."""
    from ..cli.common import prepare_out_dir
    from .runner import SWEEP_JSON

    path = Path(out)
    if path.is_dir() and any(path.iterdir()) and not (path / SWEEP_JSON).is_file():
        raise BadInputError(f"--out {path} is a non-empty folder that is not a sweep folder")
    return prepare_out_dir(out, "sweep")


def run(args: argparse.Namespace) -> int:
    from .runner import run_sweep
    from .tables import write_report

    cfg = load_config(args.config, quick=args.quick)
    points = cfg.points()
    out = _check_out(args.out, args.config)
    outcome = run_sweep(cfg, out, workers=args.workers, scheduler=args.scheduler, quiet=args.quiet,
                        threads_per_worker=args.threads_per_worker)
    report = None
    if cfg.report and not outcome.interrupted:
        report = write_report(out, cfg.report)
    from .summary import read_summary

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
    if outcome.interrupted:
        print("flowsim sweep: interrupted; rerun the same command to resume")
        return EXIT_INTERRUPTED
    return EXIT_OK if counts.get("ok", 0) == len(rows) else EXIT_RUN_FAILED
