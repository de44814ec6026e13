"""Run the points of a sweep: one run directory per point, resumable, on local processes or Dask
(docs/contract.md §2).

Layout of a sweep folder ``OUT``::

    OUT/sweep.json            the configuration text and the expanded points (ids, options, grid labels)
    OUT/points/<id>/point.json    the point's command and options (written before it runs)
    OUT/points/<id>/run.json      written by the command itself (atomically) when the point finishes
    OUT/points/<id>/log.txt       what the command printed
    OUT/summary.csv           one row per point, rebuilt from the run directories (flowsim.sweep.summary)

A point is *finished* when its ``run.json`` exists with status ``ok``, ``diverged`` or ``failed``. Every
other point (no ``run.json``, a truncated one, status ``interrupted``) is cleared and redone when the same
sweep is run again. Because every file is written atomically and the summary is recomputed from the run
directories, a sweep killed at any moment (SIGKILL included) and then resumed ends with the same summary
as an uninterrupted one (up to the measured wall times).

Local process pool and Dask use one code path: :func:`execute` submits one task per group of points to a
*backend* whose ``submit(fn, *args)`` returns a future, and consumes the results as they complete.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EXIT_INTERRUPTED, BadInputError
from ..io import atomic_write_bytes, atomic_write_json, command_line, package_versions, read_json
from ..runs.outdir import release_dir
from .config import Point, SweepConfig

FINISHED = ("ok", "diverged", "failed")
SWEEP_JSON = "sweep.json"
POINTS_DIR = "points"
POINT_JSON = "point.json"
RUN_JSON = "run.json"
LOG_TXT = "log.txt"
#: a point whose worker process died this many times is recorded as failed
MAX_WORKER_DEATHS = 3
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: counts per status, the points skipped as finished, the summary path."""

    n_points: int
    skipped: int
    counts: dict[str, int] = field(default_factory=dict)
    summary: Path | None = None
    interrupted: bool = False
    wall_time_s: float = 0.0


# ---- run directories ------------------------------------------------------------------------------------

#: commands whose PNG is skipped inside a sweep (``flowsim plot DIR`` makes it on demand)
NO_PLOT = ("simulate", "train")


def point_dir(out: str | Path, pid: str) -> Path:
    """The run directory of point ``pid`` in the sweep folder ``out``."""
    return Path(out) / POINTS_DIR / pid


def point_status(run_dir: str | Path) -> str | None:
    """Status recorded in ``run_dir/run.json``, or None when there is none (or it cannot be read)."""
    try:
        info = read_json(Path(run_dir) / RUN_JSON)
    except (OSError, ValueError):
        return None
    status = info.get("status") if isinstance(info, dict) else None
    return status if isinstance(status, str) else None


def is_finished(run_dir: str | Path) -> bool:
    """True when the point's run.json records ``ok``, ``diverged`` or ``failed`` — a failure whose cause
    lay outside the point (bad input such as a missing file, memory, the file system) is not finished: it
    is retried when the sweep is resumed."""
    if point_status(run_dir) not in FINISHED:
        return False
    try:
        info = read_json(Path(run_dir) / RUN_JSON)
    except (OSError, ValueError):
        return False
    return not (isinstance(info, dict) and info.get("retry_on_resume"))


def clear_run_dir(run_dir: Path) -> None:
    """Remove what an unfinished attempt left in ``run_dir`` (keeps ``point.json``)."""
    if not run_dir.is_dir():
        return
    for child in run_dir.iterdir():
        if child.name == POINT_JSON:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                child.unlink()


def write_failure(run_dir: Path, command: str, params: dict, message: str, wall_time_s: float,
                  cause: str | None = None) -> None:
    """Record a point that could not produce its own run.json (exception, bad option, dead worker).

    ``cause`` names a failure outside the point (``bad input``, ``memory``, ``file system``): the point is
    then retried on resume (``retry_on_resume``)."""
    atomic_write_json(run_dir / RUN_JSON, {
        "command": command, "argv": None, "params": params, "seed": params.get("seed"), "status": "failed",
        "message": message, "wall_time_s": float(wall_time_s), "stats": {}, "final": {},
        "versions": package_versions(), "written_by": "flowsim sweep",
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"cause": cause, "retry_on_resume": True} if cause else {}),
    })


def _outside_cause(exc: BaseException) -> str | None:
    """The cause outside the point of an exception (retried on resume), or None for the point's own."""
    if isinstance(exc, BadInputError):
        return "bad input"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError):
        return "file system"
    return None


# ---- the task a worker runs -----------------------------------------------------------------------------

