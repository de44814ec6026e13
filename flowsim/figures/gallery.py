"""The README gallery: one function per figure, each drawn from cached run directories
(:mod:`flowsim.figures.jobs`).

Every figure is a :class:`Figure`: ``jobs(setting)`` lists the runs it needs, ``draw(dirs, setting, out,
pdf)`` plots them. :data:`FIGURES` lists them in gallery order; :data:`PAPER` is the papers' setting
(docs/math.md §2, §13) and :data:`PREVIEW` a small problem that builds every figure in
minutes rather than hours (tests, a quick look; its Adam runs at depth ≥ 2 take 10–300 s each).

Horizons and integration budgets (why the runs look as they do):

* gradient flow on the end product (docs/math.md §4) from balanced Gaussian factors of scale 1e-3 leaves the
  origin at t ≈ 10²–10³ (later for deeper N) and has converged by t = 10⁴; DOP853 at rtol 1e-7.
* the Adam flow ``adam-layer`` (docs/math.md §8.2) moves every entry at speed O(1): it fits within t ≈ 0.1–1,
  then its vector field −g/√(g² + var g) tends to a sign flow with ever faster modes. These runs use RK45
  at rtol 1e-5 with a fixed budget of steps (deterministic); the arrival driver
  (:func:`flowsim.integrator.solve_with_arrival`) continues the stiff part with Radau and the analytic
  Jacobian (small states) or RK45 at its stability limit (100×100: ~20 000 steps), and holds the state once
  the arrival is complete. The plots mark with × where a run stopped before its horizon.
* at depth N = 1 the ratio penalty's gradient UVᵀ/‖W‖_F − ‖W‖_*W/‖W‖_F³ (docs/math.md §3) does not vanish as
  a singular value σ_i → 0 (there is no σ^{2−2/N} factor as for N ≥ 2): σ_i reaches 0 in finite time and the
  flow slides along σ_i = 0. Gradient flow there is the Filippov flow of docs/math.md §9 (rank-changing
  events, DOP853 at rtol 1e-7, run to t = 10⁴). Figure 3's Adam row is the Adam ODE (BB21, docs/math.md §8.3)
  at the paper's η = 0.01 to t = kη = 10, RK45 at rtol 1e-5 with no budget, drawn over discrete Adam at the
  same η (a ``train`` job). Not the fixed-β limit ``adam-sign``: on this problem it collapses W to rank 1
  within t ≈ 0.003, less than one step at η = 0.01, onto a 99×99 null block where no sliding rule is
  validated (docs/math.md §8.8).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import style
from .jobs import Job

# ---- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """Everything that fixes the gallery's numbers (part of every job spec, so changing it recomputes)."""

    name: str
    problem: dict[str, Any]
    init_scale: float = 1e-3
    depths: tuple[int, ...] = (1, 2, 3, 4, 5)
    zhao_depths: tuple[int, ...] = (2, 3, 4, 5)
    zhao_lam: float = 1e-4
    depth1_lams: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
    gf_t_end: float = 1e4
    gf_n_save: int = 120
    adam_t_end: float = 1.0
    #: figure 3's Adam row: the Adam ODE (BB21) at Zhao22's step η = 0.01, to t = kη = 10 (10³ steps)
    depth1_adam_t_end: float = 10.0
    adam_lr: float = 0.01
    n_save_budgeted: int = 80
    step_budget: int = 400000  # Adam runs, depth ≥ 2: paper N = 3 without penalty needs 20 316 steps,
    # N = 2 153 206 (its arrival at ℓ = 0 is slower)
    budget_rtol: float = 1e-5
    razin_t_end: float = 1e7
    razin_n_save: int = 300
    validation_problem: dict[str, Any] = field(default_factory=lambda: {
        "m": 10, "n": 10, "rank": 2, "observed": 60, "seed": 0, "reduction": "mean", "scale": 1.0})
    gd_lrs: tuple[float, ...] = (0.2, 0.1, 0.05, 0.025, 0.0125)
    adam_lrs: tuple[float, ...] = (0.004, 0.002, 0.001, 0.0005, 0.00025)
    check_quick: bool = False


PAPER = Setting("paper", {"m": 100, "n": 100, "rank": 5, "observed": 2000, "seed": 0, "reduction": "mean",
                          "scale": 1.0})
