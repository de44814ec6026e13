"""Plots of a ``flowsim razin`` run directory (docs/math.md §10; docs/contract.md §2): ``razin.png`` (|w₁₁|
against the loss on an inverted log axis as RC20 plot it, with the discrete GD run when present; ‖W‖·√ℓ per
norm against t; σ_min against δ = √(2ℓ) with the bound σ_min < δ; det W) and ``razin_family.png`` (the
perturbed family with the rank-1 completion values zz′/ε marked) when the run holds one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowsim.io import read_json
from flowsim.plotting import pyplot

NORM_KEYS = (("norm_fro", "Frobenius"), ("norm_nuc", "nuclear"), ("norm_spec", "spectral"),
             ("norm_max", "max-entry"), ("norm_s12", "Schatten-½"))


def _save(fig, path: Path, plt) -> Path:
    from flowsim.plotting import save_figure

    return save_figure(plt, fig, path)


def _log_scales(ax, which: str) -> None:
    """Log scale on the axes named in ``which`` ("x", "y") that have positive finite data; a panel of a cut
    run without any says so instead (matplotlib cannot draw an empty log axis)."""
    lines = [line for line in ax.get_lines() if line.get_transform() is ax.transData]  # not axhline
    xs = [np.asarray(line.get_xdata(), dtype=float) for line in lines]
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in lines]
    ok = {"x": any(np.any(np.isfinite(v) & (v > 0)) for v in xs),
          "y": any(np.any(np.isfinite(v) & (v > 0)) for v in ys)}
    for axis in which:
        if ok[axis]:
            ax.set(**{f"{axis}scale": "log"})
    if not all(ok[axis] for axis in which):
        ax.text(0.5, 0.5, "no positive values to show", ha="center", transform=ax.transAxes, fontsize=8)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write ``razin.png`` (and ``razin_family.png`` with a family) into ``run_dir``; returns the paths.
    A cut run (interrupted, diverged) has few or no positive values for the log axes: its panels are drawn
    with what there is, without matplotlib's warnings about empty data."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _plot_run(Path(run_dir))


def _plot_run(d: Path) -> list[Path]:
    info = read_json(d / "run.json")
    written: list[Path] = []
    if (d / "trajectory.npz").is_file():
        with np.load(d / "trajectory.npz") as z:
            a = {k: z[k] for k in z.files}
        gd = None
        if (d / "gd.npz").is_file():
            with np.load(d / "gd.npz") as z:
                gd = {k: z[k] for k in z.files}
        written.append(plot_main(a, info, gd, d / "razin.png"))
    if (d / "family.npz").is_file():
        with np.load(d / "family.npz") as z:
            fam = {k: z[k] for k in z.files}
        written.append(plot_family(fam, info, d / "razin_family.png"))
    return written


def plot_main(a: dict[str, np.ndarray], info: dict, gd: dict[str, np.ndarray] | None, path: Path) -> Path:
    """Four panels: |w₁₁| vs ℓ (inverted log axis; flow and GD), ‖W‖·√ℓ vs t, σ_min vs δ, |det W| vs t."""
    plt = pyplot()
    p = info.get("params", {})
    sel = (a["t"] > 0) & (a["loss"] > 0)
    t, loss = a["t"][sel], a["loss"][sel]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    ax = axes[0, 0]
    flow_wall = info.get("stats", {}).get("integration_wall_time_s", info.get("wall_time_s", float("nan")))
    ax.plot(loss, np.abs(a["w11"][sel]), color="C0", lw=2, label=f"gradient flow (wall {flow_wall:.2f} s)")
    if gd is not None and gd["loss"].size:
        g = info.get("gd", {})
        ax.plot(gd["loss"], np.abs(gd["w11"]), "--", color="C3", lw=1.5,
                label=f"GD η={g.get('lr', '?')}: {g.get('iterations', 0):,} iterations "
                      f"(wall {g.get('wall_time_s', float('nan')):.2f} s, {g.get('engine', '')})")
    d = np.sqrt(2 * loss)
    ok = d < 1
    ax.plot(loss[ok], (1 - d[ok]) ** 2 / d[ok], ":", color="0.3", label="bound (1 − δ)²/δ (C2)")
    _log_scales(ax, "xy")
    ax.set(xlabel="loss ℓ (decreasing →)", ylabel="|w₁₁|")
    ax.invert_xaxis()
    ax.legend(fontsize=7, frameon=False)
    ax = axes[0, 1]
    for i, (k, label) in enumerate(NORM_KEYS):
        if k in a:
            ax.plot(t, a[k][sel] * np.sqrt(loss), color=f"C{i}", label=label)
    ax.axhline(1 / np.sqrt(2), color="0.4", ls=":", lw=1, label="1/√2")
    _log_scales(ax, "xy")
    ax.set(xlabel="t", ylabel="‖W(t)‖·√ℓ(t)  (C3)")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    ax = axes[1, 0]
    logsig = a.get("log_sigma_min")
    ls = logsig[sel] / np.log(10) if logsig is not None else np.log10(a["sigma"][sel, 1])
    ax.plot(np.log10(d), ls, color="C2", label="log₁₀ σ_min")
    ax.plot(np.log10(d), np.log10(d), ":", color="0.3", label="σ_min = δ (C4 bound)")
    ax.set(xlabel="log₁₀ δ = log₁₀ √(2ℓ)", ylabel="log₁₀ σ_min(W)")
    ax.invert_xaxis()
    ax.legend(fontsize=7, frameon=False)
    ax = axes[1, 1]
    lad = a.get("log_abs_det")
    if lad is not None:
        sign = np.sign(a["det"][sel]) if np.any(a["det"][sel] != 0) else np.ones(t.size)
        ax.plot(t, lad[sel] / np.log(10), color="C4", label="log₁₀|det W|")
        which = "+" if np.all(sign >= 0) else "−" if np.all(sign <= 0) else "changes"
        ax.set_title(f"sign of det W: {which}", fontsize=8)
    _log_scales(ax, "x")
    ax.set(xlabel="t", ylabel="log₁₀ |det W(t)|")
    ax.legend(fontsize=7, frameon=False)
    data = f"({p.get('z')}, {p.get('zp')}, {p.get('eps')})"
    fig.suptitle(f"flowsim razin  N={p.get('depth')}  (z, z′, ε)={data}  "
                 f"det {p.get('det')}  init={p.get('init')}  status {info.get('status')}", fontsize=10)
    return _save(fig, path, plt)


def plot_family(fam: dict[str, np.ndarray], info: dict, path: Path) -> Path:
    """|w₁₁| against ℓ (inverted log axis) for each ε of the family, with zz′/ε marked (C5)."""
    plt = pyplot()
    eps = fam["eps"]
    z, zp = float(fam["z"]), float(fam["zp"])
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for i, e in enumerate(eps):
        if f"loss_{i}" not in fam:  # an interrupted family: only the members run so far
            continue
        loss, w11 = fam[f"loss_{i}"], fam[f"w11_{i}"]
        sel = (loss > 0) & np.isfinite(loss) & np.isfinite(w11) & (w11 != 0)
        ax.plot(loss[sel], np.abs(w11[sel]), color=f"C{i}", label=f"ε = {e:g}")
        if e != 0:
            ax.axhline(abs(z * zp / e), color=f"C{i}", ls=":", lw=1)
    _log_scales(ax, "xy")
    ax.set(xlabel="loss ℓ (decreasing →)", ylabel="|w₁₁|",
           title=f"perturbed family (z, z′) = ({z:g}, {zp:g}); dotted: rank-1 completion |zz′/ε|")
    ax.invert_xaxis()
    ax.legend(fontsize=7, frameon=False)
    return _save(fig, path, plt)
