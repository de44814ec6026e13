"""The trajectory result object and the run-directory contract (docs/contract.md §2):
``run.json`` and ``trajectory.npz``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_savez, atomic_write_json, command_line, package_versions, read_json
from .metrics import metrics_along
from .problems import CompletionProblem

RUN_JSON = "run.json"
TRAJECTORY_NPZ = "trajectory.npz"
STATUSES = ("ok", "diverged", "failed", "interrupted")
_CORE = ("t", "sigma", "loss", "test_error", "test_rmse", "erank", "norm_fro", "norm_nuc", "norm_spec")


@dataclass
class Trajectory:
    """Metrics of the end product W(t) at saved times (docs/math.md §2; docs/contract.md).

    Arrays: ``t`` (T,), ``sigma`` (T, min(m, n)), ``loss``, ``test_error`` (relative), ``test_rmse``,
    ``erank``, ``norm_fro``, ``norm_nuc``, ``norm_spec``, ``det`` (square W only, else None), ``W0``,
    ``W_star``, ``mask``, ``W_final``, optional ``W`` (T, m, n) snapshots and ``extra`` arrays (e.g. the
    Razin–Cohen quantities). ``status``/``message``/``stats`` describe how the run ended.
    """

    t: np.ndarray
    sigma: np.ndarray
    loss: np.ndarray
    test_error: np.ndarray
    test_rmse: np.ndarray
    erank: np.ndarray
    norm_fro: np.ndarray
    norm_nuc: np.ndarray
    norm_spec: np.ndarray
    W0: np.ndarray
    W_star: np.ndarray
    mask: np.ndarray
    W_final: np.ndarray
    det: np.ndarray | None = None
    W: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    status: str = "ok"
    message: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_snapshots(
        cls,
        t: Sequence[float] | np.ndarray,
        Ws: Sequence[np.ndarray],
        problem: CompletionProblem,
        *,
        save_matrices: bool = False,
        status: str = "ok",
        message: str = "",
        stats: dict[str, Any] | None = None,
        W0: np.ndarray | None = None,
    ) -> Trajectory:
        """Compute every metric at the end-product snapshots ``Ws`` (one SVD each)."""
        Ws = [np.asarray(W, dtype=float) for W in Ws]
        with np.errstate(over="ignore"):  # a diverging run's norms may overflow to inf: record them as such
            m: dict[str, Any] = metrics_along(Ws, problem)
        return cls(
            t=np.asarray(t, dtype=float), sigma=m["sigma"],
            **{k: m[k] for k in _CORE[2:]},
            det=m.get("det"),
            W0=np.array(Ws[0] if W0 is None else W0), W_star=problem.W_star.copy(), mask=problem.mask.copy(),
            W_final=np.array(Ws[-1]), W=np.array(Ws) if save_matrices else None,
            status=status, message=message, stats=dict(stats or {}),
        )

    def __len__(self) -> int:
        return int(self.t.size)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the ``trajectory.npz`` contract."""
        out = {k: getattr(self, k) for k in _CORE}
        out.update(W0=self.W0, W_star=self.W_star, mask=self.mask, W_final=self.W_final)
        if self.det is not None:
            out["det"] = self.det
        if self.W is not None:
            out["W"] = self.W
        out.update(self.extra)
        return out

    def final_metrics(self, top: int = 10) -> dict[str, Any]:
        """Final values: time, loss, test errors, erank, norms, det and the top singular values."""
        if len(self) == 0:
            return {}
        out: dict[str, Any] = {"t": float(self.t[-1])}
        for k in _CORE[2:]:
            out[k] = float(getattr(self, k)[-1])
        if self.det is not None:
            out["det"] = float(self.det[-1])
        out["sigma_top"] = [float(v) for v in self.sigma[-1, :top]]
        for k, v in self.extra.items():
            if v.ndim == 1 and v.size == self.t.size:
                out[k] = float(v[-1])
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], run_info: dict | None = None) -> Trajectory:
        """Inverse of :meth:`arrays`."""
        run_info = run_info or {}
        known = set(_CORE) | {"W0", "W_star", "mask", "W_final", "det", "W"}
        return cls(
            **{k: arrays[k] for k in _CORE}, W0=arrays["W0"], W_star=arrays["W_star"], mask=arrays["mask"],
            W_final=arrays["W_final"], det=arrays.get("det"), W=arrays.get("W"),
            extra={k: v for k, v in arrays.items() if k not in known},
            status=run_info.get("status", "ok"), message=run_info.get("message", ""),
            stats=run_info.get("stats", {}),
        )


def write_run(
    out_dir: str | Path,
    traj: Trajectory,
    *,
    command: str,
    params: dict[str, Any],
    wall_time_s: float,
    extra_info: dict[str, Any] | None = None,
) -> Path:
    """Write ``trajectory.npz`` then ``run.json`` into ``out_dir`` atomically (docs/contract.md §2); returns
    the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_savez(out / TRAJECTORY_NPZ, traj.arrays())
    info = {
        "command": command, "argv": command_line(), "params": params, "seed": params.get("seed"),
        "status": traj.status, "message": traj.message, "wall_time_s": float(wall_time_s),
        "stats": traj.stats, "final": traj.final_metrics(), "versions": package_versions(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if extra_info:
        info.update(extra_info)
    atomic_write_json(out / RUN_JSON, info)
    return out


def load_run(run_dir: str | Path) -> tuple[Trajectory, dict[str, Any]]:
    """Read a run directory back: (trajectory, the ``run.json`` dictionary)."""
    d = Path(run_dir)
    info = read_json(d / RUN_JSON)
    if not isinstance(info, dict):
        raise ValueError(f"{d / RUN_JSON} does not hold a JSON object")
    with np.load(d / TRAJECTORY_NPZ, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return Trajectory.from_arrays(arrays, info), info
