"""Publication-quality plots of trajectories (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .trajectory import Trajectory


def pyplot() -> Any:
    """matplotlib's ``pyplot`` on the Agg backend (unless one is already chosen) with flowsim's style: the
    one place where flowsim's figures get their backend and rcParams."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _positive_time(t: np.ndarray) -> np.ndarray:
    """Indices with t > 0 (log-time axes cannot show t = 0)."""
    return np.flatnonzero(t > 0)


def plot_trajectory(
    traj: Trajectory,
    path: str | Path,
    *,
    title: str = "",
    highlight: int = 5,
    time_label: str = "t (flow time)",
) -> Path:
    """One PNG with four panels over log time: σ_i(t) (top ``highlight`` bold, the rest faint), erank(t),
    test error(t) and loss(t)."""
    plt = pyplot()
    idx = _positive_time(traj.t)
    t = traj.t[idx]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.2))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.92, wspace=0.25, hspace=0.3)
    if t.size == 0:
        fig.text(0.5, 0.5, "no state after t = 0 was recorded", ha="center", fontsize=10)
    ax = axes[0, 0]
    sig = traj.sigma[idx]
    k = sig.shape[1] if sig.ndim == 2 else 0
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(highlight, 1)))
    shown = False
    for i in range(k):
        keep = np.isfinite(sig[:, i]) & (sig[:, i] > 0)
        if not np.any(keep):
            continue
        shown = True
        style = dict(color=colors[i], lw=1.8, label=f"σ{i + 1}") if i < highlight else dict(
            color="0.6", lw=0.6, alpha=0.5)
        ax.plot(t[keep], sig[keep, i], **style)
    if shown:
        ax.set(yscale="log")
        ax.legend(loc="upper left", fontsize=7, ncol=2, frameon=False)
    else:
        ax.text(0.5, 0.5, "no positive finite σ to show", ha="center", transform=ax.transAxes, fontsize=8)
    ax.set(xscale="log", xlabel=time_label, ylabel="singular values σᵢ(t)")
    ax = axes[0, 1]
    er = traj.erank[idx]
    ax.plot(t[np.isfinite(er)], er[np.isfinite(er)], color="C1")
    ax.set(xscale="log", xlabel=time_label, ylabel="effective rank erank(W)")
    ax = axes[1, 0]
    if np.any(np.isfinite(traj.test_error)):
        _log_panel(ax, t, traj.test_error[idx], "no positive finite test error to show", color="C3")
    else:
        ax.text(0.5, 0.5, "no test set (every entry observed)", ha="center", transform=ax.transAxes)
    ax.set(xscale="log", xlabel=time_label, ylabel="relative test error")
    ax = axes[1, 1]
    _log_panel(ax, t, traj.loss[idx], "no positive finite loss to show", color="C0")
    ax.set(xlabel=time_label, ylabel="training loss ℓ(W)")
    if traj.status != "ok":
        fig.text(0.5, 0.005, f"run {traj.status}: {traj.message}", ha="center", color="C3", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(plt, fig, path)


def save_figure(plt, fig, path: str | Path) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically (a temporary file in the same folder, then rename; the
    temporary file is removed when saving fails) and close it."""
    import contextlib

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        plt.close(fig)
    return path


def _log_panel(ax, t: np.ndarray, y: np.ndarray, note: str, **kw) -> None:
    """Plot y(t) on log-log axes; values ≤ 0 or non-finite cannot be shown on a log scale: plot the
    positive finite part, and write ``note`` when nothing is left."""
    keep = np.isfinite(y) & (y > 0)
    if not np.any(keep):
        ax.text(0.5, 0.5, note, ha="center", transform=ax.transAxes, fontsize=8)
        ax.set(xscale="log")
        return
    ax.plot(t[keep], y[keep], **kw)
    ax.set(xscale="log", yscale="log")
