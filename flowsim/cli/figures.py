"""``flowsim figures``: regenerate the README gallery into ``--out`` (PNG, plus PDF with ``--pdf``).

The default ``--out`` is ``./figures`` in the working directory: the repository's ``figures/`` when run from
a checkout, never the installed package's folder.

Each figure is drawn from run directories cached under ``--data`` (default ``runs/figures``); missing runs
are computed first (in ``--workers`` processes), so a second call only re-plots. ``--only NAME`` (repeatable;
a name or a number) builds some figures; ``--preview`` uses a small problem (minutes). Exit codes: 0 every
figure written, 2 bad input, 3 a run or a figure failed (the others are still written), 130 Ctrl-C (the runs
finished so far stay cached).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..errors import EXIT_OK, EXIT_RUN_FAILED, BadInputError
from ..figures.gallery import FIGURES, SETTINGS, job_dirs, select
from ..figures.jobs import ensure_jobs
from .common import make_parser, positive_int

DEFAULT_OUT = Path("figures")  # relative to the working directory: the repository's figures/ from a checkout
DEFAULT_DATA = Path("runs") / "figures"


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The ``flowsim figures`` parser."""
    names = ", ".join(f"{f.name} ({f.number})" for f in FIGURES.values())
    p = make_parser(prog, "Regenerate the README gallery: every figure from cached runs, computing the "
                          "missing runs first.")
    p.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR", help="folder of the PNG/PDF files")
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help=f"build only this figure (repeatable): {names}")
    p.add_argument("--pdf", action="store_true", help="also write PDF files")
    p.add_argument("--data", default=str(DEFAULT_DATA), metavar="DIR",
                   help="where the run directories behind the figures are cached")
    p.add_argument("--workers", type=positive_int, default=2, help="processes computing the missing runs")
    p.add_argument("--preview", action="store_true",
                   help="a small problem instead of the papers' setting (minutes; a quick look, tests)")
    p.add_argument("--quiet", action="store_true", help="print only the written files")
    return p


def _check_dir(path: str, flag: str) -> Path:
    """An existing folder, or one that can be created (checked before anything is computed)."""
    if not str(path).strip():
        raise BadInputError(f"{flag} must be a folder path, got an empty string")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise BadInputError(f"{flag} {p} exists and is not a directory")
    parent = p if p.exists() else next((q for q in p.absolute().parents if q.exists()), Path("/"))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{flag} {p} is not writable")
    return p


def run(args: argparse.Namespace) -> int:
    """Compute the missing runs, then draw the selected figures."""
    start = time.perf_counter()
    figs = select(args.only)
    out = _check_dir(args.out, "--out")
    data = _check_dir(args.data, "--data")
    setting = SETTINGS["preview" if args.preview else "paper"]

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    jobs = [j for f in figs for j in f.jobs(setting)]
    report = ensure_jobs(jobs, data, workers=args.workers, log=log)
    dirs = job_dirs(jobs, data)
    failed = False
    for f in figs:
        missing = [str(dirs[j.label]) for j in f.jobs(setting) if str(dirs[j.label]) in report.failed]
        if missing:
            print(f"flowsim figures: figure {f.name} skipped: its run(s) failed: "
                  + "; ".join(f"{m}: {report.failed[m]}" for m in missing), file=sys.stderr)
            failed = True
            continue
        t0 = time.perf_counter()
        try:
            paths = f.draw(dirs, setting, out, args.pdf)
        except Exception as exc:  # noqa: BLE001 - one broken figure does not stop the gallery
            print(f"flowsim figures: figure {f.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed = True
            continue
        for p in paths:
            print(p)
        log(f"  drew {f.name} ({time.perf_counter() - t0:.1f} s)")
    log(f"flowsim figures: {len(figs)} figure(s), {len(report.computed)} run(s) computed, "
        f"{len(report.reused)} reused, wall time {time.perf_counter() - start:.1f} s")
    return EXIT_RUN_FAILED if failed else EXIT_OK
