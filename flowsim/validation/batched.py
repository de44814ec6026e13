"""A batch of B completion problems and depth-N linear networks as stacked torch
tensors (docs/math.md §2, §3, §11).

Layer factors of B runs are tensors of shape (B, d_j, d_{j−1}); end products are (B, m, n). Losses and
gradients are closed forms, batched over runs (batched matmul), never autograd:

  ℓ(W) = c Σ_Ω (W − W*)²/D,  ∇ℓ(W) = (2c/D) P_Ω(W − W*)                                 (docs/math.md §2)
  ∇_{W_j}(ℓ + λR) = W_{N:j+1}ᵀ (∇ℓ(W) + λ∇R(W)) W_{j−1:1}ᵀ                              (docs/math.md §6)

The penalty gradient ∇R = U diag(g(σ)) Vᵀ uses a batched thin SVD and the penalty's own g(σ) (the
conventions of :mod:`flowsim.penalties`, evaluated per run on the σ vector). Metrics (docs/math.md §2) use
one batched SVD of the end products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flowsim.errors import BadInputError
from flowsim.factors import prefix_products, suffix_products
from flowsim.penalties import Penalty
from flowsim.problems import CompletionProblem

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is bad input."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError("--device cuda was requested but no CUDA device is available")
        return torch.device("cuda")
    raise BadInputError(f"--device must be auto|cpu|cuda, got {device!r}")


def resolve_dtype(dtype: str) -> torch.dtype:
    """``float64`` (default) or ``float32``."""
    if dtype not in DTYPES:
        raise BadInputError(f"--dtype must be one of {'|'.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def batched_svd(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of a batch (B, m, n): torch's batched LAPACK call (gesdd on CPU); when it fails to converge
    for some element (LAPACK's divide-and-conquer can, on a run that is blowing up towards overflow), each
    element again with LAPACK's QR-iteration driver gesvd (scipy), and an element that fails there too gets
    NaN factors, so that its run is stopped as diverged at its next check instead of stopping the batch."""
    try:
        return torch.linalg.svd(W, full_matrices=False)
    except torch.linalg.LinAlgError:
        import scipy.linalg

        B, m, n = W.shape
        k = min(m, n)
        A = W.detach().cpu().double().numpy()
        U, s, Vh = np.full((B, m, k), np.nan), np.full((B, k), np.nan), np.full((B, k, n), np.nan)
        for b in range(B):
            try:
                U[b], s[b], Vh[b] = scipy.linalg.svd(A[b], full_matrices=False, lapack_driver="gesvd")
            except (np.linalg.LinAlgError, ValueError):
                pass
        return tuple(torch.as_tensor(x, dtype=W.dtype, device=W.device) for x in (U, s, Vh))  # type: ignore[return-value]