def point_spec(command: str, argv: Sequence[str], params: dict, run_dir: str | Path) -> Any:
    """The run spec of one point: its options, ``--out RUN_DIR --quiet`` (and ``--no-plot`` for the
    commands in :data:`NO_PLOT`), checked as on the command line (bad input raises
    :class:`BadInputError`). ``run.json`` records the equivalent command line
    ``flowsim COMMAND ARGV --out RUN_DIR --quiet [--no-plot]``."""
    from ..runs import spec_class

    no_plot = command in NO_PLOT
    extra = ["--out", str(run_dir), "--quiet", *(["--no-plot"] if no_plot else [])]
    options = {**params, "out": str(run_dir), "quiet": True, **({"no_plot": True} if no_plot else {})}
    return spec_class(command).from_options(options, provenance=" ".join(["flowsim", command, *argv, *extra]))


def run_point(command: str, argv: Sequence[str], params: dict, run_dir: str) -> dict[str, Any]:
    """Run one point in this process: the spec of :func:`point_spec` through the command's run function
    (:func:`flowsim.runs.run_function`). Never raises for a failing point: a bad option or an exception is
    recorded as a ``failed`` run.json with the message. Returns ``{"status", "exit_code", "wall_time_s"}``.
    """
    from ..runs import run_function

    d = Path(run_dir)
    clear_run_dir(d)
    d.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log = io.StringIO()
    code: int | None = None
    # Capture the command's output in log.txt, but only on a main thread: redirect_stdout swaps the
    # process-wide sys.stdout, which would be unsafe on a threaded (e.g. Dask) worker.
    capture = threading.current_thread() is threading.main_thread()
    redirect = (contextlib.redirect_stdout(log), contextlib.redirect_stderr(log)) if capture else ()
    try:
        with contextlib.ExitStack() as stack:
            for r in redirect:
                stack.enter_context(r)
            try:
                spec = point_spec(command, argv, params, d)
                code = int(run_function(command)(spec).exit_code)
            except BadInputError as exc:
                write_failure(d, command, params, f"bad input: {exc}", time.perf_counter() - start,
                              cause="bad input")
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - a failing point must not stop the sweep
                traceback.print_exc()
                write_failure(d, command, params, f"{type(exc).__name__}: {exc}", time.perf_counter() - start,
                              cause=_outside_cause(exc))
    finally:
        release_dir(d)
        text = log.getvalue()
        if text:
            with contextlib.suppress(OSError):
                atomic_write_bytes(d / LOG_TXT, text.encode())
    status = point_status(d)
    if status is None:
        write_failure(d, command, params, f"the command exited with code {code} without writing run.json",
                      time.perf_counter() - start)
        status = "failed"
    return {"status": status, "exit_code": code, "wall_time_s": time.perf_counter() - start}


def run_task(task: list[tuple[str, list[str], dict, str]], write: list[bool] | None = None,
             batched: bool = False) -> list[dict[str, Any]]:
    """Run a group of points (one task of the pool or of Dask): one after the other, or, for a batch of
    ``train`` or ``simulate`` points, together (:func:`flowsim.sweep.batching.run_train_batch`,
    :func:`flowsim.sweep.flow_batching.run_simulate_batch`; only the points with ``write[i]`` true are
    written)."""
    write = [True] * len(task) if write is None else write
    if batched:
        from .batching import run_train_batch
        from .flow_batching import run_simulate_batch

        try:
            return (run_simulate_batch if task[0][0] == "simulate" else run_train_batch)(task, write)
        finally:
            for item in task:
                release_dir(Path(item[3]))
    return [run_point(*item) if w else {"status": point_status(item[3]), "skipped": True}
            for item, w in zip(task, write)]


# ---- worker setup ---------------------------------------------------------------------------------------

def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)  # the sweep process died (e.g. SIGKILL): stop, the point is redone on resume


def init_worker(parent_pid: int, threads: int) -> None:
    """Process-pool initializer: exit when the sweep process dies; limit torch to ``threads`` threads.
    Ctrl-C is for the sweep process alone (it stops the workers itself: :meth:`LocalBackend.close`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    try:
        import torch

        torch.set_num_threads(max(1, threads))
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


@contextlib.contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    """Set the BLAS/OpenMP thread counts inherited by the worker processes started inside the block
    (only those the user has not set)."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    for k in THREAD_ENV:
        if saved[k] is None:
            os.environ[k] = str(threads)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


# ---- backends: local process pool and Dask -------------------------------------------------------------