PREVIEW = replace(
    PAPER, name="preview",
    problem={"m": 16, "n": 16, "rank": 2, "observed": 100, "seed": 0, "reduction": "mean", "scale": 1.0},
    gf_t_end=2e3, gf_n_save=60, n_save_budgeted=40, step_budget=1000, razin_t_end=1e5,
    razin_n_save=120,
    gd_lrs=(0.2, 0.1, 0.05, 0.025), adam_lrs=(0.004, 0.002, 0.001, 0.0005), check_quick=True,
)
SETTINGS = {"paper": PAPER, "preview": PREVIEW}


def _lam_tag(lam: float) -> str:
    return "0" if lam == 0 else f"{lam:.0e}".replace("e-0", "e-")


#: Adam's β in the gallery's Adam ODE and discrete Adam runs (torch.optim's defaults, as in the papers)
ADAM_BETAS = {"beta1": 0.9, "beta2": 0.999}


def _run_spec(s: Setting, kind: str, depth: int, lam: float) -> dict[str, Any]:
    """What every run of the gallery shares: the setting's problem and init, the depth and the ratio penalty
    at ``lam`` (none when 0)."""
    return {"kind": kind, "setting": s.name, "problem": s.problem, "depth": int(depth),
            "penalty": "ratio" if lam > 0 else "none", "lam": float(lam), "init": "balanced-gaussian",
            "init_scale": s.init_scale, "init_seed": 0}


def sim_job(s: Setting, flow: str, depth: int, lam: float) -> Job:
    """A simulate run of ``flow`` at ``depth`` with the ratio penalty at ``lam`` (none when 0)."""
    spec = {**_run_spec(s, "simulate", depth, lam), "flow": flow}
    budgeted = flow not in ("gf", "adam-ode")  # gf at depth 1 with the ratio penalty is the Filippov flow
    if flow == "gf":
        spec.update(model="end-product", t_end=s.gf_t_end)
    else:
        spec.update(model="layers", t_end=s.depth1_adam_t_end if depth == 1 else s.adam_t_end)
    if flow == "adam-ode":  # the BB21 model of discrete Adam at the paper's η, from t0 = η; no budget
        spec.update(options={"lr": s.adam_lr, **ADAM_BETAS}, n_save=s.n_save_budgeted,
                    method="RK45", rtol=s.budget_rtol, atol=s.budget_rtol * 1e-2, max_steps=None)
    elif budgeted:
        spec.update(n_save=s.n_save_budgeted, t_min=spec["t_end"] * 1e-5, method="RK45", rtol=s.budget_rtol,
                    atol=s.budget_rtol * 1e-3, max_steps=s.step_budget)
    else:
        spec.update(n_save=s.gf_n_save, t_min=spec["t_end"] * 1e-5, method="DOP853", rtol=1e-7, atol=1e-10,
                    max_steps=None)
    return Job(f"{flow}_N{depth}_lam{_lam_tag(lam)}_{s.name}", spec)


def adam_train_job(s: Setting, depth: int, lam: float) -> Job:
    """Discrete Adam at the paper's η (β = (0.9, 0.999), ε = 1e-8) with the ratio penalty at ``lam`` (none
    when 0), from the same init as :func:`sim_job` and for the same flow time as the depth-1 Adam ODE run: the
    reference the ``adam-ode`` row is drawn against."""
    spec = {**_run_spec(s, "train", depth, lam), "optimizer": "adam", "lr": s.adam_lr,
            "iters": int(round(s.depth1_adam_t_end / s.adam_lr)), "hyper": {**ADAM_BETAS, "eps": 1e-8},
            "n_record": s.n_save_budgeted}
    return Job(f"adam_N{depth}_lam{_lam_tag(lam)}_{s.name}", spec)


# ---- loading ----------------------------------------------------------------------------------------------

def load(dirs: dict[str, Path], job: Job):
    """(trajectory, run.json) of a simulate job."""
    from flowsim.trajectory import load_run

    return load_run(dirs[job.label])


def _at_least_a_decade(ax) -> None:
    """Widen a log y axis to span at least one decade (no 9.9997×10⁻¹ tick labels for flat curves)."""
    lo, hi = ax.get_ylim()
    if hi / lo < 10:
        ax.set_ylim(min(lo, hi / 10), hi * 1.05)


