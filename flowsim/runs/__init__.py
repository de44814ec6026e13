"""Typed run specs and the run functions of the commands: the API between the layers below (flows,
integrator, theory, validation) and the command line, sweeps and the gallery above.

Each command is a frozen dataclass whose fields are its options and a function that runs it::

    from flowsim.runs import SimulateSpec, run_simulate

    spec = SimulateSpec.from_options({"size": "20", "depth": 3, "t-end": 100.0, "out": "runs/demo"})
    result = run_simulate(spec)      # writes run.json, trajectory.npz (and trajectory.png), as the CLI does
    spec.to_argv()                   # ['--size', '20x20', '--t-end', '100.0', '--out', 'runs/demo']

The specs and functions are imported lazily (``train`` and ``validate`` import torch):
:func:`spec_class` and :func:`run_function` look a command up by name.
"""

from __future__ import annotations

import importlib
from typing import Any

#: command -> (module, spec class, run function)
RUNS: dict[str, tuple[str, str, str]] = {
    "simulate": ("flowsim.runs.simulate", "SimulateSpec", "run_simulate"),
    "train": ("flowsim.runs.train", "TrainSpec", "run_train"),
    "validate": ("flowsim.runs.validate", "ValidateSpec", "run_validate"),
    "razin": ("flowsim.runs.razin", "RazinSpec", "run_razin"),
    "check": ("flowsim.runs.check", "CheckSpec", "run_check"),
}


def spec_class(command: str) -> Any:
    """The spec class of ``command`` (e.g. :class:`flowsim.runs.simulate.SimulateSpec`)."""
    module, cls, _ = RUNS[command]
    return getattr(importlib.import_module(module), cls)


def run_function(command: str) -> Any:
    """The run function of ``command``, looked up at call time (e.g.
    :func:`flowsim.runs.simulate.run_simulate`)."""
    module, _, fn = RUNS[command]
    return getattr(importlib.import_module(module), fn)


def __getattr__(name: str) -> Any:
    for module, cls, fn in RUNS.values():
        if name in (cls, fn):
            return getattr(importlib.import_module(module), name)
    if name == "RunResult":
        from .common import RunResult

        return RunResult
    raise AttributeError(f"module 'flowsim.runs' has no attribute {name!r}")


__all__ = ["RUNS", "RunResult", "run_function", "spec_class", *[n for v in RUNS.values() for n in v[1:]]]
