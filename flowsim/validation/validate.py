"""Compare a discrete optimizer with a continuous-time model over step sizes (docs/math.md §11;
docs/contract.md ``validate``).

For each step size η: the discrete run (:func:`flowsim.validation.train.train`) and the flow
(:func:`flowsim.simulate.simulate`, tight tolerances) start from the same factors; the flow is saved at the
discrete times t_k = kη of the recorded iterations; e_σ, e_W and the erank/test-error gaps are taken over
those common times (:mod:`flowsim.validation.errors`); finally the log-log slope of each error against η.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowsim.errors import BadInputError
from flowsim.flows import make_flow
from flowsim.penalties import Penalty
from flowsim.problems import CompletionProblem
from flowsim.simulate import simulate
from flowsim.trajectory import Trajectory

from .errors import fit_loglog_slope, matrix_errors, max_gap, sigma_errors
from .timemap import flow_iterations, iteration_times, iterations_for_horizon
from .train import record_iterations, train

#: the flows each optimizer may be compared with, and the default one
AGAINST = {"gd": ("gf", "gd-modified"), "adam": ("adam-ode", "adam-sign", "adam-layer", "adam-printed")}
DEFAULT_AGAINST = {"gd": "gf", "adam": "adam-ode"}
BETA_SCALINGS = ("fixed", "bb21")
#: flows whose vector field does not depend on η (integrated once for all step sizes)
LR_FREE_FLOWS = ("gf", "adam-layer", "adam-printed", "adam-sign")
#: with fixed β, discrete Adam is near its η → 0 limits (adam-sign; adam-ode at order 1) only once its
#: second-moment window η/(1 − β₂) is a small part of the horizon: warn above this fraction of T
ADAM_WINDOW_WARN = 0.1
ROW_KEYS = ("lr", "e_sigma", "e_W", "erank_gap", "test_error_gap")


@dataclass
class ValidationResult:
    """Rows (one per η, keys of docs/contract.md), fitted slopes, the trajectories
    and how the comparison ended."""

    optimizer: str
    against: str
    rows: list[dict[str, float]] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    discrete: list[Trajectory] = field(default_factory=list)
    flows: list[Trajectory] = field(default_factory=list)
    status: str = "ok"
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def slopes(self) -> dict[str, float]:
        """Fitted log-log slopes (and intercepts) of e_σ and e_W against η."""
        lrs = [r["lr"] for r in self.rows]
        out = {}
        for key in ("e_sigma", "e_W"):
            s, c = fit_loglog_slope(lrs, [r[key] for r in self.rows])
            out[f"slope_{key}"] = s
            out[f"intercept_{key}"] = c
        return out

    def to_json(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``validation.json`` document (docs/contract.md §3), plus
        ``details``/``status`` and any ``extra`` keys."""
        sl = self.slopes()
        doc: dict[str, Any] = {
            "optimizer": self.optimizer,
            "against": self.against,
            "rows": [{k: _json_float(r[k]) for k in ROW_KEYS} for r in self.rows],
            "slope_e_sigma": _json_float(sl["slope_e_sigma"]),
            "slope_e_W": _json_float(sl["slope_e_W"]),
            "intercept_e_sigma": _json_float(sl["intercept_e_sigma"]),
            "intercept_e_W": _json_float(sl["intercept_e_W"]),
            "status": self.status,
            "message": self.message,
            "details": self.details,
        }
        doc.update(self.extra)
        if extra:
            doc.update(extra)
        return doc


def _json_float(x: float) -> float | None:
    """Finite floats stay; NaN/inf become null (undefined, e.g. a diverged run or no test set)."""
    return float(x) if x is not None and math.isfinite(x) else None


def scaled_hyper(
    hyper: dict[str, Any], lr: float, lr_max: float, beta_scaling: str, optimizer: str
) -> dict[str, Any]:
    """The optimizer hyper-parameters at step size ``lr``: unchanged for ``fixed``; for ``bb21`` (Adam)
    β_i(η) = 1 − (1 − β_i)·η/η_max with β_i given at η_max (BB21 scaling: a, b independent of η)."""
    if beta_scaling == "fixed" or optimizer != "adam":
        return hyper
    out = dict(hyper)
    for key, default in (("beta1", 0.9), ("beta2", 0.999)):
        out[key] = 1.0 - (1.0 - float(hyper.get(key, default))) * lr / lr_max
    return out


def adam_window_ratio(lr_max: float, beta2: float, t_end: float) -> float:
    """(η_max/(1 − β₂))/T: the second-moment window of discrete Adam at the largest step size as a fraction
    of the horizon. With fixed β the fixed-β limit (adam-sign) and the order-1 convergence to the BB21 ODE
    (adam-ode) are reached only once it is ≪ 1 (``docs/math.md``, "Validation reads")."""
    return lr_max / (1.0 - beta2) / t_end


