"""The claims registry (docs/contract.md §4): every claim has an id, a source, a one-line statement, a
numerical test returning a residual, a tolerance and a verdict computed at every run.

A claim's test is a function ``test(config: CheckConfig) -> Evidence``. The verdict is derived from the
residual (a relative error): ``holds`` if residual ≤ tolerance, ``approximate`` if residual ≤
approx_tolerance, otherwise ``fails`` (the evidence's details then carry the counterexample); ``error`` when
the test could not measure (it raised, exited or returned no real residual ≥ 0; details say why).

Built-in claims live in the modules ``flowsim/theory/claims_*.py``; :func:`load_builtin_claims` imports
them all.

The registry is public API. A researcher registers a claim of their own in their own module, either with
:func:`claim` (any test) or with :func:`formula_claim` (a formula written as a function of W, of the layer
factors, or of a whole :class:`flowsim.theory.instances.Instance`, plus the exact quantity it should match),
and runs it with ``flowsim check --module PATH_OR_NAME`` beside the built-in claims, on the same instances and
in the same report and JSON::

    # my_claims.py  —  flowsim check --module my_claims.py --claim MY-RATIO-SCALE-INVARIANT
    import numpy as np
    from flowsim.theory.registry import formula_claim

    @formula_claim("MY-RATIO-SCALE-INVARIANT", source="my note, Eq. 1",
                   statement="the ratio penalty's gradient is orthogonal to W",
                   tolerance=1e-10, exact=lambda W: np.zeros(1), of="W")
    def inner_product(W):
        from flowsim.penalties import make_penalty
        return np.array([np.vdot(make_penalty("ratio").grad(W), W)])
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VERDICTS = ("holds", "approximate", "fails", "error")


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
    meaning: str = ""


@dataclass
class ClaimRecord:
    """The outcome of checking one claim (the JSON record of docs/contract.md §4)."""

    id: str
    source: str
    statement: str
    verdict: str
    residual: float
    tolerance: float
    details: dict[str, Any]
    wall_time_s: float = 0.0
    group: str = "builtin"
    meaning: str = ""

    @property
    def errored(self) -> bool:
        """True when the claim's test raised instead of measuring."""
        return "error" in self.details

    def to_json(self) -> dict[str, Any]:
        """The record ``{"id", "source", "statement", "verdict", "residual", "tolerance", "details"}``
        (docs/contract.md); ``details`` also carries the wall time, the claim's group
        and what the verdict means."""
        extra = {"wall_time_s": self.wall_time_s, "group": self.group}
        if self.meaning:
            extra["meaning"] = self.meaning
        return {"id": self.id, "source": self.source, "statement": self.statement, "verdict": self.verdict,
                "residual": self.residual, "tolerance": self.tolerance, "details": {**self.details, **extra}}


REGISTRY: dict[str, Claim] = {}
_GROUP: list[str] = ["builtin"]  # the group of claims registered without an explicit one (a stack)

#: Earlier spellings of built-in claim ids that ``flowsim check --claim`` still accepts. Built-in ids are
#: upper case (``RC20-C1``, ``Z22-EQ7``); lower-case spellings such as ``rc20-c1`` resolve case-insensitively
#: and need no entry here.
CLAIM_ALIASES: dict[str, str] = {"SPEC-3.2-EXACT": "Z22-EQ7-EXACT"}


def resolve_claim_id(registry: dict[str, Claim], cid: str) -> str | None:
    """The registered id that ``cid`` names, or None: an exact match first, then an alias of
    :data:`CLAIM_ALIASES`, then the one registered id equal to ``cid`` up to case (ambiguous → None)."""
    if cid in registry:
        return cid
    for name in (CLAIM_ALIASES.get(cid), CLAIM_ALIASES.get(cid.upper())):
        if name is not None and name in registry:
            return name
    folded = [rid for rid in registry if rid.casefold() == cid.casefold()]
    return folded[0] if len(folded) == 1 else None