class LocalBackend:
    """A ``concurrent.futures.ProcessPoolExecutor`` (spawned workers) that can be rebuilt after a worker
    process dies."""

    name = "local"

    def __init__(self, workers: int, threads: int = 1):
        self.workers = workers
        self.threads = threads
        self._pool = None

    def _ensure(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with _thread_env(self.threads):
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=init_worker, initargs=(os.getpid(), self.threads))
        return self._pool

    def submit(self, fn: Callable, *args: Any):
        with _thread_env(self.threads):
            return self._ensure().submit(fn, *args)

    def as_completed(self, futures: Sequence) -> Iterator:
        from concurrent.futures import as_completed

        return as_completed(futures)

    @staticmethod
    def is_worker_death(exc: BaseException) -> bool:
        from concurrent.futures.process import BrokenProcessPool

        return isinstance(exc, BrokenProcessPool)

    def reset(self) -> None:
        """Drop a broken pool; the next submit starts a new one."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def cancel(self, futures: Sequence) -> None:
        for f in futures:
            f.cancel()

    def close(self, wait: bool = True) -> None:
        """Shut the pool down; ``wait=False`` (an interrupt) also stops the running points at once: their
        workers get SIGTERM (then SIGKILL after 5 s), and the points are redone on resume."""
        if self._pool is None:
            return
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        if not wait:
            for proc in procs:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    proc.terminate()
            deadline = time.monotonic() + 5.0
            for proc in procs:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    proc.join(max(0.0, deadline - time.monotonic()))
                    if proc.is_alive():
                        proc.kill()
                        proc.join(1.0)
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self._pool = None


class DaskBackend:
    """A ``distributed.Client`` connected to ``address``; points are submitted as Dask futures.

    The sweep folder must be on a file system the workers share with this process (as on a cluster).
    """

    name = "dask"

    def __init__(self, address: str, timeout: str = "20s"):
        try:
            from distributed import Client
        except ImportError:
            raise BadInputError("--scheduler needs Dask: pip install 'flowsim[dask]'") from None
        try:
            self.client = Client(address, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise BadInputError(
                f"--scheduler {address}: cannot connect ({type(exc).__name__}: {exc})") from None

    def submit(self, fn: Callable, *args: Any):
        return self.client.submit(fn, *args, pure=False)

    def as_completed(self, futures: Sequence) -> Iterator:
        from distributed import as_completed

        return iter(as_completed(list(futures)))

    @staticmethod
    def is_worker_death(exc: BaseException) -> bool:
        return False  # Dask retries lost tasks itself; KilledWorker is recorded as a failure

    def reset(self) -> None:
        pass

    def cancel(self, futures: Sequence) -> None:
        self.client.cancel(list(futures))

    def close(self, wait: bool = True) -> None:
        self.client.close()


# ---- tasks (groups of points) ---------------------------------------------------------------------------

def make_tasks(all_points: Sequence[Point], out: Path, batch_size: int) -> list[list[Point]]:
    """Group the points into tasks: deterministic batches of ``train`` points
    (:func:`flowsim.sweep.batching.group_points`, computed from *all* points of the sweep), every other
    point alone. Only the tasks with an unfinished point are returned."""
    from .batching import group_points
    from .flow_batching import group_flow_points

    group = group_flow_points if all_points and all_points[0].command == "simulate" else group_points
    return [g for g in group(all_points, batch_size)
            if any(not is_finished(point_dir(out, p.id)) for p in g)]


def _task_payload(task: list[Point], out: Path) -> list[tuple[str, list[str], dict, str]]:
    return [(p.command, p.argv(), dict(p.params), str(point_dir(out, p.id).absolute())) for p in task]


# ---- the sweep ------------------------------------------------------------------------------------------

def write_sweep_files(cfg: SweepConfig, points: Sequence[Point], out: Path,
                      labels: dict[str, list[str]]) -> None:
    """Write ``sweep.json`` and every point's ``point.json`` (atomically)."""
    atomic_write_json(out / SWEEP_JSON, {
        "command": cfg.command, "description": cfg.description, "report": cfg.report, "config": cfg.source,
        "quick": cfg.quick, "config_text": cfg.text, "argv": command_line(), "versions": package_versions(),
        "points": [{"id": p.id, "params": p.params, "labels": labels.get(p.id, [])} for p in points],
    })
    for p in points:
        d = point_dir(out, p.id)
        info = {"id": p.id, "command": p.command, "params": p.params, "argv": p.argv(),
                "labels": labels.get(p.id, [])}
        path = d / POINT_JSON
        try:
            if read_json(path) == info:
                continue
        except (OSError, ValueError):
            pass
        atomic_write_json(path, info)


def _progress(total: int, initial: int, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="sweep", unit="point",
                disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True)


