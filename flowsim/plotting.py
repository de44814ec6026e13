"""Publication-quality plots of trajectories (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .trajectory import Trajectory


def _mpl():
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
    plt = _mpl()
    idx = _positive_time(traj.t)
    t = traj.t[idx]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.2))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.92, wspace=0.25, hspace=0.3)
    ax = axes[0, 0]
    sig = traj.sigma[idx]
    k = sig.shape[1]
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(highlight, 1)))
    for i in range(highlight, k):
        ax.plot(t, sig[:, i], color="0.6", lw=0.6, alpha=0.5)
    for i in range(min(highlight, k)):
        ax.plot(t, sig[:, i], color=colors[i], lw=1.8, label=f"σ{i + 1}")
    ax.set(xscale="log", yscale="log", xlabel=time_label, ylabel="singular values σᵢ(t)")
    ax.legend(loc="upper left", fontsize=7, ncol=2, frameon=False)
    ax = axes[0, 1]
    ax.plot(t, traj.erank[idx], color="C1")
    ax.set(xscale="log", xlabel=time_label, ylabel="effective rank erank(W)")
    ax = axes[1, 0]
    if np.any(np.isfinite(traj.test_error)):
        ax.plot(t, traj.test_error[idx], color="C3")
        ax.set(yscale="log")
    else:
        ax.text(0.5, 0.5, "no test set (every entry observed)", ha="center", transform=ax.transAxes)
    ax.set(xscale="log", xlabel=time_label, ylabel="relative test error")
    ax = axes[1, 1]
    ax.plot(t, traj.loss[idx], color="C0")
    ax.set(xscale="log", yscale="log", xlabel=time_label, ylabel="training loss ℓ(W)")
    if traj.status != "ok":
        fig.text(0.5, 0.005, f"run {traj.status}: {traj.message}", ha="center", color="C3", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
