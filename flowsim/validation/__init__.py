"""Validation of the continuous-time models against discrete optimizers (docs/math.md §11).

* :func:`train` / :func:`train_batched`: discrete GD, Adam, Adagrad, Adamax, RMSprop on the layer factors in
  torch (torch.optim semantics), B runs batched, metrics on a log-spaced iteration grid, t_k = kη.
* :func:`validate`: discrete runs against a flow over step sizes, the errors of
docs/math.md §11 and their log-log
  slope.
"""

from .optimizers import OPTIMIZER_NAMES, make_optimizer, torch_optimizer
from .train import record_iterations, train, train_batched
from .validate import ValidationResult, validate

__all__ = [
    "OPTIMIZER_NAMES",
    "ValidationResult",
    "make_optimizer",
    "record_iterations",
    "torch_optimizer",
    "train",
    "train_batched",
    "validate",
]