@dataclass
class BatchedProblems:
    """B completion problems of one shape (m, n): stacked W* and masks, per-run c/D and λ."""

    W_star: torch.Tensor  # (B, m, n)
    mask: torch.Tensor  # (B, m, n) float 0/1
    coef: torch.Tensor  # (B, 1, 1): c/D
    lam: torch.Tensor  # (B, 1, 1)
    penalty: Penalty
    problems: list[CompletionProblem]

    @classmethod
    def stack(
        cls,
        problems: Sequence[CompletionProblem],
        penalty: Penalty | None,
        lams: Sequence[float],
        device: torch.device,
        dtype: torch.dtype,
    ) -> BatchedProblems:
        """Stack ``problems`` (all of one shape) with one λ per run."""
        shapes = {p.shape for p in problems}
        if len(shapes) != 1:
            raise BadInputError(f"batched runs need problems of one shape, got {sorted(shapes)}")
        if len(lams) != len(problems):
            raise BadInputError("one λ per run is needed")
        if any(not (np.isfinite(x) and x >= 0) for x in lams):
            raise BadInputError("λ must be finite and ≥ 0")

        def t(a):
            return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

        W_star = t(np.stack([p.W_star for p in problems]))
        mask = t(np.stack([p.mask.astype(float) for p in problems]))
        coef = t([p.scale / p.denominator for p in problems]).reshape(-1, 1, 1)
        lam = t(list(lams)).reshape(-1, 1, 1)
        return cls(W_star, mask, coef, lam, penalty if penalty is not None else Penalty(), list(problems))

    @property
    def batch(self) -> int:
        """B."""
        return int(self.W_star.shape[0])

    @property
    def has_penalty(self) -> bool:
        """True when some run has λ > 0 with a nonzero penalty."""
        return (not self.penalty.is_zero) and bool(torch.any(self.lam != 0))

    def loss_and_grad(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ℓ(W) + λR(W) per run (B,), G = ∇ℓ(W) + λ∇R(W) (B, m, n)) (docs/math.md §2, §3)."""
        R = self.mask * (W - self.W_star)
        loss = self.coef[:, 0, 0] * (R * R).sum(dim=(1, 2))
        G = (2 * self.coef) * R
        if self.has_penalty:
            value, pgrad = self.penalty_value_and_grad(W)
            loss = loss + self.lam[:, 0, 0] * value
            G = G + self.lam * pgrad
        return loss, G

    def penalty_value_and_grad(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R(W) (B,), ∇R(W) = U diag(g(σ)) Vᵀ (B, m, n)) via one batched thin SVD (docs/math.md §3).

        Non-finite end products (a diverged run) are replaced by 0 for the SVD only, so that one bad run
        cannot break the batched factorization of the others; the bad run is caught by its loss (as is one
        whose SVD does not converge, :func:`batched_svd`).
        """
        safe = torch.where(torch.isfinite(W).all(dim=(1, 2), keepdim=True), W, torch.zeros_like(W))
        U, s, Vh = batched_svd(safe)
        s_np = s.detach().cpu().double().numpy()
        shape = tuple(W.shape[1:])
        ok = np.all(np.isfinite(s_np), axis=1)  # an element batched_svd could not factorize: NaN run
        g = np.stack([self.penalty.spectral_grad(si, shape) if fine else np.full_like(si, np.nan)
                      for si, fine in zip(s_np, ok)])
        vals = np.array([self.penalty.value_from_sv(si) if fine else np.nan for si, fine in zip(s_np, ok)])
        g_t = torch.as_tensor(g, dtype=W.dtype, device=W.device)
        return torch.as_tensor(vals, dtype=W.dtype, device=W.device), (U * g_t[:, None, :]) @ Vh

    def metrics(self, W: torch.Tensor) -> dict[str, np.ndarray]:
        """Metrics of docs/math.md §2 per run from one batched SVD: arrays (B,) and ``sigma`` (B, min(m, n)).

        Same definitions as :func:`flowsim.metrics.matrix_metrics` (loss without the penalty, relative
        test error, test RMSE, erank, Frobenius/nuclear/spectral norms, det for square W).
        """
        finite = torch.isfinite(W).all(dim=(1, 2))
        safe = torch.where(finite[:, None, None], W, torch.zeros_like(W))
        s = batched_svd(safe)[1]
        D = self.W_star - safe
        R = self.mask * D
        loss = self.coef[:, 0, 0] * (R * R).sum(dim=(1, 2))
        # the test set: Ωᶜ, or the held-out entries of data without a ground truth (ratings)
        test = torch.as_tensor(np.stack([p.test_set for p in self.problems]).astype(float),
                               dtype=W.dtype, device=W.device)
        n_test = test.sum(dim=(1, 2))
        num = torch.sqrt(((test * D) ** 2).sum(dim=(1, 2)))
        den = torch.sqrt(((test * self.W_star) ** 2).sum(dim=(1, 2)))
        total = s.sum(dim=1, keepdim=True)
        p = torch.where(
            total > 0, s / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(s)
        )
        plogp = torch.where(
            p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p)
        )
        erank = torch.where(
            total[:, 0] > 0, torch.exp(-plogp.sum(dim=1)), torch.full_like(total[:, 0], np.nan)
        )
        out = {
            "sigma": s,
            "loss": loss,
            "test_error": torch.where(n_test > 0, num / den, torch.full_like(num, np.nan)),
            "test_rmse": torch.where(
                n_test > 0, num / torch.sqrt(n_test.clamp(min=1)), torch.full_like(num, np.nan)
            ),
            "erank": erank,
            "norm_fro": torch.sqrt((s * s).sum(dim=1)),
            "norm_nuc": s.sum(dim=1),
            "norm_spec": s[:, 0],
        }
        if W.shape[1] == W.shape[2]:
            out["det"] = torch.linalg.det(safe)
        res = {k: to_numpy(v) for k, v in out.items()}
        bad = ~finite.cpu().numpy()
        for k in res:
            res[k][bad] = np.nan
        return res