def _stopped(traj) -> bool:
    return traj.status != "ok"


def _series(ax, t, y, color, *, stopped: bool, **kw) -> None:
    """Plot y(t) on positive times; mark the last point with × when the run stopped early."""
    idx = style.positive(t)
    idx = idx[np.isfinite(y[idx]) & (y[idx] > 0)] if ax.get_yscale() == "log" else idx
    if idx.size == 0:
        return
    ax.plot(t[idx], y[idx], color=color, **kw)
    if stopped:
        style.mark_stop(ax, t[idx[-1]], y[idx[-1]], color)


# ---- figure 1: gradient flow across depths ------------------------------------------------------------

def jobs_gf_depths(s: Setting) -> list[Job]:
    """Gradient flow, no penalty, every depth."""
    return [sim_job(s, "gf", N, 0.0) for N in s.depths]


def draw_gf_depths(dirs: dict[str, Path], s: Setting, out: Path, pdf: bool) -> list[Path]:
    """σ_1..σ_10(t) per depth (one panel each), erank(t) and test error(t) of all depths beneath."""
    from flowsim.metrics import effective_rank

    plt = style.pyplot()
    depths = list(s.depths)
    fig = plt.figure(figsize=(13, 7.2), constrained_layout=True)
    gs = fig.add_gridspec(2, 2 * len(depths))
    top = [fig.add_subplot(gs[0, 2 * i:2 * i + 2]) for i in range(len(depths))]
    for ax in top[1:]:
        ax.sharey(top[0])
    half = len(depths)
    ax_er = fig.add_subplot(gs[1, :half])
    ax_te = fig.add_subplot(gs[1, half:])
    s_star = None
    for ax, N in zip(top, depths):
        traj, _ = load(dirs, sim_job(s, "gf", N, 0.0))
        if s_star is None:
            s_star = np.linalg.svd(traj.W_star, compute_uv=False)
        c = style.depth_color(N)
        ax.set(xscale="log", yscale="log")
        k = min(10, traj.sigma.shape[1])
        for i in range(k):
            strong = i < s.problem["rank"]
            _series(ax, traj.t, traj.sigma[:, i], c, stopped=_stopped(traj) and i == 0,
                    lw=1.7 if strong else 0.9, alpha=1.0 if strong else 0.45)
        for v in s_star[: s.problem["rank"]]:
            ax.axhline(v, color="0.35", ls=":", lw=0.8)
        ax.set_title(f"N = {N}", color=c, fontweight="bold")
        ax.set_xlabel("t")
        if N != depths[0]:
            ax.tick_params(labelleft=False)
        else:
            ax.set_ylabel("σᵢ(t), i = 1..10")
        _series(ax_er, traj.t, traj.erank, c, stopped=_stopped(traj), label=f"N = {N}")
        ax_te.set(yscale="log")
        _series(ax_te, traj.t, traj.test_error, c, stopped=_stopped(traj), label=f"N = {N}")
    top[0].set_ylim(bottom=max(top[0].get_ylim()[0], 1e-4))
    erank_star = effective_rank(s_star)
    ax_er.axhline(erank_star, color="0.35", ls=":", lw=1, label=f"erank(W*) = {erank_star:.2f}")
    ax_er.set(xscale="log", yscale="log", xlabel="t", ylabel="effective rank erank(W(t))")
    ax_er.legend(loc="lower left", ncol=2)
    ax_te.set(xscale="log", xlabel="t", ylabel="relative test error on the unobserved entries")
    ax_te.legend(loc="lower left", ncol=2)
    p = s.problem
    fig.suptitle(f"Gradient flow, depths N = 1..{depths[-1]}: {p['m']}×{p['n']}, rank {p['rank']}, "
                 f"{p['observed']} observed entries, balanced init of scale {s.init_scale:g} "
                 "(dotted: σᵢ(W*))",
                 fontsize=11.5)
    return style.save(fig, out, "fig1_gf_depths", pdf)


# ---- figure 2: Zhao22-style panels for gradient flow and the Adam flow ------------------------------

def jobs_zhao22(s: Setting) -> list[Job]:
    """gf and adam-layer at depths 2–5, without penalty and with the ratio penalty at λ = zhao_lam."""
    return [sim_job(s, flow, N, lam) for flow in ("gf", "adam-layer") for N in s.zhao_depths
            for lam in (0.0, s.zhao_lam)]


