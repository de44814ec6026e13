"""The claims registry (SPEC §6): every claim has an id, a source, a one-line statement, a numerical test
returning a residual, a tolerance and a verdict computed at every run.

A claim's test is a function ``test(config: CheckConfig) -> Evidence``. The verdict is derived from the
residual (a relative error): ``holds`` if residual ≤ tolerance, ``approximate`` if residual ≤
approx_tolerance, otherwise ``fails`` (the evidence's details then carry the counterexample).

Built-in claims live in modules ``theory/claims_*.py``; :func:`load_builtin_claims` imports them all.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

VERDICTS = ("holds", "approximate", "fails")


@dataclass(frozen=True)
class CheckConfig:
    """How thoroughly to check: ``quick`` uses fewer/smaller instances; ``seed`` fixes the instances."""

    quick: bool = False
    seed: int = 0


@dataclass
class Evidence:
    """What a claim's test measured: the residual (relative error) and details (instances, worst case)."""

    residual: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A registered claim."""

    id: str
    source: str
    statement: str
    tolerance: float
    test: Callable[[CheckConfig], Evidence]
    approx_tolerance: float = 0.1
    group: str = "builtin"


@dataclass
class ClaimRecord:
    """The outcome of checking one claim (the JSON record of SPEC §7)."""

    id: str
    source: str
    statement: str
    verdict: str
    residual: float
    tolerance: float
    details: dict[str, Any]
    wall_time_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The record ``{"id", "source", "statement", "verdict", "residual", "tolerance", "details"}``."""
        return {"id": self.id, "source": self.source, "statement": self.statement, "verdict": self.verdict,
                "residual": self.residual, "tolerance": self.tolerance,
                "details": {**self.details, "wall_time_s": self.wall_time_s}}


REGISTRY: dict[str, Claim] = {}


def register(c: Claim) -> Claim:
    """Add a claim to the registry (ids are unique)."""
    if c.id in REGISTRY and REGISTRY[c.id].test is not c.test:
        raise ValueError(f"claim id {c.id!r} is already registered")
    REGISTRY[c.id] = c
    return c


def claim(id: str, source: str, statement: str, tolerance: float, *, approx_tolerance: float = 0.1,
          group: str = "builtin") -> Callable[[Callable[[CheckConfig], Evidence]], Callable[[CheckConfig], Evidence]]:
    """Decorator registering ``test(config) -> Evidence`` as a claim."""

    def deco(fn: Callable[[CheckConfig], Evidence]) -> Callable[[CheckConfig], Evidence]:
        register(Claim(id, source, statement, float(tolerance), fn, float(approx_tolerance), group))
        return fn

    return deco


def verdict_for(residual: float, tolerance: float, approx_tolerance: float) -> str:
    """``holds`` / ``approximate`` / ``fails`` from a relative residual."""
    if not math.isfinite(residual):
        return "fails"
    if residual <= tolerance:
        return "holds"
    if residual <= approx_tolerance:
        return "approximate"
    return "fails"


def evaluate(c: Claim, config: CheckConfig) -> ClaimRecord:
    """Run a claim's test and compute its verdict (an exception in the test is a ``fails`` verdict)."""
    start = time.perf_counter()
    try:
        ev = c.test(config)
        residual = float(ev.residual)
        details = dict(ev.details)
    except Exception as exc:  # noqa: BLE001 - a crashing test is reported, not raised
        residual = float("nan")
        details = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=5)}
    verdict = verdict_for(residual, c.tolerance, c.approx_tolerance)
    if verdict == "approximate":
        details.setdefault("relative_error", residual)
    return ClaimRecord(c.id, c.source, c.statement, verdict, residual, c.tolerance, details,
                       time.perf_counter() - start)


def load_builtin_claims() -> dict[str, Claim]:
    """Import every ``theory.claims_*`` module (each registers its claims) and return the registry."""
    import theory

    for info in pkgutil.iter_modules(theory.__path__):
        if info.name.startswith("claims_"):
            importlib.import_module(f"theory.{info.name}")
    return REGISTRY