class TorchRuns:
    """B runs advanced with batched torch tensors: layer factors ``params`` (B, d_{j+1}, d_j) updated in
    place by a batched optimizer from the closed-form layer gradients (ACH18 Eq. 5).

    ``start()`` evaluates iterate 0, ``advance(k_to)`` runs the iterations k → k_to, evaluating the
    objective at every iterate; ``bad_iterations()`` gives per run the first iterate whose objective was
    non-finite or above ``blowup`` (−1 if none; tracked on the device, read back only here);
    ``end_products()`` the last evaluated iterate W (B, m, n).
    """

    def __init__(
        self, params: list[torch.Tensor], problems: BatchedProblems, optimizer: Any, blowup: float = 1e100
    ):
        self.params = params
        self.problems = problems
        self.opt = optimizer
        self.blowup = blowup
        self.k = 0
        self.first_bad = torch.full((problems.batch,), -1, dtype=torch.long, device=params[0].device)
        self.pre: list[torch.Tensor | None] = []
        self.G: torch.Tensor | None = None

    def _evaluate(self) -> None:
        self.pre = prefix_products(self.params, identity=False)
        loss, self.G = self.problems.loss_and_grad(self.pre[-1])
        bad = ~torch.isfinite(loss) | (loss.abs() > self.blowup)
        fb = self.first_bad
        self.first_bad = torch.where((fb < 0) & bad, torch.full_like(fb, self.k), fb)

    def start(self) -> None:
        """Evaluate iterate 0."""
        self._evaluate()

    def advance(self, k_to: int) -> None:
        """Optimizer steps from the current iterate to iterate ``k_to``."""
        while self.k < k_to:
            self.opt.step(layer_gradients(self.params, self.G, self.pre))
            self.k += 1
            self._evaluate()

    def bad_iterations(self) -> np.ndarray:
        """First non-finite/blown-up iterate per run (−1: none so far)."""
        return self.first_bad.cpu().numpy()

    def end_products(self) -> torch.Tensor:
        """W = W_N ⋯ W_1 at the current iterate, (B, m, n)."""
        return self.pre[-1]


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of a tensor (never a view of it: parameters change in place)."""
    return np.array(x.detach().to("cpu", torch.float64).numpy(), copy=True)


def layer_gradients(
    factors: Sequence[torch.Tensor], G: torch.Tensor, pre: Sequence[torch.Tensor | None] | None = None
) -> list[torch.Tensor]:
    """∇_{W_j} = W_{N:j+1}ᵀ G W_{j−1:1}ᵀ per run (docs/math.md §6), with the prefix and suffix products of
    :func:`flowsim.factors.prefix_products` / :func:`~flowsim.factors.suffix_products` (identities as None).

    The products are formed explicitly, (W_{N:j+1}ᵀ G) W_{j−1:1}ᵀ, not back-propagated as in
    :func:`flowsim.flows.gradient.layer_gradients`: the two agree to round-off, and the discrete runs keep
    this order (their recorded numbers depend on it).
    """
    pre = prefix_products(factors, identity=False) if pre is None else pre
    suf = suffix_products(factors, identity=False)
    grads = []
    for j in range(len(factors)):
        g = G if suf[j + 1] is None else suf[j + 1].transpose(1, 2) @ G
        if pre[j] is not None:
            g = g @ pre[j].transpose(1, 2)
        grads.append(g)
    return grads