def _zhao22_panels(dirs: dict[str, Path], s: Setting, flow: str, title: str):
    plt = style.pyplot()
    fig, axes = plt.subplots(3, 2, figsize=(10, 9.4), sharex=True, sharey="row", constrained_layout=True)
    any_stop = False
    for col, lam in enumerate((0.0, s.zhao_lam)):
        for N in s.zhao_depths:
            traj, _ = load(dirs, sim_job(s, flow, N, lam))
            c = style.depth_color(N)
            stop = _stopped(traj)
            any_stop |= stop
            for ax in axes[:, col]:
                ax.set(xscale="log", yscale="log")
            _series(axes[0, col], traj.t, traj.test_error, c, stopped=stop, label=f"N = {N}")
            _series(axes[1, col], traj.t, traj.erank, c, stopped=stop, label=f"N = {N}")
            _series(axes[2, col], traj.t, traj.sigma[:, 0], c, stopped=stop, label=f"N = {N}")
            if traj.sigma.shape[1] >= 5:
                _series(axes[2, col], traj.t, traj.sigma[:, 4], c, stopped=stop, ls=":")
        axes[0, col].set_title("no penalty" if lam == 0 else rf"ratio penalty $\|W\|_*/\|W\|_F$, λ = {lam:g}")
        axes[2, col].set_xlabel("t (flow time)" if flow == "gf" else "t = kη (flow time)")
    axes[0, 0].set_ylabel("relative test error")
    axes[1, 0].set_ylabel("effective rank erank(W)")
    axes[2, 0].set_ylabel("σ₁(t) solid, σ₅(t) dotted")
    axes[0, 0].legend(loc="lower left")
    note = "\n× : the solver stopped at its step budget (sign-flow-like regime, see docs/gallery.md)"
    note = note if any_stop else ""
    fig.suptitle(title + note, fontsize=11.5)
    return fig


def draw_zhao22(dirs: dict[str, Path], s: Setting, out: Path, pdf: bool) -> list[Path]:
    """3×2 panels (test error, erank, σ₁/σ₅ over t; without/with penalty) for gf and for adam-layer."""
    p = s.problem
    where = f"{p['m']}×{p['n']}, rank {p['rank']}, {p['observed']} observed"
    depths = f"depths {s.zhao_depths[0]}–{s.zhao_depths[-1]}"
    fig = _zhao22_panels(dirs, s, "gf", f"Gradient flow, {depths} ({where})")
    written = style.save(fig, out, "fig2a_zhao22_gf", pdf)
    fig = _zhao22_panels(dirs, s, "adam-layer", f"Adam flow (adam-layer), {depths} ({where})")
    return written + style.save(fig, out, "fig2b_zhao22_adam", pdf)


# ---- figure 3: depth 1 with the ratio penalty over λ -----------------------------------------------------

def jobs_depth1_ratio(s: Setting) -> list[Job]:
    """Depth 1, gf and adam-ode (the BB21 model of discrete Adam at the paper's η), ratio penalty at each λ
    of ``depth1_lams``."""
    return ([sim_job(s, flow, 1, lam) for flow in ("gf", "adam-ode") for lam in s.depth1_lams]
            + [adam_train_job(s, 1, lam) for lam in s.depth1_lams])


