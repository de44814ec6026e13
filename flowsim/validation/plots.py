"""Plots of a ``flowsim validate`` run: error against η with the fitted slopes, and σ_i(t) of the discrete
run over the flow's for the smallest and the largest η."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowsim.io import read_json
from flowsim.trajectory import TRAJECTORY_NPZ, load_run

VALIDATION_JSON = "validation.json"


def lr_dir(run_dir: str | Path, lr: float) -> Path:
    """The folder that holds the discrete and flow runs of step size ``lr``."""
    return Path(run_dir) / "runs" / f"lr={lr:.6g}"


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write ``validation.png`` in ``run_dir`` (a ``flowsim validate`` run); returns [its path], or []
    when the run recorded no ``validation.json`` (it stopped before its first step size). A cut run's
    panels show what there is, without matplotlib's warnings about empty data."""
    import warnings

    d = Path(run_dir)
    if not (d / VALIDATION_JSON).is_file():
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _plot_run(d)


def _plot_run(d: Path) -> list[Path]:
    from flowsim.plotting import pyplot, save_figure

    doc = read_json(d / VALIDATION_JSON)
    rows = [r for r in doc.get("rows", []) if isinstance(r, dict) and "lr" in r]
    lrs = np.array([r["lr"] for r in rows], dtype=float)
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    ax = axes[0]
    for key, label, color in (("e_sigma", "e_σ", "C0"), ("e_W", "e_W", "C3")):
        e = np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)
        ok = np.isfinite(e) & (e > 0)
        if not ok.any():
            continue
        slope, icpt = doc.get(f"slope_{key}"), doc.get(f"intercept_{key}")
        ax.plot(lrs[ok], e[ok], "o", color=color, label=label)
        if slope is not None and icpt is not None:
            x = np.geomspace(lrs[ok].min(), lrs[ok].max(), 20)
            ax.plot(
                x, np.exp(icpt) * x**slope, "-", color=color, lw=1, label=f"{label} fit: slope {slope:.2f}"
            )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="step size η",
        ylabel="max relative error over t_k = kη",
        title=f"{doc.get('optimizer')} vs {doc.get('against')}",
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=False)
    else:
        ax.text(0.5, 0.5, "no finite error", ha="center", transform=ax.transAxes)
    finite = [r["lr"] for r in rows]
    for ax, lr, which in (
        (axes[1], min(finite, default=None), "smallest"),
        (axes[2], max(finite, default=None), "largest"),
    ):
        ax.set(xlabel="t = kη", ylabel="σᵢ(t)", title=f"{which} η" + ("" if lr is None else f" = {lr:g}"))
        if lr is None:
            continue
        sub = lr_dir(d, lr)
        for kind, style in (("discrete", "-"), ("flow", "--")):
            if not (sub / kind / TRAJECTORY_NPZ).is_file():
                continue
            traj, _ = load_run(sub / kind)
            k = min(5, traj.sigma.shape[1])
            for i in range(k):
                idx = np.flatnonzero((traj.t > 0) & np.isfinite(traj.sigma[:, i]) & (traj.sigma[:, i] > 0))
                ax.plot(
                    traj.t[idx],
                    traj.sigma[idx, i],
                    style,
                    color=f"C{i}",
                    lw=1.4 if kind == "discrete" else 1.0,
                    label=f"{kind}" if i == 0 else None,
                )
        ax.set(xscale="log", yscale="log")
        ax.legend(fontsize=7, frameon=False, title="solid: discrete, dashed: flow", title_fontsize=7)
    if doc.get("status", "ok") != "ok":
        fig.text(
            0.5,
            0.005,
            f"{doc.get('status')}: {doc.get('message', '')}"[:200],
            ha="center",
            color="C3",
            fontsize=7,
        )
    return [save_figure(plt, fig, d / "validation.png")]
