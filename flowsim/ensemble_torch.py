"""Batched ensembles on torch: B layer-wise gradient flows of one shape advanced together by a vectorized
DOP853, every flow with its own step size, on the CPU or a CUDA device.

The method is scipy's ``DOP853`` (HNW93 Sec. II.10, Dormand–Prince 8(5,3), the coefficients of
``scipy.integrate._ivp.dop853_coefficients``) applied to every row of a (B, n) state at once: the same
initial step (``select_initial_step``, HNW93 Sec. II.4), the same blended 5th/3rd-order error norm, the same
step-size control (safety 0.9, factors 0.2–10, no growth right after a rejection) and the same 7th-order
dense output with its three extra stages, evaluated only for the flows that cross a saving time in the
step. Each iteration is one step attempt of every running flow; a flow whose attempt is rejected retries
with its smaller step while the others go on, so every flow takes the steps it would take alone (up to
round-off: the sums run in another order than scipy's, so the trajectories agree with the scipy and numba
engines to the tolerance, not bit for bit).

The vector field is :func:`flowsim.flows.gradient.layerwise_velocity_into` on a batch (ACH18 Eq. 3 with the
penalty of Zhao22 Sec. 3; ``docs/math.md`` "Layer-wise gradient flow"): prefix products by batched matrix
products, G = weight ∘ (W − W*) + λ U diag(g(σ)) Vᵀ, and the back-propagation B_N = −G, Ẇ_j = B_j W_{j−1:1}ᵀ,
B_{j−1} = W_jᵀ B_j.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate._ivp import dop853_coefficients as _co

from .errors import BadInputError
from .factors import prefix_products
from .penalties import SCHATTEN_FLOOR, NuclearPenalty, Penalty, RatioPenalty, SchattenRatioPenalty
from .problems import CompletionProblem

DEVICES = ("auto", "cpu", "cuda")
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0
ERROR_EXPONENT = -1.0 / 8.0  # −1/(error estimator order + 1), order 7
N_STAGES = _co.N_STAGES  # 12 stages per step, a 13th at t + h (FSAL), 3 more for the dense output
PENALTY_NONE, PENALTY_RATIO, PENALTY_NUCLEAR, PENALTY_SCHATTEN = 0, 1, 2, 3
# how each flow's solve ended (the codes of the numba engine, flowsim's compiled dop853)
RUNNING, FINISHED, TOO_SMALL, STATE_DIVERGED, NONFINITE_STREAK, INITIAL_NONFINITE = 0, 1, 2, 3, 4, -1
TOO_SMALL_STEP = "Required step size is less than spacing between numbers"


def resolve_device(device: str) -> torch.device:
    """``"auto"``: CUDA when torch sees a CUDA device, else the CPU; ``"cpu"``; ``"cuda"`` (a
    :class:`BadInputError` when no CUDA device is available)."""
    if device not in DEVICES:
        raise BadInputError(f"device must be one of {'|'.join(DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInputError("device 'cuda' was asked for, but torch sees no CUDA device "
                            f"(torch {torch.__version__}, torch.cuda.is_available() is False); use "
                            "device 'cpu' or 'auto'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def penalty_row(penalty: Penalty | None, lam: float) -> list[float]:
    """[kind, λ, p, q] of one flow's penalty (kind 0 when λ = 0 or there is none); a
    :class:`BadInputError` for a penalty the batched field does not implement."""
    if penalty is None or penalty.is_zero or lam == 0.0:
        return [PENALTY_NONE, 0.0, 0.0, 0.0]
    if isinstance(penalty, RatioPenalty):
        return [PENALTY_RATIO, lam, 0.0, 0.0]
    if isinstance(penalty, NuclearPenalty):
        return [PENALTY_NUCLEAR, lam, 0.0, 0.0]
    if isinstance(penalty, SchattenRatioPenalty):
        return [PENALTY_SCHATTEN, lam, float(penalty.p), float(penalty.q)]
    raise BadInputError(f"the torch ensemble has no gradient for the penalty {penalty.spec()!r}")


@dataclass
class BatchField:
    """The layer-wise field of B problems of one shape: layer dims [d_0..d_N], state offsets, loss weights
    (2c/D)·1_Ω (B, m, n) so that ∇ℓ(W) = weight ∘ (W − W*) (Zhao22 Eq. 1), W* (B, m, n) and the penalty rows
    (B, 4) = [kind, λ, p, q]."""

    dims: list[int]
    offs: list[int]
    weight: torch.Tensor
    w_star: torch.Tensor
    pen: torch.Tensor

    @classmethod
    def build(cls, problems: list[CompletionProblem], dims: list[int], penalties: list[Penalty | None],
              lams: list[float], device: torch.device) -> BatchField:
        """Stack the problems (all of shape d_N × d_0) and penalties on ``device``."""
        offs = [0]
        for a, b in zip(dims[:-1], dims[1:]):
            offs.append(offs[-1] + a * b)
        weight = np.array([(2.0 * p.scale / p.denominator) * p.mask.astype(float) for p in problems])
        w_star = np.array([np.asarray(p.W_star, dtype=float) for p in problems])
        pen = np.array([penalty_row(q, lam) for q, lam in zip(penalties, lams)], dtype=float)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        return cls([int(d) for d in dims], offs, as_t(weight), as_t(w_star), as_t(pen))

    def take(self, idx: torch.Tensor) -> BatchField:
        """The field of the flows ``idx`` only."""
        return BatchField(self.dims, self.offs, self.weight[idx], self.w_star[idx], self.pen[idx])

    @property
    def penalized(self) -> bool:
        """Whether some flow of the batch has a penalty."""
        return bool(((self.pen[:, 0] != PENALTY_NONE) & (self.pen[:, 1] != 0.0)).any())

    def __call__(self, y: torch.Tensor, out: torch.Tensor) -> None:
        """out = f(y) for a (b, n) state. A row whose state is not finite gets a non-finite velocity (NaN or
        ±inf entries: the products spread any non-finite factor entry; with a penalty the row is all NaN)."""
        dims, offs = self.dims, self.offs
        nb, depth = y.shape[0], len(dims) - 1
        factors = [y[:, offs[j]:offs[j + 1]].reshape(nb, dims[j + 1], dims[j]) for j in range(depth)]
        pre = prefix_products(factors, identity=False)[1:]  # pre[j] = W_{j+1:1}
        W = pre[-1]
        # B_N = −G = weight ∘ (W* − W) − λ∇R(W) (the same numbers as negating G: IEEE sums are symmetric)
        B = self.weight * (self.w_star - W)
        finite = None
        if self.penalized:  # the SVD needs a finite W; a non-finite state gets a NaN velocity below
            finite = torch.isfinite(y).all(dim=1)
            B = B - self._penalty_gradient(torch.where(finite[:, None, None], W, 0.0))
        if depth == 1:
            out.copy_(B.reshape(nb, -1))
        else:
            for j in range(depth - 1, 0, -1):
                out[:, offs[j]:offs[j + 1]] = (B @ pre[j - 1].transpose(1, 2)).reshape(nb, -1)
                B = factors[j].transpose(1, 2) @ B
            out[:, offs[0]:offs[1]] = B.reshape(nb, -1)
        if finite is not None:
            out.masked_fill_(~finite[:, None], math.nan)

    def _penalty_gradient(self, W: torch.Tensor) -> torch.Tensor:
        """λ ∇R(W) = λ U diag(g(σ)) Vᵀ with g of ``Penalty.spectral_grad`` (Zhao22 Sec. 3, Table 1): ratio
        g_i = 1_{σ_i>τ}/‖W‖_F − ‖W‖_* σ_i/‖W‖_F³, nuclear g_i = 1_{σ_i>τ} (τ = max(m, n)·ε·σ_1), Schatten
        S_p/S_q g = S_p^{1−p} σ_f^{p−1}/S_q − S_p S_q^{1−q} σ_f^{q−1}/S_q², σ_f = max(σ, floor·σ_1)."""
        U, s, Vh = torch.linalg.svd(W, full_matrices=False)
        kind, lam, p, q = (self.pen[:, i, None] for i in range(4))
        m, n = W.shape[1], W.shape[2]
        tau = max(m, n) * torch.finfo(torch.float64).eps * s[:, :1]
        above = (s > tau).to(s.dtype)
        fro = torch.sqrt((s * s).sum(dim=1, keepdim=True))
        nuc = s.sum(dim=1, keepdim=True)
        safe_fro = torch.where(fro > 0, fro, 1.0)
        g_ratio = torch.where(fro > 0, above / safe_fro - nuc * s / safe_fro**3, 0.0)
        p1 = torch.where(kind == PENALTY_SCHATTEN, p, 1.0)
        q1 = torch.where(kind == PENALTY_SCHATTEN, q, 1.0)
        sp = self._schatten(s, p1)
        sq = self._schatten(s, q1)
        sf = torch.maximum(s, SCHATTEN_FLOOR * s[:, :1])
        sq_safe = torch.where(sq > 0, sq, 1.0)
        g_sch = (sp ** (1 - p1) * sf ** (p1 - 1) / sq_safe
                 - sp * sq_safe ** (1 - q1) * sf ** (q1 - 1) / sq_safe**2)
        g_sch = torch.where(sq > 0, g_sch, 0.0)
        g = torch.where(kind == PENALTY_RATIO, g_ratio,
                        torch.where(kind == PENALTY_NUCLEAR, above,
                                    torch.where(kind == PENALTY_SCHATTEN, g_sch, 0.0)))
        return (U * (lam * g)[:, None, :]) @ Vh

    @staticmethod
    def _schatten(s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """S_p = (Σ_{σ_i>0} σ_i^p)^{1/p} per row, 0 for W = 0."""
        total = torch.where(s > 0, s.clamp_min(torch.finfo(s.dtype).tiny) ** p, 0.0).sum(dim=1, keepdim=True)
        return torch.where(total > 0, total.clamp_min(torch.finfo(s.dtype).tiny) ** (1.0 / p), 0.0)


@dataclass
class BatchState:
    """Per-flow solver state of :func:`solve_batch` (all tensors have the batch as first dimension)."""

    code: np.ndarray
    t: np.ndarray
    t_prev: np.ndarray
    nfev: np.ndarray
    nsteps: np.ndarray
    k_save: np.ndarray
    t_nonfinite: np.ndarray
    y: np.ndarray
    ys: np.ndarray
    status: list[str | None]
    message: list[str]


class EvalCounter:
    """Evaluations per flow and the streak of non-finite velocities, as the scipy path counts them (a flow
    stops after ``max_nonfinite`` consecutive non-finite velocities; the first one's time is reported)."""

    def __init__(self, nb: int, max_nonfinite: int, dev: torch.device):
        self.max_nonfinite = max_nonfinite
        self.nfev = torch.zeros(nb, dtype=torch.int64, device=dev)
        self.streak = torch.zeros(nb, dtype=torch.int64, device=dev)
        self.seen = torch.zeros(nb, dtype=torch.bool, device=dev)
        self.t_nonfinite = torch.full((nb,), math.nan, dtype=torch.float64, device=dev)

    def count_finite(self, live: torch.Tensor, times: int) -> None:
        """``times`` evaluations of the ``live`` flows, all finite."""
        self.nfev.add_(times * live.to(torch.int64))
        self.streak.masked_fill_(live, 0)

    def count_finite_at(self, idx: torch.Tensor) -> None:
        """One finite evaluation of the flows ``idx``."""
        self.nfev[idx] += 1
        self.streak[idx] = 0

    def count(self, live: torch.Tensor, ok: torch.Tensor, t_at: torch.Tensor) -> torch.Tensor:
        """One evaluation of the ``live`` flows (finite where ``ok``, at the times ``t_at``); returns the
        flows whose streak of non-finite velocities has reached ``max_nonfinite``."""
        self.nfev.add_(live.to(torch.int64))
        bad = live & ~ok
        self.t_nonfinite = torch.where(bad & ~self.seen, t_at, self.t_nonfinite)
        self.seen |= bad
        self.streak = torch.where(live, torch.where(ok, 0, self.streak + 1), self.streak)
        return live & (self.streak >= self.max_nonfinite)

    def count_at(self, idx: torch.Tensor, live: torch.Tensor, ok: torch.Tensor, t_at: torch.Tensor
                 ) -> torch.Tensor:
        """:meth:`count` for the flows ``idx`` (``live``, ``ok``, ``t_at`` indexed like ``idx``)."""
        full = torch.zeros_like(self.seen)
        full[idx] = live
        ok_full = torch.ones_like(self.seen)
        ok_full[idx] = ok
        t_full = torch.zeros_like(self.t_nonfinite)
        t_full[idx] = t_at
        return self.count(full, ok_full, t_full)[idx]


def _rms(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((x * x).sum(dim=1) / x.shape[1])


def solve_batch(
    field: BatchField,
    y0: np.ndarray,
    t_eval: np.ndarray,
    *,
    rtol: float,
    atol: float,
    max_steps: int | None = None,
    max_wall_time: float | None = None,
    max_step: float = math.inf,
    blowup: float = 1e100,
    max_nonfinite: int = 2000,
    device: torch.device | None = None,
) -> BatchState:
    """Integrate the B flows of ``field`` from the rows of ``y0`` (B, n) and save their states at
    ``t_eval`` (one grid for all); the ends and messages follow the numba engine (statuses ``ok``,
    ``diverged``, ``failed``, ``interrupted``, a flow stopping at its own step budget)."""
    dev = device or field.weight.device
    f64 = torch.float64
    nb, n = y0.shape
    T = t_eval.size
    t0, t_bound = float(t_eval[0]), float(t_eval[-1])
    grid = torch.as_tensor(t_eval, dtype=f64, device=dev)
    A = torch.as_tensor(_co.A, dtype=f64, device=dev)
    Bw = torch.as_tensor(_co.B, dtype=f64, device=dev)
    C = [float(c) for c in _co.C]
    E3 = torch.as_tensor(_co.E3, dtype=f64, device=dev)
    E5 = torch.as_tensor(_co.E5, dtype=f64, device=dev)
    D = torch.as_tensor(_co.D, dtype=f64, device=dev)
    n_k = _co.D.shape[1]  # 16 stages with the dense-output ones
    start_wall = time.perf_counter()

    y = torch.as_tensor(np.array(y0, dtype=float), device=dev)
    ys = torch.zeros((nb, T, n), dtype=f64, device=dev)
    ys[:, 0] = y
    # the stages, stage-major: K[s] is the (B, n) velocity of stage s, so that a stage sum Σ_i a_i K_i of
    # the whole batch is one matrix-vector product on the (s, B·n) view of K[:s]
    K = torch.empty((n_k, nb, n), dtype=f64, device=dev)
    k_heads = [K[:s].view(s, nb * n) for s in range(n_k + 1)]
    a_rows = [A[s, :s] for s in range(n_k)]

    def stage_sum(coef: torch.Tensor, s: int) -> torch.Tensor:
        return (coef @ k_heads[s]).view(nb, n)
    code = np.full(nb, RUNNING, dtype=np.int64)
    status: list[str | None] = [None] * nb
    message = [""] * nb
    t = torch.full((nb,), t0, dtype=f64, device=dev)
    t_prev = t.clone()
    h_abs = torch.zeros(nb, dtype=f64, device=dev)
    nsteps = torch.zeros(nb, dtype=torch.int64, device=dev)
    counter = EvalCounter(nb, max_nonfinite, dev)
    count = counter.count
    k_save = torch.ones(nb, dtype=torch.int64, device=dev)
    rejected = torch.zeros(nb, dtype=torch.bool, device=dev)

    def finish(mask: torch.Tensor, what: int) -> None:
        for b in np.nonzero(mask.cpu().numpy())[0]:
            if code[b] == RUNNING:
                code[b] = what

    def finish_at(idx: torch.Tensor, what: int) -> None:
        for b in idx.cpu().numpy():
            if code[b] == RUNNING:
                code[b] = what

    def running() -> torch.Tensor:
        return torch.as_tensor(code == RUNNING, device=dev)

    bad0 = ~torch.isfinite(y).all(dim=1) | ~(y.abs() <= blowup).all(dim=1)
    for b in np.nonzero(bad0.cpu().numpy())[0]:
        code[b] = FINISHED
        status[b] = "diverged"
        message[b] = f"the initial state is not finite or exceeds {blowup:.0e} (t={t0:g})"
    if t_bound <= t0:
        code[:] = FINISHED
    try:
        if (code == RUNNING).any():
            # the initial step (HNW93 Sec. II.4; scipy select_initial_step, order 7)
            live = running()
            f = torch.empty_like(y)
            field(y, f)
            ok = torch.isfinite(f).all(dim=1)
            count(live, ok, t)
            finish(live & ~ok, INITIAL_NONFINITE)
            interval = t_bound - t0
            scale = atol + y.abs() * rtol
            d0, d1 = _rms(y / scale), _rms(f / scale)
            h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1).clamp(max=interval)
            f1 = torch.empty_like(y)
            field(y + h0[:, None] * f, f1)
            count(running(), torch.isfinite(f1).all(dim=1), t + h0)
            d2 = _rms((f1 - f) / scale) / h0
            small = (d1 <= 1e-15) & (d2 <= 1e-15)
            h1 = torch.where(small, torch.clamp(h0 * 1e-3, min=1e-6), (0.01 / torch.maximum(d1, d2)) ** 0.125)
            h_abs = torch.minimum(torch.minimum(100 * h0, h1), torch.full_like(h0, min(interval, max_step)))
        inf_t = torch.full((nb,), math.inf, dtype=f64, device=dev)
        while (code == RUNNING).any():
            live = running()
            # a new step starts where the last attempt was accepted: clip the step to [min_step, max_step]
            min_step = 10 * (torch.nextafter(t, inf_t) - t).abs()
            fresh = live & ~rejected
            h_abs = torch.where(fresh & (h_abs > max_step), max_step,
                                torch.where(fresh & (h_abs < min_step), min_step, h_abs))
            tiny = live & (h_abs < min_step)
            if bool(tiny.any()):
                finish(tiny, TOO_SMALL)
                live = live & ~tiny
            t_new = torch.where(t + h_abs - t_bound > 0, t_bound, t + h_abs)
            h = torch.where(live, t_new - t, 0.0)
            hc = h[:, None]
            # the stages K_s = f(t + c_s h, y + h Σ_{i<s} a_si K_i) and the step (scipy rk_step)
            K[0] = f
            for s in range(1, N_STAGES):
                field(torch.addcmul(y, hc, stage_sum(a_rows[s], s)), K[s])
            y_new = torch.addcmul(y, hc, stage_sum(Bw, N_STAGES))
            field(y_new, K[N_STAGES])
            # finite velocities, (B, 12): one sum per row (finite iff every entry is, as in the scipy path)
            finite = torch.isfinite(K[1:N_STAGES + 1].sum(dim=2)).T
            if bool(finite[live].all()):
                counter.count_finite(live, N_STAGES)
            else:  # the exact streak of non-finite velocities, stage by stage (a diverging flow)
                alive = live.clone()
                for i in range(N_STAGES):
                    stop = count(alive, finite[:, i], t + C[i + 1] * h)
                    if bool(stop.any()):
                        finish(stop, NONFINITE_STREAK)
                        alive &= ~stop
                live = alive
            # the error norm of DOP853: the 5th-order estimate blended with the 3rd-order one
            scale = atol + torch.maximum(y.abs(), y_new.abs()) * rtol
            err5 = ((stage_sum(E5, N_STAGES + 1) / scale) ** 2).sum(dim=1)
            err3 = ((stage_sum(E3, N_STAGES + 1) / scale) ** 2).sum(dim=1)
            both_zero = (err5 == 0) & (err3 == 0)
            error_norm = torch.where(both_zero, 0.0, h.abs() * err5 / torch.sqrt((err5 + 0.01 * err3) * n))
            accept = live & (error_norm < 1)
            reject = live & ~accept
            grow = torch.where(error_norm == 0, MAX_FACTOR,
                               torch.clamp(SAFETY * error_norm**ERROR_EXPONENT, max=MAX_FACTOR))
            grow = torch.where(rejected, torch.clamp(grow, max=1.0), grow)
            shrink = SAFETY * error_norm**ERROR_EXPONENT
            shrink = torch.where(shrink > MIN_FACTOR, shrink, MIN_FACTOR)  # a NaN error shrinks by MIN_FACTOR
            h_abs = torch.where(accept, h.abs() * grow, torch.where(reject, h.abs() * shrink, h_abs))
            rejected = torch.where(accept, False, torch.where(reject, True, rejected))
            if max_wall_time is not None and time.perf_counter() - start_wall > max_wall_time:
                for b in np.nonzero(code == RUNNING)[0]:
                    code[b] = FINISHED
                    status[b] = "failed"
                    message[b] = f"wall-time budget of {max_wall_time:g} s exhausted at t={float(t[b]):.6g}"
            if not bool(accept.any()):
                continue
            nsteps.add_(accept.to(torch.int64))
            bad = accept & ~(y_new.abs() <= blowup).all(dim=1)
            dense = accept & ~bad & (k_save < T) & (grid[k_save.clamp(max=T - 1)] <= t_new)
            if bool(dense.any()):
                _save_dense(field, dense, y, y_new, K, h, t, t_new, grid, ys, k_save, A, D, C, counter,
                            finish_at)
            t_prev = torch.where(accept, t, t_prev)
            t = torch.where(accept, t_new, t)
            y = torch.where(accept[:, None], y_new, y)
            f = torch.where(accept[:, None], K[N_STAGES], f)
            finish(bad, STATE_DIVERGED)
            finish(accept & ~bad & (t_new - t_bound >= 0), FINISHED)
            if max_steps is not None:
                out_of_steps = (nsteps >= max_steps) & accept
                for b in np.nonzero((out_of_steps & running()).cpu().numpy())[0]:
                    code[b] = FINISHED
                    status[b] = "failed"
                    message[b] = f"step budget of {max_steps} steps exhausted at t={float(t[b]):.6g}"
    except KeyboardInterrupt:
        for b in np.nonzero(code == RUNNING)[0]:
            status[b] = "interrupted"
            message[b] = f"interrupted by the user at t={float(t[b]):.6g} (step {int(nsteps[b])})"
    return BatchState(code=code, t=t.cpu().numpy(), t_prev=t_prev.cpu().numpy(),
                      nfev=counter.nfev.cpu().numpy(),
                      nsteps=nsteps.cpu().numpy(), k_save=k_save.cpu().numpy(),
                      t_nonfinite=torch.where(counter.seen, counter.t_nonfinite, math.nan).cpu().numpy(),
                      y=y.cpu().numpy(), ys=ys.cpu().numpy(), status=status, message=message)


def _save_dense(field: BatchField, dense: torch.Tensor, y: torch.Tensor, y_new: torch.Tensor, K: torch.Tensor,
                h: torch.Tensor, t: torch.Tensor, t_new: torch.Tensor, grid: torch.Tensor, ys: torch.Tensor,
                k_save: torch.Tensor, A: torch.Tensor, D: torch.Tensor, C: list[float], counter: EvalCounter,
                finish: Callable[[torch.Tensor, int], None]) -> None:
    """The 7th-order dense output of the step (scipy ``DOP853._dense_output_impl``, ``Dop853DenseOutput``)
    at every saving time the flows ``dense`` passed: three extra stages, the seven coefficient rows F, and
    Horner's scheme in x = (t_k − t)/h alternating the factors x and 1 − x."""
    idx = torch.nonzero(dense).squeeze(1)
    sub = field.take(idx)
    Ks, ys0, yn, hs, ts = K[:, idx], y[idx], y_new[idx], h[idx], t[idx]
    nd, n = ys0.shape
    hc = hs[:, None]
    alive = torch.ones(idx.numel(), dtype=torch.bool, device=idx.device)
    for s in range(N_STAGES + 1, Ks.shape[0]):
        sub(torch.addcmul(ys0, hc, (A[s, :s] @ Ks[:s].view(s, nd * n)).view(nd, n)), Ks[s])
        ok = torch.isfinite(Ks[s].sum(dim=1))
        if bool(ok[alive].all()):
            counter.count_finite_at(idx[alive])
            continue
        stop = counter.count_at(idx, alive, ok, ts + C[s] * hs)
        if bool(stop.any()):
            finish(idx[stop], NONFINITE_STREAK)
            alive &= ~stop
    dy = yn - ys0
    F = torch.empty((idx.numel(), 7, dy.shape[1]), dtype=dy.dtype, device=dy.device)
    F[:, 0] = dy
    F[:, 1] = hc * Ks[0] - dy
    F[:, 2] = 2 * dy - hc * (Ks[N_STAGES] + Ks[0])
    F[:, 3:] = hc[:, :, None] * (D @ Ks.view(Ks.shape[0], nd * n)).view(-1, nd, n).transpose(0, 1)
    T = grid.numel()
    k = k_save[idx].clone()
    todo = alive & (k < T) & (grid[k.clamp(max=T - 1)] <= t_new[idx])
    while bool(todo.any()):
        j = torch.nonzero(todo).squeeze(1)
        kj = k[j]
        x = ((grid[kj] - ts[j]) / hs[j])[:, None]
        v = torch.zeros_like(dy[j])
        Fj = F[j]
        for i in range(6, -1, -1):
            v = v + Fj[:, i]
            v = v * (x if (6 - i) % 2 == 0 else 1 - x)
        ys[idx[j], kj] = v + ys0[j]
        k[j] += 1
        todo = alive & (k < T) & (grid[k.clamp(max=T - 1)] <= t_new[idx])
    k_save[idx] = k