def register(c: Claim) -> Claim:
    """Add a claim to the registry (ids are unique)."""
    if c.id in REGISTRY and REGISTRY[c.id].test is not c.test:
        raise ValueError(f"claim id {c.id!r} is already registered")
    REGISTRY[c.id] = c
    return c


@contextlib.contextmanager
def registering_as(group: str) -> Iterator[None]:
    """Claims registered inside this block without an explicit group get ``group``."""
    _GROUP.append(group)
    try:
        yield
    finally:
        _GROUP.pop()


def claim(id: str, source: str, statement: str, tolerance: float, *, approx_tolerance: float = 0.1,
          group: str | None = None, meaning: str = ""
          ) -> Callable[[Callable[[CheckConfig], Evidence]], Callable[[CheckConfig], Evidence]]:
    """Decorator registering ``test(config) -> Evidence`` as a claim.

    ``meaning`` is one line on what the verdict means for a user (shown in ``docs/claims.md``). ``group``
    defaults to ``builtin``, or ``user:MODULE`` while a ``--module`` is being loaded.
    """
    if not (isinstance(id, str) and id and id.strip() == id and id.isprintable() and "|" not in id):
        raise ValueError(f"a claim id must be a non-empty printable string without surrounding spaces, "
                         f"line breaks or '|', got {id!r}")
    for name, tol in (("tolerance", tolerance), ("approx_tolerance", approx_tolerance)):
        finite_enough = math.isfinite(tol) or name != "tolerance" if isinstance(tol, (int, float)) else False
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (tol >= 0 and finite_enough):
            raise ValueError(f"claim {id}: the {name} must be a number ≥ 0, got {tol!r}")

    def deco(fn: Callable[[CheckConfig], Evidence]) -> Callable[[CheckConfig], Evidence]:
        register(Claim(id, source, statement, float(tolerance), fn, float(approx_tolerance),
                       group if group is not None else _GROUP[-1], meaning))
        return fn

    return deco


# ---- shared instance evaluation ------------------------------------------------------------------------

def relative_error(value: Any, reference: Any) -> float:
    """‖value − reference‖ / ‖reference‖ (Frobenius/Euclidean); the absolute error when the reference is 0.

    Shapes must agree (a formula returning the wrong shape is an error, not a small residual).
    """
    a = np.asarray(value, dtype=float)
    b = np.asarray(reference, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"formula returned shape {a.shape}, the exact quantity has shape {b.shape}")
    diff = float(np.linalg.norm(a - b))
    ref = float(np.linalg.norm(b))
    return diff / ref if ref > 0 else diff


def compare_on_instances(
    formula: Callable[[Any], Any],
    exact: Callable[[Any], Any],
    insts: Iterable[Any],
    *,
    group_by: Callable[[Any], str] | None = None,
) -> Evidence:
    """Evaluate ``formula(inst)`` and ``exact(inst)`` on every instance; the residual is the largest
    relative error (:func:`relative_error`). Details: the number of instances, the worst instance (the
    counterexample, with both values), and the largest error per group (default: per depth N)."""
    group_by = group_by or (lambda inst: f"N={inst.depth}")
    worst: tuple[float, Any, Any, Any] | None = None
    per_group: dict[str, float] = {}
    count = 0
    for inst in insts:
        f, e = formula(inst), exact(inst)
        err = relative_error(f, e)
        if not math.isfinite(err):
            err = math.inf
        count += 1
        key = group_by(inst)
        per_group[key] = max(per_group.get(key, 0.0), err)
        if worst is None or err > worst[0]:
            worst = (err, inst, f, e)
    if worst is None:
        raise ValueError("no instance to evaluate the claim on")
    err, inst, f, e = worst
    details: dict[str, Any] = {"instances": count, "max_relative_error_by_group": per_group,
                               "worst_instance": inst.describe() if hasattr(inst, "describe") else str(inst)}
    if np.size(f) <= 16:
        details["worst_formula_value"] = np.asarray(f, dtype=float).round(12).tolist()
        details["worst_exact_value"] = np.asarray(e, dtype=float).round(12).tolist()
    return Evidence(err, details)


