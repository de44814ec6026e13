"""B discrete runs advanced by the compiled (numba) kernels of :mod:`flowsim.validation.compiled_kernels`.

The engine holds the factors, optimizer states and hyper-parameters as float64 numpy arrays and exposes
the same small interface as the torch engine of :mod:`flowsim.validation.train` (``advance``, ``first_bad``,
``end_products``, ``k``), so that the recording and divergence bookkeeping of ``train_batched`` is one
code path for both engines. It covers what the torch engine covers: the optimizers GD/Adam/Adagrad/
Adamax/RMSprop with every ``torch.optim`` option the batched optimizers accept, and the penalties none,
ratio, nuclear and schatten:P:Q; on CPU in float64 only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from flowsim.errors import BadInputError
from flowsim.penalties import NuclearPenalty, Penalty, RatioPenalty, SchattenRatioPenalty

from . import compiled_kernels as ck
from .batched import BatchedProblems
from .optimizers import BatchedOptimizer

ENGINES = ("auto", "torch", "numba")
#: widest layer for which ``engine="auto"`` picks numba (measured in bench/bench_discrete.py)
AUTO_MAX_DIM = 512
#: with a penalty the kernel's SVD dominates; measured at 100×100 (ratio penalty, batch 1) the numba step
#: was 5–35× slower than torch's, at 30×30 4–8× faster: auto keeps torch above this width
AUTO_MAX_DIM_PENALTY = 32

_OPT_CODES = {"gd": ck.GD, "adam": ck.ADAM, "adagrad": ck.ADAGRAD, "adamax": ck.ADAMAX, "rmsprop": ck.RMSPROP}
_HYPER_COLUMNS = {
    "lr": ck.H_LR,
    "momentum": ck.H_MOMENTUM,
    "dampening": ck.H_DAMPENING,
    "weight_decay": ck.H_WEIGHT_DECAY,
    "beta1": ck.H_BETA1,
    "beta2": ck.H_BETA2,
    "eps": ck.H_EPS,
    "lr_decay": ck.H_LR_DECAY,
    "initial_accumulator_value": ck.H_INIT_ACC,
    "alpha": ck.H_ALPHA,
}


def numba_available() -> bool:
    """True when numba is installed (the ``fast`` extra)."""
    return ck._numba is not None


def penalty_code(penalty: Penalty | None) -> tuple[int, float, float] | None:
    """(kind, p, q) of a penalty the kernels implement, or None (the torch engine is needed)."""
    if penalty is None or type(penalty) is Penalty:
        return ck.PEN_NONE, 0.0, 0.0
    if type(penalty) is RatioPenalty:
        return ck.PEN_RATIO, 0.0, 0.0
    if type(penalty) is NuclearPenalty:
        return ck.PEN_NUCLEAR, 0.0, 0.0
    if type(penalty) is SchattenRatioPenalty:
        return ck.PEN_SCHATTEN, float(penalty.p), float(penalty.q)
    return None


def choose_engine(
    engine: str, device: torch.device, dtype: torch.dtype, problems: BatchedProblems, dims: Sequence[int]
) -> tuple[str, str]:
    """(engine that runs, why): ``torch`` or ``numba`` for a requested ``auto|torch|numba``.

    ``auto`` takes numba for CPU float64 runs whose layers are at most ``AUTO_MAX_DIM`` wide, with a
    penalty the kernels implement, when numba is installed; torch otherwise. ``numba`` requested where it
    cannot run is bad input.
    """
    if engine not in ENGINES:
        raise BadInputError(f"--engine must be one of {'|'.join(ENGINES)}, got {engine!r}")
    if engine == "torch":
        return "torch", "requested"
    blockers = []
    if device.type != "cpu":
        blockers.append(f"device {device}")
    if dtype != torch.float64:
        blockers.append(f"dtype {str(dtype).replace('torch.', '')}")
    if not numba_available():
        blockers.append("numba is not installed (pip install numba)")
    if penalty_code(problems.penalty if problems.has_penalty else None) is None:
        blockers.append(f"penalty {problems.penalty.spec()} has no compiled kernel")
    if engine == "numba":
        if blockers:
            raise BadInputError("--engine numba cannot run here: " + "; ".join(blockers))
        return "numba", "requested"
    if max(dims) > AUTO_MAX_DIM:
        blockers.append(f"layers wider than {AUTO_MAX_DIM} (torch's threaded BLAS wins)")
    elif problems.has_penalty and max(dims) > AUTO_MAX_DIM_PENALTY:
        blockers.append(f"a penalty on layers wider than {AUTO_MAX_DIM_PENALTY} (the per-step SVD is "
                        "faster in torch there)")
    return ("torch", "auto: " + "; ".join(blockers)) if blockers else ("numba", "auto: CPU float64 problem")


class CompiledRuns:
    """B runs of one layer shape: flat factors F (B, Σ d_{j+1}d_j), states (B, 3, ·), per-run hypers.

    ``start()`` evaluates iterate 0; ``advance(k_to)`` runs the iterations k → k_to of every run still
    finite, evaluating the objective at each iterate (a run stops at its first bad one);
    ``bad_iterations()`` gives per run the first iterate whose objective was non-finite or above
    ``blowup`` (−1 if none); ``end_products()`` the last evaluated iterate W (B, m, n).
    """

    def __init__(
        self,
        factors: Sequence[Sequence[np.ndarray]],
        problems: BatchedProblems,
        optimizer: BatchedOptimizer,
        blowup: float,
    ):
        kind = penalty_code(problems.penalty if problems.has_penalty else None)
        if kind is None:
            raise ValueError(f"penalty {problems.penalty.spec()} has no compiled kernel")
        self.pen_kind, self.pen_p, self.pen_q = kind
        shapes = [np.shape(F) for F in factors[0]]
        self.dims = np.array([shapes[0][1]] + [s[0] for s in shapes], dtype=np.int64)
        self.offs = np.concatenate([[0], np.cumsum([a * b for a, b in shapes])]).astype(np.int64)
        self.F = np.ascontiguousarray(
            np.stack([np.concatenate([np.asarray(F, dtype=float).ravel() for F in run]) for run in factors])
        )
        B = self.F.shape[0]

        def host(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().to("cpu", torch.float64).numpy())

        self.W_star = host(problems.W_star)
        self.mask = host(problems.mask)
        self.coef = host(problems.coef).reshape(B)
        self.lam = host(problems.lam).reshape(B)
        self.opt_code = _OPT_CODES[optimizer.name]
        self.hyp = np.zeros((B, ck.N_HYPER))
        for name, values in optimizer.h.items():
            self.hyp[:, _HYPER_COLUMNS[name]] = host(values)
        flags = optimizer.flags
        self.nesterov = bool(flags.get("nesterov", False))
        self.amsgrad = bool(flags.get("amsgrad", False))
        self.centered = bool(flags.get("centered", False))
        self.state = np.zeros((B, ck.N_STATE, self.F.shape[1]))
        if optimizer.name == "adagrad":  # torch: state['sum'] = full_like(p, initial_accumulator_value)
            self.state[:, 0, :] = self.hyp[:, ck.H_INIT_ACC, None]
        self.first_bad = np.full(B, -1, dtype=np.int64)
        self.W = np.zeros((B, int(self.dims[-1]), int(self.dims[0])))
        self.blowup = float(blowup)
        self.k = 0

    def start(self) -> None:
        """Evaluate iterate 0."""
        self._run(0, 0)

    def advance(self, k_to: int) -> None:
        """Optimizer steps from the current iterate to iterate ``k_to``."""
        self._run(self.k, k_to)

    def bad_iterations(self) -> np.ndarray:
        """First non-finite/blown-up iterate per run (−1: none so far)."""
        return self.first_bad.copy()

    def _run(self, k_from: int, k_to: int) -> None:
        ck.advance_runs(
            self.F, self.dims, self.offs, self.W_star, self.mask, self.coef, self.lam,
            self.pen_kind, self.pen_p, self.pen_q, self.opt_code, self.hyp,
            self.nesterov, self.amsgrad, self.centered, self.state, self.first_bad, self.W,
            int(k_from), int(k_to), self.blowup,
        )  # fmt: skip
        self.k = int(k_to)

    def end_products(self) -> np.ndarray:
        """The last evaluated iterate W = W_N ⋯ W_1 of every run, (B, m, n)."""
        return self.W

    def factors(self) -> list[np.ndarray]:
        """The current layer factors as (B, d_{j+1}, d_j) arrays (copies)."""
        B = self.F.shape[0]
        return [
            self.F[:, self.offs[j] : self.offs[j + 1]].reshape(B, self.dims[j + 1], self.dims[j]).copy()
            for j in range(len(self.dims) - 1)
        ]