def _restrict(traj: Trajectory, t_eval: np.ndarray) -> Trajectory:
    """The part of a flow trajectory saved at the times ``t_eval`` (exact float matches), as a Trajectory;
    fewer points when the integration stopped early."""
    idx = np.flatnonzero(np.isin(traj.t, t_eval))
    fixed = ("W0", "W_star", "mask", "W_final")
    pick = {k: (v if k in fixed else v[idx]) for k, v in traj.arrays().items()}
    ok = idx.size == t_eval.size
    info = {"status": traj.status, "message": traj.message, "stats": dict(traj.stats)}
    out = Trajectory.from_arrays(pick, info)
    out.W0 = traj.W0
    if not ok and out.status == "ok":
        out.status, out.message = "failed", "the shared flow integration stopped before the last time"
    return out


def check_pairing(optimizer: str, against: str) -> None:
    """Only meaningful pairs: GD with gf/gd-modified, Adam with the Adam flows."""
    if optimizer not in AGAINST:
        raise BadInputError(f"--optimizer must be one of {'|'.join(AGAINST)} for validate, got {optimizer!r}")
    if against not in AGAINST[optimizer]:
        raise BadInputError(
            f"--against {against} does not model --optimizer {optimizer}; choose from "
            f"{'|'.join(AGAINST[optimizer])}"
        )


def compare(disc: Trajectory, flow: Trajectory, lr: float) -> dict[str, float]:
    """Errors of docs/math.md §11 between a discrete trajectory (with matrices) and a flow saved at t_k = kη.

    Every saved time of the flow must be a discrete time t_k (the Adam ODE starts at t₀ = η; a flow that
    stopped early is compared over the times it reached)."""
    assert disc.W is not None and flow.W is not None, "both trajectories need their matrices"
    sel = np.flatnonzero(np.isin(disc.t, flow.t))
    if sel.size != len(flow) or sel.size == 0:
        raise ValueError("the flow was not saved at the discrete times")
    sl = sel
    return {
        "lr": float(lr),
        "e_sigma": float(np.max(sigma_errors(disc.sigma[sl], flow.sigma))),
        "e_W": float(np.max(matrix_errors(disc.W[sl], flow.W))),
        "erank_gap": max_gap(disc.erank[sl], flow.erank),
        "test_error_gap": max_gap(disc.test_error[sl], flow.test_error),
    }