def draw_depth1_ratio(dirs: dict[str, Path], s: Setting, out: Path, pdf: bool) -> list[Path]:
    """Rows gf / adam-ode; columns test error(t), erank(t), final spectrum σ_i; one colour per λ."""
    plt = style.pyplot()
    colors = style.lam_colors(s.depth1_lams)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.4), constrained_layout=True)
    any_stop = False
    for row, (flow, name) in enumerate((("gf", "gradient flow"),
                                         ("adam-ode", f"adam-ode, η = {s.adam_lr:g}"))):
        ax_te, ax_er, ax_sp = axes[row]
        for ax in (ax_te, ax_er):
            ax.set(xscale="log", yscale="log")
        ax_sp.set(yscale="log")
        for lam in s.depth1_lams:
            traj, _ = load(dirs, sim_job(s, flow, 1, lam))
            c = colors[lam]
            stop = _stopped(traj)
            any_stop |= stop
            label = "λ = 0" if lam == 0 else f"λ = {lam:g}"
            if stop:
                label += f" (stopped at t = {traj.t[-1]:.2g})"
            _series(ax_te, traj.t, traj.test_error, c, stopped=stop, label=label)
            _series(ax_er, traj.t, traj.erank, c, stopped=stop, label=label)
            if flow == "adam-ode":  # discrete Adam at the same η, the reference the ODE models (dotted)
                disc, _ = load(dirs, adam_train_job(s, 1, lam))
                _series(ax_te, disc.t, disc.test_error, c, stopped=_stopped(disc), ls=":", lw=1.6)
                _series(ax_er, disc.t, disc.erank, c, stopped=_stopped(disc), ls=":", lw=1.6)
                dsig = disc.sigma[-1]
                ax_sp.plot(np.arange(1, dsig.size + 1), np.where(dsig > 0, dsig, np.nan), ":", color=c,
                           lw=1.2)
            sig = traj.sigma[-1]
            sig = np.where(sig > 0, sig, np.nan)
            ax_sp.plot(np.arange(1, sig.size + 1), sig, ".-", color=c, ms=3, lw=1, label=label)
        _at_least_a_decade(ax_te)
        _at_least_a_decade(ax_er)
        ax_te.set(ylabel="relative test error", title=f"{name}: test error")
        ax_er.set(ylabel="effective rank erank(W)", title=f"{name}: effective rank")
        ax_sp.set(xlabel="index i", ylabel="σᵢ at the last saved time", title=f"{name}: final spectrum")
        ax_sp.legend(loc="center", bbox_to_anchor=(0.5, 0.53), fontsize=8)  # the empty band of the spectra
        for ax in (ax_te, ax_er):
            ax.set_xlabel("t (flow time)" if flow == "gf" else "t = kη (flow time)")
    p = s.problem
    note = "\n×: the run stopped before its horizon (why: docs/gallery.md)" if any_stop else ""
    note += f"\nAdam row: solid the Adam ODE (BB21), dotted discrete Adam at η = {s.adam_lr:g}, k = t/η"
    fig.suptitle(rf"Depth N = 1 with the ratio penalty $\lambda\|W\|_*/\|W\|_F$ ({p['m']}×{p['n']}, "
                 f"rank {p['rank']}, {p['observed']} observed){note}", fontsize=11)
    return style.save(fig, out, "fig3_depth1_ratio", pdf)


# ---- figure 4: Razin–Cohen -------------------------------------------------------------------------------

def jobs_razin(s: Setting) -> list[Job]:
    """``flowsim razin --family`` at depth 3 (RC20 protocol, docs/math.md §10)."""
    return [Job(f"razin_N3_{s.name}", {"kind": "razin", "setting": s.name, "depth": 3, "init": "balanced",
                                       "t_end": s.razin_t_end, "n_save": s.razin_n_save, "family": True})]


