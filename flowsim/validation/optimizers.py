"""Discrete optimizers with ``torch.optim`` semantics, batched over B stacked
independent runs (docs/math.md §11).

Every parameter is a tensor whose first axis indexes the run: a layer factor of B runs is one tensor of shape
(B, d_j, d_{j−1}). Every hyper-parameter may be a number (shared) or a sequence of B numbers (one per run);
it is broadcast along the run axis. The update of each run uses only that run's slice, so a batched run is
the same as B runs done one by one (the optimizers are element-wise).

The update rules are those of ``torch.optim`` (PyTorch 2.x, single-tensor path), written with the same
operations in the same order, so that with B = 1 a step equals ``torch.optim.X.step()`` on the un-batched
parameter to round-off:

* ``gd`` — SGD (``torch.optim.SGD``): g ← g + wd·p; with momentum μ: b ← g (first step), else
  b ← μb + (1−τ)g; g ← g + μb (Nesterov) or b; p ← p − η g.
* ``adam`` — ``torch.optim.Adam``: m ← m + (1−β₁)(g − m); v ← β₂v + (1−β₂)g²; (AMSGrad: v̂ ← max(v̂, v));
  p ← p − (η/(1−β₁ᵏ)) · m / (√v/√(1−β₂ᵏ) + ε).
* ``adagrad`` — ``torch.optim.Adagrad``: η_k = η/(1 + (k−1)·decay); s ← s + g²; p ← p − η_k g/(√s + ε).
* ``adamax`` — ``torch.optim.Adamax``: m ← m + (1−β₁)(g − m); u ← max(β₂u, |g| + ε);
  p ← p − (η/(1−β₁ᵏ)) · m/u.
* ``rmsprop`` — ``torch.optim.RMSprop``: s ← αs + (1−α)g²; centered: ḡ ← ḡ + (1−α)(g − ḡ),
  d = √(s − ḡ²) + ε, else d = √s + ε; with momentum μ: b ← μb + g/d, p ← p − ηb; else p ← p − η g/d.

Weight decay (L2, added to the gradient) is the torch convention for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from flowsim.errors import BadInputError

OPTIMIZER_NAMES = ("gd", "adam", "adagrad", "adamax", "rmsprop")

#: default hyper-parameters (those of torch.optim, with lr given explicitly by the caller)
DEFAULTS: dict[str, dict[str, Any]] = {
    "gd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    "adagrad": {"lr_decay": 0.0, "eps": 1e-10, "weight_decay": 0.0, "initial_accumulator_value": 0.0},
    "adamax": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0, "centered": False},
}
_FLAGS = ("nesterov", "amsgrad", "centered")


class BatchedOptimizer:
    """Base class: parameters (B, …) tensors, per-run hyper-parameters, one state dict per parameter.

    ``step(grads)`` applies one update in place, given the gradients (same shapes as the parameters).
    ``k`` counts the steps taken (torch's ``state['step']``).
    """

    name = "base"

    def __init__(self, params: Sequence[torch.Tensor], lr: float | Sequence[float], **hyper: Any):
        if not params:
            raise BadInputError("an optimizer needs at least one parameter")
        self.params = list(params)
        self.batch = int(self.params[0].shape[0])
        ref = self.params[0]
        unknown = set(hyper) - set(DEFAULTS[self.name])
        if unknown:
            raise BadInputError(f"unknown hyper-parameters for {self.name}: {', '.join(sorted(unknown))}")
        merged = {**DEFAULTS[self.name], **hyper}
        self.hyper = {"lr": lr, **merged}
        self.flags = {k: bool(merged.pop(k)) for k in list(merged) if k in _FLAGS}
        self.h = {k: self._per_run(v, ref, k) for k, v in {"lr": lr, **merged}.items()}
        self._check()
        self.k = 0
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]

    def _per_run(self, value: float | Sequence[float], ref: torch.Tensor, name: str) -> torch.Tensor:
        """A hyper-parameter as a (B, 1, …, 1) tensor that broadcasts against a parameter."""
        t = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
        if t.ndim == 0:
            t = t.expand(self.batch)
        if t.ndim != 1 or t.shape[0] != self.batch:
            raise BadInputError(f"{name} must be a number or {self.batch} numbers (one per run)")
        if not torch.all(torch.isfinite(t)):
            raise BadInputError(f"{name} must be finite")
        return t

    def _col(self, name: str, p: torch.Tensor) -> torch.Tensor:
        t = self.h[name]
        return t.reshape(t.shape + (1,) * (p.ndim - 1))

    def _check(self) -> None:
        if torch.any(self.h["lr"] <= 0):
            raise BadInputError("the learning rate must be > 0")
        if torch.any(self.h["weight_decay"] < 0):
            raise BadInputError("weight_decay must be ≥ 0")
        for b in ("beta1", "beta2", "alpha"):
            if b in self.h and torch.any((self.h[b] < 0) | (self.h[b] >= 1)):
                bad = self.h[b][(self.h[b] < 0) | (self.h[b] >= 1)].flatten()[0].item()
                raise BadInputError(f"--{b} must lie in [0, 1), got {bad:g}")
        if "eps" in self.h and torch.any(self.h["eps"] < 0):
            raise BadInputError("eps must be ≥ 0")
        if "momentum" in self.h and torch.any(self.h["momentum"] < 0):
            raise BadInputError("momentum must be ≥ 0")

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        """One update of every parameter from its gradient (torch.optim semantics)."""
        self.k += 1
        for p, g, st in zip(self.params, grads, self.state):
            if torch.any(self.h["weight_decay"] != 0):
                g = g + self._col("weight_decay", p) * p
            self._update(p, g, st)

    def _update(self, p: torch.Tensor, g: torch.Tensor, st: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Hyper-parameters for ``run.json``."""
        out = {"optimizer": self.name}
        for k, v in self.hyper.items():
            out[k] = [float(x) for x in v] if isinstance(v, (list, tuple)) else v
        return out


class BatchedSGD(BatchedOptimizer):
    """``torch.optim.SGD`` (plain GD without momentum by default), batched. See the module docstring."""

    name = "gd"

    def _update(self, p, g, st):
        mu = self._col("momentum", p)
        if torch.any(mu != 0):
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = g.clone()
            else:
                st["momentum_buffer"].mul_(mu).add_((1 - self._col("dampening", p)) * g)
            buf = st["momentum_buffer"]
            g_mom = g + mu * buf if self.flags["nesterov"] else buf
            # a run with μ = 0 in a batch with momentum is plain SGD (torch.optim ignores its dampening)
            g = torch.where(mu != 0, g_mom, g) if torch.any(mu == 0) else g_mom
        p.sub_(self._col("lr", p) * g)


class BatchedAdam(BatchedOptimizer):
    """``torch.optim.Adam`` (with optional AMSGrad), batched. See the module docstring."""

    name = "adam"

    def _update(self, p, g, st):
        if not st:
            st["exp_avg"] = torch.zeros_like(p)
            st["exp_avg_sq"] = torch.zeros_like(p)
            if self.flags["amsgrad"]:
                st["max_exp_avg_sq"] = torch.zeros_like(p)
        b1, b2 = self._col("beta1", p), self._col("beta2", p)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m.add_((g - m) * (1 - b1))
        v.mul_(b2).add_((1 - b2) * g * g)
        bc1 = 1 - b1**self.k
        bc2_sqrt = torch.sqrt(1 - b2**self.k)
        if self.flags["amsgrad"]:
            torch.maximum(st["max_exp_avg_sq"], v, out=st["max_exp_avg_sq"])
            denom = st["max_exp_avg_sq"].sqrt() / bc2_sqrt + self._col("eps", p)
        else:
            denom = v.sqrt() / bc2_sqrt + self._col("eps", p)
        p.sub_((self._col("lr", p) / bc1) * (m / denom))


class BatchedAdagrad(BatchedOptimizer):
    """``torch.optim.Adagrad``, batched. See the module docstring."""

    name = "adagrad"

    def _update(self, p, g, st):
        if not st:
            st["sum"] = torch.zeros_like(p) + self._col("initial_accumulator_value", p)
        clr = self._col("lr", p) / (1 + (self.k - 1) * self._col("lr_decay", p))
        st["sum"].add_(g * g)
        std = st["sum"].sqrt() + self._col("eps", p)
        p.sub_(clr * (g / std))


class BatchedAdamax(BatchedOptimizer):
    """``torch.optim.Adamax``, batched. See the module docstring."""

    name = "adamax"

    def _update(self, p, g, st):
        if not st:
            st["exp_avg"] = torch.zeros_like(p)
            st["exp_inf"] = torch.zeros_like(p)
        b1, b2 = self._col("beta1", p), self._col("beta2", p)
        m, u = st["exp_avg"], st["exp_inf"]
        m.add_((g - m) * (1 - b1))
        torch.maximum(u * b2, g.abs() + self._col("eps", p), out=u)
        clr = self._col("lr", p) / (1 - b1**self.k)
        p.sub_(clr * (m / u))


class BatchedRMSprop(BatchedOptimizer):
    """``torch.optim.RMSprop`` (optionally centered, with momentum), batched. See the module docstring."""

    name = "rmsprop"

    def _update(self, p, g, st):
        if not st:
            st["square_avg"] = torch.zeros_like(p)
            if torch.any(self.h["momentum"] > 0):
                st["momentum_buffer"] = torch.zeros_like(p)
            if self.flags["centered"]:
                st["grad_avg"] = torch.zeros_like(p)
        alpha = self._col("alpha", p)
        s = st["square_avg"]
        s.mul_(alpha).add_((1 - alpha) * g * g)
        if self.flags["centered"]:
            ga = st["grad_avg"]
            ga.add_((g - ga) * (1 - alpha))
            avg = (s - ga * ga).sqrt() + self._col("eps", p)
        else:
            avg = s.sqrt() + self._col("eps", p)
        if "momentum_buffer" in st:
            buf = st["momentum_buffer"]
            buf.mul_(self._col("momentum", p)).add_(g / avg)
            p.sub_(self._col("lr", p) * buf)
        else:
            p.sub_(self._col("lr", p) * (g / avg))


OPTIMIZERS: dict[str, type[BatchedOptimizer]] = {
    "gd": BatchedSGD,
    "adam": BatchedAdam,
    "adagrad": BatchedAdagrad,
    "adamax": BatchedAdamax,
    "rmsprop": BatchedRMSprop,
}


def make_optimizer(
    name: str, params: Sequence[torch.Tensor], lr: float | Sequence[float], **hyper: Any
) -> BatchedOptimizer:
    """The batched optimizer ``name`` (one of :data:`OPTIMIZER_NAMES`) over ``params``."""
    if name not in OPTIMIZERS:
        raise BadInputError(f"--optimizer must be one of {'|'.join(OPTIMIZER_NAMES)}, got {name!r}")
    return OPTIMIZERS[name](params, lr, **hyper)


def torch_optimizer(
    name: str, params: Sequence[torch.Tensor], lr: float, **hyper: Any
) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer equivalent to ``make_optimizer(name, …)`` for one un-batched run
    (the reference the batched optimizers are tested against, and the baseline of ``bench/``)."""
    h = {**DEFAULTS[name], **hyper}
    if name == "gd":
        return torch.optim.SGD(params, lr=lr, **h)
    if name in ("adam", "adamax"):
        betas = (h.pop("beta1"), h.pop("beta2"))
        cls = torch.optim.Adam if name == "adam" else torch.optim.Adamax
        return cls(params, lr=lr, betas=betas, **h)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, **h)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, **h)
    raise BadInputError(f"unknown optimizer {name!r}")