def validate(
    problem: CompletionProblem,
    factors: Sequence[np.ndarray],
    *,
    optimizer: str = "gd",
    against: str | None = None,
    lrs: Sequence[float] = (0.04, 0.02, 0.01, 0.005),
    t_end: float = 10.0,
    penalty: Penalty | None = None,
    lam: float = 0.0,
    hyper: dict[str, Any] | None = None,
    model: str = "layers",
    convention: str = "row-major",
    beta_scaling: str = "fixed",
    n_record: int = 60,
    method: str = "DOP853",
    rtol: float = 1e-10,
    atol: float = 1e-13,
    device: str = "auto",
    dtype: str = "float64",
    max_wall_time: float | None = None,
    on_row: Callable[[ValidationResult], None] | None = None,
) -> ValidationResult:
    """Run the discrete ``optimizer`` and the flow ``against`` from ``factors`` for every η in ``lrs`` up to
    ``t_end`` and return the errors per η with the fitted slopes (docs/math.md §11).

    ``hyper`` holds optimizer hyper-parameters (for Adam: beta1, beta2, eps, which the Adam flows share).
    ``beta_scaling="bb21"`` (Adam only) reads beta1/beta2 as the values at the largest η, η_max, and uses
    β_i(η) = 1 − (1 − β_i)·η/η_max at every η, so that a = (1 − β₁)/η and b = (1 − β₂)/η of the ODE are the
    same for all η (the scaling under which BB21 derive the ODE as the η → 0 limit); ``fixed`` keeps β.
    ``on_row`` is called after each η (e.g. to write partial results). Divergence of a discrete run gives a
    row of undefined errors and status ``diverged``; a failed flow gives ``failed``; Ctrl-C stops with
    ``interrupted`` and the rows done so far.

    Example::

        res = validate(problem, factors, optimizer="gd", against="gd-modified", lrs=[0.2, 0.1, 0.05, 0.025],
                       t_end=20.0)
        res.slopes()["slope_e_W"]   # ≈ 2
    """
    against = DEFAULT_AGAINST.get(optimizer, "gf") if against is None else against
    check_pairing(optimizer, against)
    lrs = sorted({float(x) for x in lrs}, reverse=True)
    if len(lrs) < 2:
        raise BadInputError("--lrs needs at least two distinct step sizes to fit a slope")
    if beta_scaling not in BETA_SCALINGS:
        raise BadInputError(f"--beta-scaling must be one of {'|'.join(BETA_SCALINGS)}, got {beta_scaling!r}")
    if beta_scaling == "bb21" and optimizer != "adam":
        raise BadInputError("--beta-scaling bb21 applies to --optimizer adam only")
    hypers = {lr: scaled_hyper(dict(hyper or {}), lr, lrs[0], beta_scaling, optimizer) for lr in lrs}
    window = None
    if optimizer == "adam":
        window = adam_window_ratio(lrs[0], float(hypers[lrs[0]].get("beta2", 0.999)), t_end)
        if beta_scaling == "fixed" and window > ADAM_WINDOW_WARN:
            print(f"flowsim validate: warning: η_max/(1 − β₂) = {window * t_end:.3g} is {window:.3g}·T (> "
                  f"{ADAM_WINDOW_WARN:g}·T): with fixed β, Adam is not yet near its η → 0 limit; use smaller "
                  f"--lrs or a longer --t-end", file=sys.stderr)
    # build every flow once up front: bad input is reported before anything runs
    flows = {
        lr: make_flow(
            against,
            problem,
            len(factors),
            penalty,
            lam,
            model,
            lr=lr,
            convention=convention,
            beta1=hypers[lr].get("beta1", 0.9),
            beta2=hypers[lr].get("beta2", 0.999),
            eps=hypers[lr].get("eps", 1e-8),
        )
        for lr in lrs
    }
    plans = {lr: record_iterations(iterations_for_horizon(t_end, lr), n_record) for lr in lrs}
    res = ValidationResult(optimizer, against)
    if window is not None:
        res.extra["adam_window_ratio"] = window
    problems: list[str] = []
    def integrate_flow(flow: Any, t_eval: np.ndarray) -> Trajectory:
        """The flow from the shared initial factors, saved (with its matrices) at ``t_eval``."""
        return simulate(flow, factors, float(t_eval[-1]), t_eval=t_eval, method=method, rtol=rtol, atol=atol,
                        progress=False, save_matrices=True, max_wall_time=max_wall_time)

    shared = None  # flows that do not depend on η are integrated once, on the union of all discrete times
    if against in LR_FREE_FLOWS:
        union = np.unique(np.concatenate([iteration_times(plans[lr], lr) for lr in lrs]))
        try:
            shared = integrate_flow(flows[lrs[0]], union)
        except KeyboardInterrupt:
            res.status, res.message = "interrupted", "interrupted by the user during the flow integration"
            return res
    for lr in lrs:
        t_start = time.perf_counter()
        rec = plans[lr]
        iters = int(rec[-1])
        try:
            disc = train(
                problem,
                factors,
                optimizer=optimizer,
                lr=lr,
                iters=iters,
                penalty=penalty,
                lam=lam,
                hyper=hypers[lr],
                record_iters=rec,
                device=device,
                dtype=dtype,
                save_matrices=True,
                progress=False,
            )
            flow_traj = None
            if disc.status == "ok":
                flow = flows[lr]
                t_eval = iteration_times(flow_iterations(rec, lr, flow.t0), lr)
                t_eval[0] = flow.t0
                flow_traj = _restrict(shared, t_eval) if shared is not None else integrate_flow(flow, t_eval)
        except KeyboardInterrupt:
            res.status, res.message = "interrupted", f"interrupted by the user during lr={lr:g}"
            break
        detail: dict[str, Any] = {
            "lr": lr,
            "hyper": hypers[lr],
            "iterations": iters,
            "t_end": iters * lr,
            "recorded": len(disc),
            "discrete_status": disc.status,
            "discrete_message": disc.message,
            "engine": disc.stats.get("engine"),
        }
        if flow_traj is not None:
            detail.update(
                flow_status=flow_traj.status,
                flow_message=flow_traj.message,
                flow_nfev=flow_traj.stats.get("nfev"),
                flow_steps=flow_traj.stats.get("steps"),
            )
        if disc.status == "interrupted" or (flow_traj is not None and flow_traj.status == "interrupted"):
            res.status, res.message = "interrupted", f"interrupted by the user during lr={lr:g}"
            break
        if flow_traj is not None and (flow_traj.status == "ok" or len(flow_traj) >= 2):
            row = compare(disc, flow_traj, lr)
            if flow_traj.status != "ok":  # stopped early: errors over the times it reached, still a failure
                detail["errors_over"] = f"t <= {flow_traj.t[-1]:.6g} (the flow stopped there)"
        else:
            row = {"lr": lr, **{k: float("nan") for k in ROW_KEYS[1:]}}
        if disc.status != "ok" or flow_traj is None or flow_traj.status != "ok":
            what = (
                f"discrete {optimizer} {disc.status}: {disc.message}"
                if disc.status != "ok"
                else f"flow {against} {flow_traj.status}: {flow_traj.message}"
            )
            problems.append(f"lr={lr:g}: {what}")
            if res.status == "ok":
                statuses = (disc.status, None if flow_traj is None else flow_traj.status)
                res.status = "diverged" if "diverged" in statuses else "failed"
        detail["wall_time_s"] = time.perf_counter() - t_start
        res.rows.append(row)
        res.details.append(detail)
        res.discrete.append(disc)
        res.flows.append(flow_traj)
        if on_row is not None:
            on_row(res)
    if res.status != "interrupted":
        res.message = "; ".join(problems) if problems else f"compared {len(res.rows)} step sizes"
    elif problems:
        res.message += "; " + "; ".join(problems)
    return res