def draw_razin(dirs: dict[str, Path], s: Setting, out: Path, pdf: bool) -> list[Path]:
    """|w₁₁| against ℓ (inverted log axis), ‖W‖·√ℓ per norm, and the perturbed family (RC20)."""
    from flowsim.io import read_json

    d = dirs[jobs_razin(s)[0].label]
    info = read_json(d / "run.json")
    with np.load(d / "trajectory.npz") as z:
        a = {k: z[k] for k in z.files}
    with np.load(d / "family.npz") as z:
        fam = {k: z[k] for k in z.files}
    plt = style.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6), constrained_layout=True)
    sel = (a["t"] > 0) & (a["loss"] > 0)
    loss = a["loss"][sel]
    delta = np.sqrt(2 * loss)
    ax = axes[0]
    ax.plot(loss, np.abs(a["w11"][sel]), color=style.depth_color(3), lw=2, label="gradient flow, N = 3")
    ok = delta < 1
    ax.plot(loss[ok], (1 - delta[ok]) ** 2 / delta[ok], ":", color="0.25",
            label="lower bound (1 − δ)²/δ, δ = √(2ℓ)")
    ax.set(xscale="log", yscale="log", xlabel="loss ℓ (decreasing →)", ylabel="|w₁₁| (the unobserved entry)",
           title="(z, z′, ε) = (1, 1, 0): |w₁₁| → ∞ as ℓ → 0")
    ax.invert_xaxis()
    ax.legend(loc="upper left")
    ax = axes[1]
    norms = (("norm_fro", "Frobenius"), ("norm_nuc", "nuclear"), ("norm_spec", "spectral"),
             ("norm_max", "max-entry"), ("norm_s12", "Schatten-½"))
    for i, (k, label) in enumerate(norms):
        if k in a:
            ax.plot(loss, a[k][sel] * np.sqrt(loss), color=f"C{i}", label=label)
    ax.axhline(1 / math.sqrt(2), color="0.25", ls=":", lw=1, label="1/√2")
    ax.set(xscale="log", yscale="log", xlabel="loss ℓ (decreasing →)", ylabel="‖W(t)‖·√ℓ(t)",
           title="every norm grows like 1/√ℓ (C3)")
    ax.invert_xaxis()
    ax.legend(loc="lower right", ncol=2)
    ax = axes[2]
    z, zp = float(fam["z"]), float(fam["zp"])
    floor = 1e-12
    for i, e in enumerate(fam["eps"]):
        lo, w = fam[f"loss_{i}"], np.abs(fam[f"w11_{i}"])
        keep = (lo > floor) & (w > 0)
        ax.plot(lo[keep], w[keep], color=f"C{i}", label=f"ε = {e:g}")
        if e != 0:
            ax.axhline(abs(z * zp / e), color=f"C{i}", ls=":", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="loss ℓ (decreasing →)", ylabel="|w₁₁|",
           title=f"perturbed data (z, z′) = ({z:g}, {zp:g}); dotted: |zz′/ε|")
    ax.set_xlim(10.0, floor)  # decreasing loss to the right, as in the other panels
    ax.legend(loc="lower right")
    verdicts = ", ".join(f"{k} {v}" for k, v in info.get("verdicts", {}).items() if v != "n/a")
    fig.suptitle(f"Razin–Cohen 2×2 completion (RC20), depth 3, balanced init; checks: {verdicts}",
                 fontsize=11.5)
    return style.save(fig, out, "fig4_razin", pdf)


# ---- figure 5: validation against discrete optimizers ---------------------------------------------------

PAIRS = (("gd", "gf", 1.0, "GD vs gradient flow"), ("gd", "gd-modified", 2.0, "GD vs modified flow (BD21)"),
         ("adam", "adam-ode", 1.0, "Adam vs Adam ODE (BB21)"))


def jobs_validation(s: Setting) -> list[Job]:
    """GD/gf, GD/gd-modified and Adam/adam-ode over step sizes (docs/math.md §11)
    on a small problem, depth 3."""
    jobs = []
    for opt, against, _, _ in PAIRS:
        spec = {"kind": "validate", "setting": s.name, "problem": s.validation_problem, "depth": 3,
                "init": "balanced-gaussian", "init_scale": 1.0, "init_seed": 0, "optimizer": opt,
                "against": against}
        if opt == "gd":
            spec.update(lrs=list(s.gd_lrs), t_end=20.0, n_record=25, beta_scaling="fixed")
        else:
            spec.update(lrs=list(s.adam_lrs), t_end=0.5, n_record=15, beta_scaling="bb21")
        jobs.append(Job(f"validate_{opt}_{against}_{s.name}", spec))
    return jobs


