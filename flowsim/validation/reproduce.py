"""The reproduction protocol for Zhao22's tables: discrete runs to a stated stopping rule, the step size η
chosen on a validation split of the observed entries (the test entries are never looked at), a least-
squares refit on the learned singular subspaces, and a verdict against a published number.

* :class:`StoppingRule` — a run stops at the first check (every ``check_every`` iterations) where
  (a) its objective F = ℓ(W) + λR(W) is non-finite or above 1e100 ("diverged"),
  (b) its data loss ℓ(W) ≤ ``loss_floor`` ("fitted": the observed entries are interpolated),
  (c) |F_k − F_{k−window}| ≤ rtol·|F_{k−window}| and F_k ≤ (1 − min_drop)·F_0 ("converged": the objective
      is flat over the window after it has left its initial value — a flat objective near F_0 is the
      plateau of a small initialization at the saddle W = 0, not convergence), or
  (d) k = ``max_iters`` ("budget").
* :func:`train_to_rule` — B runs batched in torch (the closed-form gradients and the ``torch.optim``
  update rules of :mod:`flowsim.validation.batched` / :mod:`flowsim.validation.optimizers`) until each meets
  the rule.
* :func:`reproduce_cell` — per seed: hold out ``val_fraction`` of Ω, train every η of the grid on the rest,
  keep the η with the smallest validation RMSE, retrain at that η on all of Ω and report its test error.
* :func:`subspace_refit` — the S-step of OptSpace (KMO10): keep the top-r singular vectors U_r, V_r of the
  learned W and solve min_S Σ_Ω (U_r S V_rᵀ − W*)² (least squares in r² unknowns), removing the shrinkage
  that the penalty λR leaves on the singular values (the penalized minimizer is not W*).
* :func:`~flowsim.validation.refit.rank_refit` — the fixed-rank refit without the penalty (alternating least
  squares on Ω from the learned factors, JNS13), which also corrects the subspaces the penalty tilts.
* :func:`verdict` — "reproduces" / "qualitatively" / "does not" (rule in its docstring).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from flowsim.errors import BadInputError
from flowsim.factors import layer_dims
from flowsim.metrics import effective_rank
from flowsim.penalties import Penalty
from flowsim.problems import CompletionProblem

from .batched import BatchedProblems, TorchRuns, resolve_device, resolve_dtype
from .compiled_runs import CompiledRuns, choose_engine
from .optimizers import make_optimizer
from .refit import gap_rank, rank_refit, subspace_refit

__all__ = ["StoppingRule", "train_to_rule", "reproduce_cell", "verdict", "gap_rank", "rank_refit",
           "subspace_refit", "SeedResult", "validation_split", "choose_lr", "masked_rmse", "stop_metrics"]

BLOWUP = 1e100
RECOVERY_THRESHOLD = 0.1


@dataclass(frozen=True)
class StoppingRule:
    """When a run stops (see the module docstring): divergence, interpolation, a flat objective, or the
    iteration budget. ``window`` must be a multiple of ``check_every``."""

    max_iters: int = 200_000
    check_every: int = 500
    window: int = 10_000
    rtol: float = 1e-5
    loss_floor: float = 1e-20
    min_drop: float = 0.5

    def __post_init__(self) -> None:
        if self.max_iters < 1 or self.check_every < 1 or self.window < self.check_every:
            raise BadInputError("stopping rule: need max_iters ≥ 1 and window ≥ check_every ≥ 1")
        if self.window % self.check_every:
            raise BadInputError("stopping rule: window must be a multiple of check_every")
        if not (self.rtol >= 0 and self.loss_floor >= 0 and 0 <= self.min_drop < 1):
            raise BadInputError("stopping rule: need rtol ≥ 0, loss_floor ≥ 0 and min_drop in [0, 1)")

    def describe(self) -> str:
        """One sentence for reports."""
        return (f"stop at the first check (every {self.check_every} iterations) where the objective "
                f"ℓ + λR changed by ≤ {self.rtol:g} (relative) over the last {self.window} iterations "
                f"and is below {1 - self.min_drop:g} of its initial value, or the data loss is ≤ "
                f"{self.loss_floor:g}, or it diverged, or after {self.max_iters} iterations")


@dataclass
class RunOutcome:
    """One run stopped by the rule: status (converged|fitted|budget|diverged), the iteration, metrics at the
    stop, the history at the checks and the final end product ``W``."""

    status: str
    message: str
    iterations: int
    metrics: dict[str, float]
    history: dict[str, list[float]]
    W: np.ndarray = field(repr=False)
    wall_time_s: float = 0.0


def _stack_masks(masks: Sequence[np.ndarray], dev: torch.device, dt: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.stack([np.asarray(m, dtype=float) for m in masks]), dtype=dt, device=dev)


def masked_rmse(W: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """RMSE over the entries of ``mask``: ( Σ_mask (W − W*)² / |mask| )^{1/2} (NaN for an empty mask)."""
    if not mask.any():
        return float("nan")
    d = (W - target)[mask]
    return float(np.sqrt(np.mean(d * d)))


def stop_metrics(W: np.ndarray, problem: CompletionProblem, val_mask: np.ndarray | None) -> dict[str, float]:
    """Metrics at the stop: data loss, relative test error and test RMSE (over the problem's test set),
    validation RMSE (over ``val_mask``), effective rank (RV07), Frobenius norm and top singular values."""
    if not np.all(np.isfinite(W)):
        nan = float("nan")
        return {"loss": nan, "test_error": nan, "test_rmse": nan, "val_rmse": nan, "erank": nan,
                "norm_fro": nan}
    s = np.linalg.svd(W, compute_uv=False)
    rel, rmse = problem.test_errors(W)
    out = {"loss": problem.loss(W), "test_error": rel, "test_rmse": rmse,
           "val_rmse": masked_rmse(W, problem.W_star, val_mask) if val_mask is not None else float("nan"),
           "erank": effective_rank(s), "norm_fro": float(np.linalg.norm(s))}
    out.update({f"sigma_{i + 1}": float(v) for i, v in enumerate(s[:8])})
    return out


def train_to_rule(
    problems: Sequence[CompletionProblem],
    factors: Sequence[Sequence[np.ndarray]],
    *,
    optimizer: str,
    lrs: Sequence[float],
    penalty: Penalty | None,
    lams: Sequence[float],
    rule: StoppingRule,
    val_masks: Sequence[np.ndarray | None] | None = None,
    hyper: dict[str, Any] | None = None,
    device: str = "cpu",
    dtype: str = "float64",
    engine: str = "torch",
) -> list[RunOutcome]:
    """Train B runs (one problem, initial factors, η and λ each) until each meets ``rule``.

    The iteration is that of :func:`flowsim.validation.train.train_batched` (its engines: batched torch
    tensors or the compiled numba loop, ``engine`` = torch|numba|auto): W = W_N⋯W_1, G = ∇ℓ(W) + λ∇R(W)
    (closed forms), ∇_{W_j} = W_{N:j+1}ᵀ G W_{j−1:1}ᵀ (ACH18 Eq. 5), one ``torch.optim`` step. The runs are
    checked every ``rule.check_every`` iterations; a stopped run keeps its end product at the stop, and
    the batch steps on until every run has stopped.
    """
    start = time.perf_counter()
    B = len(problems)
    if not (len(factors) == len(lrs) == len(lams) == B) or B < 1:
        raise BadInputError("train_to_rule: one problem, factor list, η and λ per run")
    vals = list(val_masks) if val_masks is not None else [None] * B
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    bp = BatchedProblems.stack(list(problems), penalty, [float(x) for x in lams], dev, dt)
    n_layers = len(factors[0])
    params = [torch.as_tensor(np.stack([np.asarray(f[j], dtype=float) for f in factors]), dtype=dt,
                              device=dev) for j in range(n_layers)]
    opt = make_optimizer(optimizer, params, [float(x) for x in lrs], **(hyper or {}))
    engine_used, _ = choose_engine(engine, dev, dt, bp, layer_dims(factors[0]))
    runs = CompiledRuns(factors, bp, opt, BLOWUP) if engine_used == "numba" else TorchRuns(params, bp, opt)
    val_t = _stack_masks([v if v is not None else np.zeros(p.shape) for v, p in zip(vals, problems)], dev, dt)
    test_t = _stack_masks([p.test_set for p in problems], dev, dt)
    n_val = val_t.sum(dim=(1, 2)).clamp(min=1)
    test_den = torch.sqrt((test_t * bp.W_star**2).sum(dim=(1, 2)))
    hist: list[dict[str, list[float]]] = [
        {"iteration": [], "objective": [], "loss": [], "val_rmse": [], "test_error": []} for _ in range(B)]
    outcome: list[RunOutcome | None] = [None] * B
    runs.start()
    k = 0
    while True:
        W = torch.as_tensor(runs.end_products(), dtype=dt, device=dev)
        finite = torch.isfinite(W).all(dim=(1, 2), keepdim=True)
        obj, _ = bp.loss_and_grad(torch.where(finite, W, torch.zeros_like(W)))
        D = W - bp.W_star
        loss = (bp.coef[:, 0, 0] * ((bp.mask * D) ** 2).sum(dim=(1, 2))).cpu().numpy()
        val = torch.sqrt(((val_t * D) ** 2).sum(dim=(1, 2)) / n_val).cpu().numpy()
        test = (torch.sqrt(((test_t * D) ** 2).sum(dim=(1, 2))) / test_den).cpu().numpy()
        objs, fb = obj.detach().cpu().numpy(), runs.bad_iterations()
        for b in range(B):
            if outcome[b] is not None:
                continue
            h = hist[b]
            status = message = None
            if fb[b] >= 0:
                status = "diverged"
                message = (f"objective non-finite or above {BLOWUP:.0e} at iteration {fb[b]} "
                           f"(η = {lrs[b]:g}, λ = {lams[b]:g})")
            else:
                for key, v in (("iteration", k), ("objective", objs[b]), ("loss", loss[b]),
                               ("val_rmse", val[b]), ("test_error", test[b])):
                    h[key].append(float(v))
                past = len(h["objective"]) - 1 - rule.window // rule.check_every
                if loss[b] <= rule.loss_floor:
                    status, message = "fitted", f"data loss {loss[b]:.3g} ≤ {rule.loss_floor:g} at {k}"
                elif (past >= 0 and abs(objs[b] - h["objective"][past]) <= rule.rtol * abs(
                        h["objective"][past]) and objs[b] <= (1 - rule.min_drop) * h["objective"][0]):
                    status = "converged"
                    message = (f"objective {objs[b]:.6g} changed by ≤ {rule.rtol:g} (relative) over "
                               f"iterations {k - rule.window}–{k}")
                elif k >= rule.max_iters:
                    status, message = "budget", f"iteration budget {rule.max_iters} reached"
            if status is not None:
                Wb = W[b].detach().cpu().double().numpy().copy()
                outcome[b] = RunOutcome(status, message, int(fb[b]) if status == "diverged" else k,
                                        stop_metrics(Wb, problems[b], vals[b]), h, Wb,
                                        time.perf_counter() - start)
        if all(o is not None for o in outcome):
            break
        k = min(k + rule.check_every, rule.max_iters)
        runs.advance(k)
    return [o for o in outcome if o is not None]


def validation_split(mask: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit mask, validation mask): ``round(fraction·|Ω|)`` observed entries drawn without replacement
    from ``default_rng([seed, 3])`` are held out for validation; the two masks partition Ω."""
    obs = np.flatnonzero(mask)
    n_val = int(round(fraction * obs.size))
    if not 0 < fraction < 1 or n_val < 1 or n_val >= obs.size:
        raise BadInputError(f"validation fraction {fraction} of {obs.size} observed entries leaves no "
                            "fitting or no validation entry")
    held = np.random.default_rng([int(seed), 3]).choice(obs, size=n_val, replace=False)
    val = np.zeros(mask.size, dtype=bool)
    val[held] = True
    val = val.reshape(mask.shape)
    return mask & ~val, val


def choose_lr(lrs: Sequence[float], val_rmse: Sequence[float]) -> int | None:
    """Index of the η with the smallest finite validation RMSE (ties: the first in ``lrs``); None when every
    run diverged."""
    v = np.array([x if np.isfinite(x) else np.inf for x in val_rmse], dtype=float)
    return None if not np.isfinite(v).any() else int(np.argmin(v))


@dataclass
class SeedResult:
    """One seed of a cell: the η chosen on validation, the validation table, and the retrained run."""

    seed: int
    lr: float | None
    selection: list[dict[str, Any]]
    status: str
    message: str
    iterations: int
    test_error: float
    test_rmse: float
    erank: float
    refit_test_error: float
    refit_rank: int
    wall_time_s: float
    rank_refit_test_error: float = math.nan
    rank_refit_rank: int = 0
    rank_refit_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def reproduce_cell(
    problems: Sequence[CompletionProblem],
    factors: Sequence[Sequence[np.ndarray]],
    seeds: Sequence[int],
    *,
    optimizer: str,
    lr_grid: Sequence[float],
    penalty: Penalty | None,
    lam: float,
    rule: StoppingRule,
    select_rule: StoppingRule | None = None,
    val_fraction: float = 0.1,
    hyper: dict[str, Any] | None = None,
    device: str = "cpu",
    dtype: str = "float64",
    engine: str = "torch",
    select_each_seed: bool = True,
) -> list[SeedResult]:
    """One table cell over seeds: per seed, η is chosen on a validation split of Ω (:func:`validation_split`,
    :func:`choose_lr`; runs of the whole grid and all seeds in one batch, stopped by ``select_rule``), then
    the run is repeated at that η on all of Ω from the same initialization (one batch over seeds, stopped by
    ``rule``), and its test error, effective rank and the two refit errors (:mod:`flowsim.validation.refit`)
    are reported. The test entries enter neither the selection nor the stopping rule. With
    ``select_each_seed=False`` η is chosen on the first seed only and used for every seed (a cheaper
    selection batch)."""
    select_rule = rule if select_rule is None else select_rule
    S, grid = len(problems), [float(x) for x in lr_grid]
    if not (len(factors) == len(seeds) == S) or not grid:
        raise BadInputError("reproduce_cell: one problem, factor list and seed per seed, and an η grid")
    t0 = time.perf_counter()
    fit_probs, val_masks = [], []
    for p, seed in zip(problems, seeds):
        fit, val = validation_split(p.mask, val_fraction, seed)
        fit_probs.append(CompletionProblem(p.W_star, fit, p.reduction, p.scale, p.description,
                                           test_mask=p.test_set))
        val_masks.append(val)
    runs = [(s, lr) for s in (range(S) if select_each_seed else [0]) for lr in grid]
    sel = train_to_rule([fit_probs[s] for s, _ in runs], [factors[s] for s, _ in runs], optimizer=optimizer,
                        lrs=[lr for _, lr in runs], penalty=penalty, lams=[lam] * len(runs), rule=select_rule,
                        val_masks=[val_masks[s] for s, _ in runs], hyper=hyper, device=device, dtype=dtype,
                        engine=engine)
    tables, chosen = [], []
    for s in range(S):
        s_sel = s if select_each_seed else 0
        rows = [{"lr": lr, "status": o.status, "iterations": o.iterations, "val_rmse": o.metrics["val_rmse"],
                 "selected_on_seed": int(seeds[s_sel])} for (s2, lr), o in zip(runs, sel) if s2 == s_sel]
        idx = choose_lr(grid, [r["val_rmse"] for r in rows])
        tables.append(rows)
        chosen.append(None if idx is None else grid[idx])
    keep = [s for s in range(S) if chosen[s] is not None]
    final = train_to_rule([problems[s] for s in keep], [factors[s] for s in keep], optimizer=optimizer,
                          lrs=[chosen[s] for s in keep], penalty=penalty, lams=[lam] * len(keep), rule=rule,
                          hyper=hyper, device=device, dtype=dtype, engine=engine) if keep else []
    by_seed = dict(zip(keep, final))
    wall = time.perf_counter() - t0
    out = []
    for s in range(S):
        o = by_seed.get(s)
        if o is None:
            out.append(SeedResult(int(seeds[s]), None, tables[s], "diverged",
                                  "every η of the grid diverged on the validation split", 0, math.inf,
                                  math.inf, float("nan"), float("nan"), 0, wall))
            continue
        W_ref, r = subspace_refit(o.W, problems[s])
        ref_err = problems[s].test_errors(W_ref)[0] if r else float("nan")
        ranked = rank_refit(o.W, problems[s])
        rank_err = problems[s].test_errors(ranked.W)[0] if ranked.rank and ranked.well_posed else math.nan
        te = o.metrics["test_error"] if o.status != "diverged" else math.inf
        out.append(SeedResult(int(seeds[s]), chosen[s], tables[s], o.status, o.message, o.iterations,
                              te, o.metrics["test_rmse"], o.metrics["erank"], ref_err, r, wall, rank_err,
                              ranked.rank, ranked.note))
    return out


def verdict(paper_err: float, paper_rank: float, our_err: float, our_rank: float) -> str:
    """Compare a cell with the published (Err, Rk).

    A run *recovers* when its relative test error is < 0.1. Then:
      * "does not" — one recovers and the other does not;
      * "reproduces" — both recover, the errors are within a factor 10 and the ranks (our effective rank,
        the paper's Rk) within 1; or both fail, the errors are within a factor 2 and the ranks within
        max(1, Rk/2);
      * "qualitatively" — same outcome (both recover or both fail) but outside those tolerances.
    """
    ours_ok = bool(np.isfinite(our_err) and our_err < RECOVERY_THRESHOLD)
    paper_ok = paper_err < RECOVERY_THRESHOLD
    if ours_ok != paper_ok:
        return "does not"
    if not (np.isfinite(our_err) and np.isfinite(our_rank) and our_err > 0):
        return "qualitatively"
    ratio = abs(math.log10(our_err / paper_err))
    if paper_ok:
        close = ratio <= 1 and abs(our_rank - paper_rank) <= 1
    else:
        close = ratio <= math.log10(2) and abs(our_rank - paper_rank) <= max(1.0, paper_rank / 2)
    return "reproduces" if close else "qualitatively"