def execute(tasks: list[list[Point]], out: Path, backend, *, on_done: Callable[[Point, dict], None]) -> None:
    """Submit every task to ``backend`` and collect results as they complete (the one code path of the
    local pool and Dask). A task whose worker process died is resubmitted; a point whose worker died
    :data:`MAX_WORKER_DEATHS` times is recorded as failed. Any other infrastructure error (e.g. Dask's
    ``KilledWorker``) is recorded as a failure of the task's points. KeyboardInterrupt cancels what is
    pending and propagates."""
    deaths: dict[str, int] = {}
    pending = list(tasks)
    while pending:
        futures: dict[Any, tuple[list[Point], list[bool]]] = {}
        for t in pending:
            write = [not is_finished(point_dir(out, p.id)) for p in t]
            batched = len(t) > 1 and t[0].command in ("train", "simulate")
            futures[backend.submit(run_task, _task_payload(t, out), write, batched)] = (t, write)
        pending = []
        broken = False
        try:
            for fut in backend.as_completed(list(futures)):
                task, write = futures[fut]
                todo = [p for p, w in zip(task, write) if w]
                try:
                    results = fut.result()
                except Exception as exc:  # noqa: BLE001 - infrastructure failure, not the point's
                    if backend.is_worker_death(exc):
                        broken = True
                        again = False
                        for p in todo:
                            d = point_dir(out, p.id)
                            if is_finished(d):
                                on_done(p, {"status": point_status(d)})
                                continue
                            deaths[p.id] = deaths.get(p.id, 0) + 1
                            if deaths[p.id] >= MAX_WORKER_DEATHS:
                                msg = f"the worker process died {deaths[p.id]} times while running this point"
                                write_failure(d, p.command, dict(p.params), msg, 0.0)
                                on_done(p, {"status": "failed"})
                            else:
                                again = True
                        if again:
                            pending.append(task)  # the same batch again: the same numbers
                        continue
                    for p in todo:
                        d = point_dir(out, p.id)
                        if not is_finished(d):
                            write_failure(d, p.command, dict(p.params), f"{type(exc).__name__}: {exc}", 0.0)
                        on_done(p, {"status": point_status(d)})
                    continue
                for p, r in zip(task, results):
                    if not r.get("skipped"):
                        on_done(p, r)
        except KeyboardInterrupt:
            backend.cancel(list(futures))
            raise
        if broken:
            backend.reset()


def run_sweep(
    cfg: SweepConfig,
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    quiet: bool = True,
    threads_per_worker: int | None = None,
    backend: Any = None,
) -> SweepOutcome:
    """Run (or resume) the sweep ``cfg`` into the folder ``out`` and rebuild ``summary.csv``.

    ``workers``: size of the local process pool (default: the number of CPUs, at most the number of points
    to run); ``scheduler``: address of a Dask scheduler (then the points run as Dask futures), or
    ``backend``: a backend already connected. Finished points are skipped. Ctrl-C (or SIGTERM) stops the
    sweep and its workers, keeps what finished and rebuilds the summary (``outcome.interrupted``).
    """
    from .summary import write_summary

    start = time.perf_counter()
    out = Path(out)
    points = cfg.points()
    labels = point_labels(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_sweep_files(cfg, points, out, labels)
    todo = [p for p in points if not is_finished(point_dir(out, p.id))]
    outcome = SweepOutcome(n_points=len(points), skipped=len(points) - len(todo))
    if todo:
        if backend is not None:
            pass
        elif scheduler is not None:
            backend = DaskBackend(scheduler)
        else:
            n_cpu = os.cpu_count() or 1
            k = max(1, min(workers or n_cpu, len(todo)))
            threads = threads_per_worker or max(1, n_cpu // k)
            backend = LocalBackend(k, threads)
        bar = _progress(len(points), outcome.skipped, quiet)

        def on_done(p: Point, result: dict) -> None:
            s = result.get("status") or "failed"
            outcome.counts[s] = outcome.counts.get(s, 0) + 1
            bar.update(1)

        try:
            execute(make_tasks(points, out, cfg.batch_size), out, backend, on_done=on_done)
        except KeyboardInterrupt as exc:
            from ..runs.interrupts import deferred, note_interrupt

            note_interrupt(exc)
            outcome.interrupted = True
            with deferred():  # a second Ctrl-C must not leave the workers running
                backend.close(wait=False)
        finally:
            bar.close()
            backend.close(wait=not outcome.interrupted)
    elif backend is not None:
        backend.close()
    outcome.summary = write_summary(out)
    outcome.wall_time_s = time.perf_counter() - start
    return outcome


def point_labels(cfg: SweepConfig) -> dict[str, list[str]]:
    """The grid labels of every point (a point may belong to several grids)."""
    from .config import expand_grid

    out: dict[str, list[str]] = {}
    for axes, label in zip(cfg.grids, cfg.labels):
        for p in expand_grid(cfg.command, cfg.fixed, [axes]):
            lst = out.setdefault(p.id, [])
            if label and label not in lst:
                lst.append(label)
    return out


__all__ = ["EXIT_INTERRUPTED", "FINISHED", "DaskBackend", "LocalBackend", "SweepOutcome", "execute",
           "is_finished", "point_dir", "point_status", "run_point", "run_sweep", "run_task"]