def draw_validation(dirs: dict[str, Path], s: Setting, out: Path, pdf: bool) -> list[Path]:
    """Error against η with the fitted log-log slopes, one panel per optimizer/flow pair."""
    from flowsim.io import read_json

    plt = style.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), constrained_layout=True)
    for ax, job, (_opt, against, expected, title) in zip(axes, jobs_validation(s), PAIRS):
        doc = read_json(dirs[job.label] / "validation.json")
        rows = doc["rows"]
        lrs = np.array([r["lr"] for r in rows], dtype=float)
        c = style.PAIR_COLORS[against]
        for key, marker, label, shade in (("e_sigma", "o", "e_σ", 1.0), ("e_W", "s", "e_W", 0.55)):
            e = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
            ok = np.isfinite(e) & (e > 0)
            slope, icpt = doc.get(f"slope_{key}"), doc.get(f"intercept_{key}")
            lab = label if slope is None else f"{label}: fitted slope {slope:.2f}"
            ax.plot(lrs[ok], e[ok], marker, color=c, alpha=shade, ms=6, label=lab)
            if slope is not None and icpt is not None and ok.sum() >= 2:
                x = np.geomspace(lrs[ok].min(), lrs[ok].max(), 20)
                ax.plot(x, np.exp(icpt) * x ** slope, "-", color=c, alpha=shade, lw=1.2)
        ax.set(xscale="log", yscale="log", xlabel="step size η",
               ylabel="max relative error over tₖ = kη", title=f"{title}\n(expected slope {expected:g})")
        from matplotlib.ticker import NullFormatter

        ax.set_xticks(lrs, [f"{x:g}" for x in lrs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(loc="upper left")
    p = s.validation_problem
    fig.suptitle(f"Discrete optimizers against their continuous-time models ({p['m']}×{p['n']}, "
                 f"rank {p['rank']}, {p['observed']} observed, depth 3; Adam with β scaled as in BB21)",
                 fontsize=11.5)
    return style.save(fig, out, "fig5_validation", pdf)


# ---- figure 6: the theory checker ------------------------------------------------------------

def jobs_checker(s: Setting) -> list[Job]:
    """Every registered claim (docs/contract.md §4)."""
    return [Job(f"check_{'quick' if s.check_quick else 'full'}",
                {"kind": "check", "quick": s.check_quick, "seed": 0})]


ZERO_FLOOR = 1e-17


def draw_checker(dirs: dict[str, Path], s: Setting, out: Path, pdf: bool) -> list[Path]:
    """Each claim's relative residual on a log axis, coloured by verdict, with its tolerance."""
    from flowsim.io import read_json

    records = read_json(dirs[jobs_checker(s)[0].label] / "check.json")
    plt = style.pyplot()
    n = len(records)
    fig, ax = plt.subplots(figsize=(10, 0.27 * n + 1.6), constrained_layout=True)
    y = np.arange(n)[::-1]
    for yi, r in zip(y, records):
        res = r["residual"]
        res = float("nan") if res is None or isinstance(res, str) else float(res)
        c = style.VERDICT_COLORS.get(r["verdict"], "0.5")
        if math.isfinite(res) and res > 0:
            ax.plot([res], [yi], "o", color=c, ms=7, zorder=3)
        elif math.isfinite(res):  # exactly 0: the bound held with margin (or the identity is exact)
            ax.plot([ZERO_FLOOR], [yi], "<", color=c, ms=7, zorder=3)
        else:
            ax.text(ZERO_FLOOR, yi, " test raised", va="center", color=c, fontsize=8)
        ax.plot([r["tolerance"]], [yi], "|", color="0.15", ms=11, mew=1.6, zorder=2)
    ax.set_yticks(y, [f"{r['id']}  ({r['source']})" for r in records], fontsize=8.5)
    ax.set_xscale("log")
    ax.set_xlim(ZERO_FLOOR / 3, 1e6)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("relative residual of the claim against an independent exact route")
    from matplotlib.lines import Line2D

    counts = {v: sum(r["verdict"] == v for r in records) for v in style.VERDICT_COLORS}
    handles = [Line2D([], [], marker="o", ls="none", color=c, label=f"{v} ({counts[v]})")
               for v, c in style.VERDICT_COLORS.items()]
    handles += [Line2D([], [], marker="|", ls="none", color="0.15", ms=11, mew=1.6, label="tolerance"),
                Line2D([], [], marker="<", ls="none", color="0.4", label="residual exactly 0")]
    ax.legend(handles=handles, loc="upper right", ncol=3, fontsize=8.5, frameon=True, framealpha=0.95)
    ax.set_ylim(-0.7, n + 1.6)  # room for the legend above the first claim
    ax.set_title(f"flowsim check{' --quick' if s.check_quick else ''}: {n} claims "
                 f"(ACH18, Zhao22, RC20, SMG14)")
    ax.grid(axis="y", alpha=0.15)
    return style.save(fig, out, "fig6_checker", pdf)


# ---- the gallery ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A gallery entry: its name (``--only``), number, the runs it needs, how to draw it, and the one
    sentence the README shows under it."""

    name: str
    number: int
    jobs: Callable[[Setting], list[Job]]
    draw: Callable[[dict[str, Path], Setting, Path, bool], list[Path]]
    sentence: str


FIGURES: dict[str, Figure] = {f.name: f for f in (
    Figure("gf-depths", 1, jobs_gf_depths, draw_gf_depths,
           "Gradient flow from a small balanced initialization (100×100, rank 5, 2000 observed entries): "
           "the deeper the network, the later and more abruptly it leaves the origin and learns the "
           "singular values of W* in turn; depths 3–5 end at erank(W*) with test error ≈ 1e-3, depth 2 "
           "keeps spurious singular values (erank ≈ 8, test error ≈ 0.2) and depth 1 never fills the "
           "unobserved entries (test error 1)."),
    Figure("zhao22", 2, jobs_zhao22, draw_zhao22,
           "Zhao22-style panels at depths 2–5 for gradient flow (2a) and the Adam flow adam-layer (2b): "
           "test error, effective rank and σ₁ (solid) / σ₅ (dotted) without penalty and with the ratio "
           "penalty at λ = 1e-4; the Adam flow fits within flow time ≈ 0.3 instead of ≈ 10³, then turns "
           "into a sign-flow-like system that the arrival driver follows to t = 1."),
    Figure("depth1-ratio", 3, jobs_depth1_ratio, draw_depth1_ratio,
           "At depth 1 only the penalty can lower the rank. Gradient flow (the Filippov flow, to t = 10⁴) "
           "with the ratio penalty at λ ≥ 1e-3 first collapses W to rank 1, then singular values leave 0 one"
           " by one; it ends with 93, 65 and 20 nonzero singular values and test error 0.99, 0.93 and 0.63 "
           "at λ = 1e-3, 1e-2, 1e-1. Adam at the paper's η = 0.01 (its ODE, solid, over discrete Adam, "
           "dotted) fits the observed entries within 1000 steps and the penalty lowers erank(W) from 69 to "
           "48–50 (λ ≤ 1e-2) and 21 / 18 (ODE / Adam) at λ = 0.1, with the test error still ≈ 1; no run "
           "stops early."),
    Figure("razin", 4, jobs_razin, draw_razin,
           "The Razin–Cohen 2×2 completion (RC20), depth 3: as ℓ → 0 the unobserved |w₁₁| follows the bound"
           " (1 − δ)²/δ to infinity and ‖W‖·√ℓ tends to ≈ 1/√2 for all five norms, so no norm is being "
           "minimized; with perturbed data (z, z′) = (−2, 0.5), w₁₁ settles at the rank-1 completion zz′/ε."),
    Figure("validation", 5, jobs_validation, draw_validation,
           "Discrete optimizers against their continuous models over the step size η: GD vs gradient flow "
           "and Adam vs the Adam ODE (BB21 β scaling) converge at order 1 (fitted slopes ≈ 1.0 and ≈ 1.1), "
           "GD vs the modified flow (BD21) at order 2 (slope 2.0)."),
    Figure("checker", 6, jobs_checker, draw_checker,
           "Every claim of flowsim check with its relative residual on a log axis and its tolerance, "
           "coloured by verdict: 18 hold (ACH18 Eq. 4, balancedness, the corrected Zhao22 Eq. 7, RC20 "
           "C1–C8, ...) and 11 fail, all of them printed forms of Zhao22 Theorems 1–3 (Eqs. 5–9)."),
)}


def select(names: Sequence[str] | None) -> list[Figure]:
    """The figures named (by name or number), in gallery order; all when ``names`` is empty."""
    from flowsim.errors import BadInputError

    if not names:
        return list(FIGURES.values())
    by_number = {str(f.number): f for f in FIGURES.values()}
    wanted = []
    for n in names:
        f = FIGURES.get(n) or by_number.get(str(n))
        if f is None:
            raise BadInputError(f"--only {n!r}: unknown figure; choose from "
                                f"{', '.join(f'{f.name} ({f.number})' for f in FIGURES.values())}")
        wanted.append(f.name)
    return [f for f in FIGURES.values() if f.name in wanted]


def job_dirs(jobs: Sequence[Job], data_dir: str | Path) -> dict[str, Path]:
    """label → run directory."""
    return {j.label: j.folder(data_dir) for j in jobs}