_INPUTS = {
    "instance": lambda inst: inst,
    "W": lambda inst: inst.W,
    "factors": lambda inst: inst.factors,
}


def formula_claim(
    id: str,
    source: str,
    statement: str,
    tolerance: float,
    *,
    exact: Callable[[Any], Any],
    of: str = "instance",
    depths: Sequence[int] = (1, 2, 3, 4, 5),
    lams: Sequence[float] | None = None,
    trajectories: bool = True,
    approx_tolerance: float = 0.1,
    group: str | None = None,
    meaning: str = "",
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Decorator registering a claim "``formula`` equals ``exact``" checked on the shared instances.

    ``formula`` and ``exact`` are functions of ``of``: ``"W"`` (the end product, an m×n array),
    ``"factors"`` (the list [W_1, …, W_N]) or ``"instance"`` (a :class:`flowsim.theory.instances.Instance`,
    with ``W``, ``factors``, ``depth``, ``problem``, ``lam``, ``loss_grad``, ``G``, ``layer_grads``, ``svd``).
    They return arrays of the same shape. The claim runs on the random instances at ``depths`` and λ in
    ``lams`` (default: the checker's set) and, with ``trajectories``, on points along integrated
    trajectories; its residual is the largest relative error :func:`relative_error`.
    """
    if of not in _INPUTS:
        raise ValueError(f"of must be one of {tuple(_INPUTS)}, got {of!r}")
    pick = _INPUTS[of]
    depth_set = tuple(int(d) for d in depths)
    lam_set = None if lams is None else tuple(float(x) for x in lams)

    def deco(formula: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def test(config: CheckConfig) -> Evidence:
            from .instances import instances

            insts = instances(config, depth_set, lam_set, trajectories=trajectories)
            return compare_on_instances(lambda i: formula(pick(i)), lambda i: exact(pick(i)), insts)

        test.__doc__ = formula.__doc__
        claim(id, source, statement, tolerance, approx_tolerance=approx_tolerance, group=group,
              meaning=meaning)(test)
        return formula

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


def _residual(value: Any) -> float:
    """A claim's residual as a float: a real number ≥ 0 (NaN/inf allowed: they fail); anything else, a
    complex number or a negative relative error, is a bug of the claim's test (ValueError)."""
    arr = np.asarray(value) if not isinstance(value, (str, bytes)) else np.asarray(None)
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        raise ValueError(f"the residual must be a real number ≥ 0, got {value!r} ({type(value).__name__})")
    v = float(arr.reshape(()))
    if v < 0:
        raise ValueError(f"the residual must be a real number ≥ 0 (a relative error), got {v!r}")
    return v


def _plain(obj: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of a claim's details: dicts, lists and numbers are kept (NaN/inf as they are,
    the JSON writer spells them), numpy values converted, complex numbers and anything else written as
    their ``repr``; sets become sorted lists of their representations."""
    if depth > 20:
        return repr(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic) and not isinstance(obj, np.complexfloating):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, depth + 1) for v in obj]
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf" and obj.size <= 10_000:
        return _plain(obj.tolist(), depth + 1)
    if isinstance(obj, (set, frozenset)):
        return sorted(repr(v) for v in obj)
    return repr(obj)


def evaluate(c: Claim, config: CheckConfig) -> ClaimRecord:
    """Run a claim's test and compute its verdict. Whatever the test does (raises, calls ``sys.exit``,
    returns a complex or negative residual or odd values in its details) stays in this claim's record:
    verdict ``fails`` with ``details["error"]`` saying why. Only Ctrl-C/SIGTERM propagate."""
    start = time.perf_counter()
    try:
        ev = c.test(config)
        if not isinstance(ev, Evidence):
            raise TypeError(f"the test returned {type(ev).__name__}, not Evidence")
        residual = _residual(ev.residual)
        details = _plain(dict(ev.details))
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a crashing test is reported, not raised
        residual = float("nan")
        what = f"SystemExit({exc.code!r}): the test called sys.exit" if isinstance(exc, SystemExit) else (
            f"{type(exc).__name__}: {exc}")
        details = {"error": what, "traceback": traceback.format_exc(limit=5)}
    verdict = "error" if "error" in details else verdict_for(residual, c.tolerance, c.approx_tolerance)
    if verdict == "approximate":
        details.setdefault("relative_error", residual)
    if verdict == "fails" and "error" not in details:
        details.setdefault("counterexample", details.get("worst_instance", "see details"))
    return ClaimRecord(c.id, c.source, c.statement, verdict, residual, c.tolerance, details,
                       time.perf_counter() - start, c.group, c.meaning)


def load_builtin_claims() -> dict[str, Claim]:
    """Import every ``flowsim.theory.claims_*`` module (each registers its claims) and return the claims of
    the registry that no user module added (group ``user:NAME``): a user module loaded earlier in the same
    process (``flowsim check --module``) is not part of a later check that does not name it."""
    import flowsim.theory as theory_pkg

    for info in pkgutil.iter_modules(theory_pkg.__path__):
        if info.name.startswith("claims_"):
            importlib.import_module(f"flowsim.theory.{info.name}")
    return {cid: c for cid, c in REGISTRY.items() if not c.group.startswith("user:")}


_LOADED_MODULES: dict[str, list[str]] = {}


def _forget(before: set[str]) -> None:
    """Drop the claims a module registered before its import failed (a half-loaded module adds none)."""
    for cid in [cid for cid in REGISTRY if cid not in before]:
        del REGISTRY[cid]


def load_user_module(spec: str) -> list[str]:
    """Import a user module of claims (``--module PATH_OR_NAME``): a path to a ``.py`` file or a dotted
    module name importable from ``sys.path`` (the current folder included). Claims it registers get the
    group ``user:NAME``. Returns their ids. Raises ``ImportError`` with a one-line message on failure.
    A module already loaded is not imported again.
    """
    path = Path(spec)
    looks_like_path = spec.endswith(".py") or "/" in spec or path.is_file()
    key = str(path.resolve()) if looks_like_path and path.is_file() else spec
    if key in _LOADED_MODULES:
        return _LOADED_MODULES[key]
    before = set(REGISTRY)
    if looks_like_path:
        if not path.is_file():
            raise ImportError(f"--module {spec}: no such file")
        name = f"flowsim_user_claims_{len(_LOADED_MODULES)}_{path.stem}"
        mspec = importlib.util.spec_from_file_location(name, path)
        if mspec is None or mspec.loader is None:
            raise ImportError(f"--module {spec}: not a Python module")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[name] = module
        label = path.stem
    else:
        label = spec
    try:
        with registering_as(f"user:{label}"):
            if looks_like_path:
                mspec.loader.exec_module(module)  # type: ignore[union-attr]
            else:
                if "" not in sys.path and str(Path.cwd()) not in sys.path:
                    sys.path.insert(0, str(Path.cwd()))
                importlib.import_module(spec)
    except ImportError as exc:
        raise ImportError(f"--module {spec}: {type(exc).__name__}: {exc}") from None
    except SystemExit as exc:
        _forget(before)
        raise ImportError(f"--module {spec}: importing it called sys.exit({exc.code!r})") from None
    except Exception as exc:  # noqa: BLE001 - any failure while importing the user's module is reported
        _forget(before)
        raise ImportError(f"--module {spec}: importing it raised {type(exc).__name__}: {exc}") from None
    added = [cid for cid in REGISTRY if cid not in before]
    _LOADED_MODULES[key] = added
    return added
