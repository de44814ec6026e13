"""Sweep configuration files (docs/contract.md): TOML parsing, grid expansion and stable point ids.

A configuration names one flowsim command, fixed options and one or more grids of swept options::

    command = "simulate"            # simulate | train | razin | validate
    description = "free text"       # optional
    report = "table1"               # optional: render a report after the sweep (see flowsim.sweep.tables)
    batch_size = 8                  # optional: train points per batched task (1: no batching)

    [fixed]                         # options passed to every point (option names with - or _)
    size = "20"
    t-end = 1e3

    [grid]                          # the Cartesian product of these lists ...
    depth = [1, 3]
    lam = { logspace = [-4, -1, 4] }    # 10^linspace(-4, -1, 4)
    seed = { range = [0, 3] }           # 0, 1, 2  (also [start, stop, step])
    [grid.zip]                      # ... times these lists taken together (equal lengths)
    optimizer = ["adam", "gd"]
    lr = [0.01, 0.1]

    [quick]                         # overrides applied by ``flowsim sweep --quick``
    fixed = { size = "10" }         # merged into [fixed]
    grid = { depth = [3] }          # merged into every grid

``grid`` may also be an array of tables (``[[grid]]``): the points are the union of the grids, without
duplicates. A grid table may carry a ``label = "..."`` (not an option; reports use it to tell, e.g., the
main table from a sensitivity sub-grid). A range is one of ``{ logspace = [a, b, n] }``,
``{ linspace = [a, b, n] }``, ``{ range = [start, stop] }`` / ``{ range = [start, stop, step] }``; a scalar
is a one-value list.

Every point gets a stable id: the first 12 hex digits of the SHA-256 of the canonical JSON of
``{"command": ..., "params": {...}}`` with the options sorted and floats rounded to 12 significant digits,
so the id depends on the parameters only (not on the order of keys or of the grid).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInputError

SWEEP_COMMANDS = ("simulate", "train", "razin", "validate")
TOP_KEYS = {"command", "description", "report", "fixed", "grid", "quick", "name", "batch_size"}
QUICK_KEYS = {"fixed", "grid", "description", "batch_size"}
RANGE_KINDS = ("logspace", "linspace", "range")
#: options the runner sets itself for every point
RESERVED = {"out", "quiet", "help"}
Scalar = bool | int | float | str


@dataclass(frozen=True)
class Point:
    """One run of a sweep: the command, its options (``params``, option name → value) and its stable id."""

    command: str
    params: dict[str, Scalar]
    id: str = field(default="")

    def argv(self) -> list[str]:
        """The command-line arguments of this point (without ``--out``/``--quiet``)."""
        return params_to_argv(self.params)


@dataclass
class SweepConfig:
    """A parsed configuration: the command, fixed options, the grids, an optional report name."""

    command: str
    fixed: dict[str, Scalar]
    grids: list[list[dict[str, list[Scalar]]]]
    labels: list[str] = field(default_factory=list)
    description: str = ""
    report: str | None = None
    batch_size: int = 8
    source: str = ""
    quick: bool = False
    text: str = ""

    def points(self) -> list[Point]:
        """Expand the grids into points (see :func:`expand_grid`)."""
        return expand_grid(self.command, self.fixed, self.grids)


# ---- values ---------------------------------------------------------------------------------------------

def option_key(name: str) -> str:
    """Normalize an option name: ``t-end``/``t_end``/``--t-end`` → ``t_end`` (argparse's dest)."""
    return name.strip().lstrip("-").replace("-", "_")


def normalize_value(v: Any, where: str) -> Scalar:
    """A scalar option value; floats are rounded to 12 significant digits (stable ids and argv)."""
    if isinstance(v, bool) or isinstance(v, str):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise BadInputError(f"{where}: non-finite number {v!r}")
        return float(f"{v:.12g}")
    raise BadInputError(f"{where}: values must be numbers, strings or booleans, got {type(v).__name__}")


def expand_values(spec: Any, where: str) -> list[Scalar]:
    """A swept option's values: a list, a range table (logspace/linspace/range) or a scalar."""
    if isinstance(spec, Mapping):
        if len(spec) != 1 or next(iter(spec)) not in RANGE_KINDS:
            raise BadInputError(f"{where}: a range must be one of {{logspace|linspace|range = [...]}}, "
                                f"got keys {sorted(spec)}")
        kind, args = next(iter(spec.items()))
        if not isinstance(args, list) or not all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                                 for a in args):
            raise BadInputError(f"{where}: {kind} needs a list of numbers")
        if kind in ("logspace", "linspace"):
            if (len(args) != 3 or not all(math.isfinite(a) for a in args) or int(args[2]) != args[2]
                    or args[2] < 1):
                raise BadInputError(f"{where}: {kind} = [start, stop, count] with finite numbers and an "
                                    f"integer count ≥ 1")
            _check_axis_length(int(args[2]), where)
            a, b, n = float(args[0]), float(args[1]), int(args[2])
            xs = [a + (b - a) * i / (n - 1) for i in range(n)] if n > 1 else [a]
            vals: list[Any] = [10.0**x for x in xs] if kind == "logspace" else xs
        else:
            if len(args) not in (2, 3) or not all(math.isfinite(a) and int(a) == a for a in args):
                raise BadInputError(f"{where}: range = [start, stop] or [start, stop, step] with integers")
            ints = [int(a) for a in args]
            if len(ints) == 3 and ints[2] == 0:
                raise BadInputError(f"{where}: range step must not be 0")
            step = ints[2] if len(ints) == 3 else 1
            count = max(0, -((ints[0] - ints[1]) // step))  # len(range(...)) without building it
            _check_axis_length(count, where)
            vals = list(range(*ints))
    elif isinstance(spec, list):
        vals = spec
    else:
        vals = [spec]
    out = [normalize_value(v, where) for v in vals]
    if not out:
        raise BadInputError(f"{where}: empty list of values")
    return out


#: values one swept option may take (always), and points one sweep may have unless ``--allow-large``
MAX_AXIS_VALUES = 1_000_000
MAX_POINTS = 10_000
#: bytes of bookkeeping a point costs on disk before it runs (its folder, point.json, its entry in sweep.json;
#: measured with du on a 200-point simulate grid: 8.4 kB per point)
ESTIMATED_POINT_FILES_BYTES = 8_500


def _check_axis_length(count: int, where: str) -> None:
    if count > MAX_AXIS_VALUES:
        raise BadInputError(f"{where}: {count:.3g} values on one axis (at most {MAX_AXIS_VALUES}); "
                            f"a sweep that large is not meant")


def grid_size(grids: list[list[dict[str, list[Scalar]]]]) -> int:
    """Points of the union of the grids before duplicates are dropped (the product of each grid's axes)."""
    return sum(math.prod(len(next(iter(a.values()))) for a in axes) for axes in grids)


def params_to_argv(params: Mapping[str, Scalar]) -> list[str]:
    """``{"t_end": 100.0, "save_matrices": True}`` → ``["--t-end", "100", "--save-matrices"]``.

    ``True`` becomes a bare flag and ``False`` is left out (store_true options); floats use ``repr``.
    """
    argv: list[str] = []
    for key in sorted(params):
        v = params[key]
        flag = "--" + key.replace("_", "-")
        if isinstance(v, bool):
            if v:
                argv.append(flag)
            continue
        argv += [flag, repr(v) if isinstance(v, float) else str(v)]
    return argv


def point_id(command: str, params: Mapping[str, Scalar]) -> str:
    """Stable id of a point: 12 hex digits of SHA-256 of the canonical JSON of command and sorted params."""
    canon = json.dumps({"command": command, "params": {k: params[k] for k in sorted(params)}},
                       sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


# ---- grids ----------------------------------------------------------------------------------------------

def _parse_grid(table: Any, where: str) -> list[dict[str, list[Scalar]]]:
    """One grid table → a list of axes; an axis maps option keys to equally long value lists."""
    if not isinstance(table, Mapping):
        raise BadInputError(f"{where} must be a table")
    axes: list[dict[str, list[Scalar]]] = []
    for key, spec in table.items():
        if key == "label":
            continue
        if key == "zip":
            if not isinstance(spec, Mapping) or not spec:
                raise BadInputError(f"{where}.zip must be a non-empty table of equally long lists")
            zipped = {option_key(k): expand_values(v, f"{where}.zip.{k}") for k, v in spec.items()}
            lengths = {len(v) for v in zipped.values()}
            if len(lengths) != 1:
                raise BadInputError(f"{where}.zip: lists must have equal lengths, got "
                                    + ", ".join(f"{k}={len(v)}" for k, v in zipped.items()))
            axes.append(zipped)
        else:
            axes.append({option_key(key): expand_values(spec, f"{where}.{key}")})
    keys = [k for axis in axes for k in axis]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise BadInputError(f"{where}: option(s) {sorted(dup)} given more than once")
    return axes


def expand_grid(command: str, fixed: Mapping[str, Scalar],
                grids: list[list[dict[str, list[Scalar]]]]) -> list[Point]:
    """Every point of the union of the grids (each the product of its axes), fixed options added,
    duplicates (same id) dropped, in first-seen order."""
    points: dict[str, Point] = {}
    for axes in grids:
        for combo in itertools.product(*[range(len(next(iter(a.values())))) for a in axes]):
            params: dict[str, Scalar] = dict(fixed)
            for axis, i in zip(axes, combo):
                for k, vals in axis.items():
                    params[k] = vals[i]
            pid = point_id(command, params)
            points.setdefault(pid, Point(command, params, pid))
    return list(points.values())


def _merge_quick(raw: dict, quick: Any, where: str) -> dict:
    if not isinstance(quick, Mapping):
        raise BadInputError(f"{where}: [quick] must be a table")
    unknown = set(quick) - QUICK_KEYS
    if unknown:
        raise BadInputError(f"{where}: unknown key(s) {sorted(unknown)} in [quick]; "
                            f"allowed: {sorted(QUICK_KEYS)}")
    for key in ("fixed", "grid"):
        if key in quick and not isinstance(quick[key], Mapping):
            raise BadInputError(f"{where}: [quick] {key} must be a table of options, got "
                                f"{type(quick[key]).__name__} {quick[key]!r}")
    if not isinstance(raw.get("fixed", {}), Mapping):
        raise BadInputError(f"{where}: [fixed] must be a table")
    out = dict(raw)
    out["fixed"] = {**raw.get("fixed", {}), **quick.get("fixed", {})}
    if "grid" in quick:
        grids = raw.get("grid", {})
        grids = grids if isinstance(grids, list) else [grids]
        if not all(isinstance(g, Mapping) for g in grids):
            raise BadInputError(f"{where}: [grid] must be a table or an array of tables")
        out["grid"] = [{**g, **quick["grid"]} for g in grids]
    for key in ("description", "batch_size"):
        if key in quick:
            out[key] = quick[key]
    return out


# ---- options of the command -----------------------------------------------------------------------------

def command_options(command: str) -> dict[str, Any]:
    """The options of ``flowsim COMMAND`` (name → :class:`flowsim.runs.options.Option`), from its run spec."""
    from ..runs import spec_class

    try:
        return spec_class(command).options()
    except ModuleNotFoundError as exc:
        raise BadInputError(
            f"command {command!r} is not available in this installation ({exc.name})") from None


def check_points(command: str, points: list[Point]) -> None:
    """Every option of every point must be an option of the command and parse (bad input otherwise): the
    point's spec is built as the runner builds it (:meth:`flowsim.runs.options.RunSpec.from_options`)."""
    from ..runs import spec_class

    options = command_options(command)
    spec = spec_class(command)
    seen: set[str] = set()
    for p in points:
        for key, v in p.params.items():
            if key in seen:
                continue
            seen.add(key)
            if key in RESERVED:
                raise BadInputError(f"option {key!r} is set by the sweep runner and cannot be given")
            if key not in options:
                raise BadInputError(f"unknown option {key!r} for flowsim {command}")
            if isinstance(v, bool) and not options[key].flag:
                raise BadInputError(f"option {key!r} takes a value, got a boolean")
            if not isinstance(v, bool) and options[key].flag:
                raise BadInputError(f"option {key!r} is a flag: use true/false")
    for p in points:
        try:
            for key in sorted(p.params):  # in the order of the point's command line
                spec.parse_value(key, p.params[key])
        except BadInputError as exc:
            raise BadInputError(f"point {p.id} ({' '.join(p.argv())}): {exc}") from None


# ---- loading --------------------------------------------------------------------------------------------

def parse_config(text: str, source: str = "<config>", quick: bool = False, check: bool = True,
                 allow_large: bool = False) -> SweepConfig:
    """Parse and validate a sweep configuration (TOML text). Raises :class:`BadInputError` with one line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"{source}: invalid TOML: {exc}") from None
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise BadInputError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    command = raw.get("command")
    if command not in SWEEP_COMMANDS:
        raise BadInputError(f"{source}: 'command' must be one of {'|'.join(SWEEP_COMMANDS)}, got {command!r}")
    if quick:
        if "quick" not in raw:
            raise BadInputError(f"{source}: --quick needs a [quick] table in the configuration")
        raw = _merge_quick(raw, raw["quick"], source)
    fixed_raw = raw.get("fixed", {})
    if not isinstance(fixed_raw, Mapping):
        raise BadInputError(f"{source}: [fixed] must be a table")
    fixed = {option_key(k): normalize_value(v, f"{source}: fixed.{k}") for k, v in fixed_raw.items()}
    grid_raw = raw.get("grid")
    if grid_raw is None:
        raise BadInputError(f"{source}: no [grid] table (an empty sweep)")
    tables = grid_raw if isinstance(grid_raw, list) else [grid_raw]
    if not tables:
        raise BadInputError(f"{source}: the grid is empty")
    grids, labels = [], []
    for i, table in enumerate(tables):
        where = f"{source}: grid" + (f"[{i}]" if isinstance(grid_raw, list) else "")
        axes = _parse_grid(table, where)
        if not axes:
            raise BadInputError(f"{where} is empty (no swept option)")
        clash = set(fixed) & {k for a in axes for k in a}
        if clash:
            raise BadInputError(f"{where}: option(s) {sorted(clash)} are both fixed and swept")
        grids.append(axes)
        label = table.get("label", "")
        if not isinstance(label, str):
            raise BadInputError(f"{where}.label must be a string")
        labels.append(label)
    report = raw.get("report")
    if report is not None and not isinstance(report, str):
        raise BadInputError(f"{source}: 'report' must be a string")
    batch_size = raw.get("batch_size", 8)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BadInputError(f"{source}: 'batch_size' must be an integer ≥ 1, got {batch_size!r}")
    n_points = grid_size(grids)
    if n_points > MAX_POINTS and not allow_large:
        est = n_points * ESTIMATED_POINT_FILES_BYTES
        raise BadInputError(f"{source}: the grid has {n_points:,} points (limit {MAX_POINTS:,}; about "
                            f"{est / 1e9:.2g} GB of point files before the first run, and a run each); pass "
                            f"--allow-large to run it anyway")
    cfg = SweepConfig(command=command, fixed=fixed, grids=grids, labels=labels,
                      description=str(raw.get("description", "")), report=report, batch_size=batch_size,
                      source=source, quick=quick, text=text)
    if check:
        points = cfg.points()
        check_points(command, points)
        if report is not None:
            from .tables import REPORTS

            if report not in REPORTS:
                raise BadInputError(f"{source}: unknown report {report!r}; choose from {sorted(REPORTS)}")
    return cfg


def load_config(path: str | Path, quick: bool = False, check: bool = True,
                allow_large: bool = False) -> SweepConfig:
    """Read and parse a configuration file (see :func:`parse_config`)."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"configuration file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read {p}: {exc}") from None
    return parse_config(text, str(p), quick=quick, check=check, allow_large=allow_large)
