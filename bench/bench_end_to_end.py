"""Benchmark 5: end-to-end wall times of the default commands, each in a fresh process.

    python bench/bench_end_to_end.py [--repeat 1] [--skip simulate-auto,...] [--before DIR]

Before/after: ``--before DIR`` runs every command also against another source tree (put first on
PYTHONPATH), alternating the two, and prints before/after ratios, e.g. for the state before the performance
work:

    git archive 01214c4 | tar -x -C /tmp/before && python bench/bench_end_to_end.py --before /tmp/before

Commands (all with their defaults; output into a temporary directory that is removed afterwards):

* ``flowsim simulate`` — the default end-product state (docs/math.md §4);
* ``flowsim simulate --model layers`` — the layer state (docs/math.md §6), which is what the automatic choice
  (:mod:`flowsim.flows.auto`) picks for the default balanced init without penalty: same dynamics;
* ``flowsim simulate --model auto`` — only if the CLI offers it;
* ``flowsim razin``, ``flowsim check --quick``;
* ``python -c "import flowsim"`` — the interpreter + import floor.

Each wall time is the median over ``--repeat`` runs; ratios are against the default ``flowsim simulate``
measured in the same run. BLAS threads are pinned by bench/_common.py and inherited by the children.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # before numpy: pins the BLAS threads (the children inherit the environment)


def _cli_offers_auto() -> bool:
    out = subprocess.run([sys.executable, "-m", "flowsim", "simulate", "--help"], capture_output=True,
                         text=True)
    return "auto" in out.stdout.split("--model", 1)[-1].split("\n--", 1)[0]


def _run(argv: list[str], tmp: Path, pythonpath: str | None = None) -> tuple[float, int, dict]:
    """(wall s, exit code, stats from run.json if any) of one command."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp, env=env)
    wall = time.perf_counter() - t0
    stats: dict = {}
    runjson = tmp / "out" / "run.json"
    if runjson.is_file():
        info = json.loads(runjson.read_text())
        stats = {k: info.get("stats", {}).get(k) for k in ("nfev", "steps", "formulation")}
    if proc.returncode != 0:
        print(f"# {' '.join(argv[2:])}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}", flush=True)
    return wall, proc.returncode, stats


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip", default="", help="comma-separated labels to skip")
    ap.add_argument("--before", default=None, metavar="DIR", help="source tree of the 'before' state")
    a = ap.parse_args(argv)
    skip = set(filter(None, a.skip.split(",")))
    py = [sys.executable, "-m", "flowsim"]
    cmds = [
        ("import", [sys.executable, "-c", "import flowsim"]),
        ("simulate", [*py, "simulate", "--quiet", "--out", "out"]),
        ("simulate-layers", [*py, "simulate", "--model", "layers", "--quiet", "--out", "out"]),
    ]
    if _cli_offers_auto():
        cmds.append(("simulate-auto", [*py, "simulate", "--model", "auto", "--quiet", "--out", "out"]))
    cmds += [("razin", [*py, "razin", "--quiet", "--out", "out"]),
             ("check-quick", [*py, "check", "--quick", "--quiet", "--json", "out.json"])]
    print(_common.header("benchmark 5: end-to-end wall times"), flush=True)
    rows, walls, before = [], {}, {}
    sides = [("after", None)] + ([("before", str(Path(a.before).resolve()))] if a.before else [])
    for label, cmd in cmds:
        if label in skip:
            continue
        times: dict[str, list[float]] = {side: [] for side, _ in sides}
        code, stats = 0, {}
        for _ in range(a.repeat):
            for side, path in sides:  # alternate: both sides see the same load
                tmp = Path(tempfile.mkdtemp(prefix="flowsim-bench-"))
                try:
                    w, c, st = _run(cmd, tmp, path)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                times[side].append(w)
                if side == "after":
                    code, stats = c, st
        walls[label] = statistics.median(times["after"])
        if a.before:
            before[label] = statistics.median(times["before"])
        shown = " ".join(cmd[2:]) if cmd[1] == "-m" else " ".join(cmd[1:])
        row = (label, shown, walls[label], code, ", ".join(f"{k} {v}" for k, v in stats.items() if v))
        if a.before:
            row = (*row[:3], before[label], before[label] / walls[label], *row[3:])
        rows.append(row)
        print(f"# {rows[-1]}", flush=True)
    print()
    head = ("label", "command", "wall s (median)")
    if a.before:
        head = (*head, "before: wall s", "before / after")
    print(_common.table(rows, (*head, "exit", "run.json stats")))
    if "simulate" in walls:
        print()
        print("| ratio | value |")
        print("|---|---|")
        for label in ("simulate-layers", "simulate-auto"):
            if label in walls:
                r = walls["simulate"] / walls[label]
                print(f"| flowsim simulate (end-product, default) / {label} | {r:.2f} |")

if __name__ == "__main__":
    main()
