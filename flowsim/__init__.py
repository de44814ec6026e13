"""flowsim: gradient-flow dynamics of deep linear networks (deep matrix factorization / completion).

The public API in one place; see README.md, and docs/math.md for the mathematics.
"""

from .ensemble import simulate_ensemble
from .factors import balancedness_residuals, canonical_balanced_factors, end_product
from .flows import (
    EndProductFlow,
    Flow,
    LayerwiseFlow,
    apply_end_product_preconditioner,
    end_product_kernel,
    end_product_velocity,
    layer_gradients,
    layerwise_velocity,
    make_flow,
    singular_value_velocity,
    total_gradient,
)
from .initializations import init_factors
from .integrator import IntegrationResult, integrate, log_time_grid, solve_flow
from .metrics import effective_rank, matrix_metrics
from .penalties import NuclearPenalty, Penalty, RatioPenalty, SchattenRatioPenalty, make_penalty
from .problems import CompletionProblem, full_observation_problem, problem_from_files, synthetic_problem
from .simulate import simulate
from .trajectory import Trajectory, load_run, write_run

__version__ = "0.1.0"

__all__ = [
    "CompletionProblem", "EndProductFlow", "Flow", "IntegrationResult", "LayerwiseFlow", "NuclearPenalty",
    "Penalty", "RatioPenalty", "SchattenRatioPenalty", "Trajectory", "apply_end_product_preconditioner",
    "balancedness_residuals", "canonical_balanced_factors", "effective_rank", "end_product",
    "end_product_kernel", "end_product_velocity", "full_observation_problem", "init_factors", "integrate",
    "layer_gradients", "layerwise_velocity", "load_run", "log_time_grid", "make_flow", "make_penalty",
    "matrix_metrics", "problem_from_files", "simulate", "simulate_ensemble", "singular_value_velocity",
    "solve_flow", "synthetic_problem", "total_gradient", "write_run",
]
