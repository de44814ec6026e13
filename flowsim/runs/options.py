"""Option values of the run specs: one converter per kind of value and the base class of every spec.

A converter turns the text of an option (as typed on the command line, or the text of a sweep value) into
its value, or raises :class:`flowsim.errors.BadInputError` with the one-line reason (``must be a positive
integer, got '0'``). The command line wraps the same converters as argparse ``type=`` functions
(:mod:`flowsim.cli.common`), so an option has one check and one message whether it comes from the command
line, a sweep or a direct call of :meth:`RunSpec.from_options`.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ..errors import BadInputError

Converter = Callable[[str], Any]


# ---- converters: text -> value, BadInputError with the one-line reason ---------------------------------

def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    try:
        v = int(text)
    except ValueError:
        raise BadInputError(f"must be a positive integer, got {text!r}") from None
    if v < 1:
        raise BadInputError(f"must be a positive integer, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    """An integer ≥ 0."""
    try:
        v = int(text)
    except ValueError:
        raise BadInputError(f"must be an integer ≥ 0, got {text!r}") from None
    if v < 0:
        raise BadInputError(f"must be an integer ≥ 0, got {text!r}")
    return v


def _finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise BadInputError(f"must be a number, got {text!r}") from None
    if not math.isfinite(v):
        raise BadInputError(f"must be a finite number, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0."""
    v = _finite(text)
    if v <= 0:
        raise BadInputError(f"must be a finite number > 0, got {text!r}")
    return v


def nonneg_float(text: str) -> float:
    """A finite number ≥ 0."""
    v = _finite(text)
    if v < 0:
        raise BadInputError(f"must be a finite number ≥ 0, got {text!r}")
    return v


def finite_float(text: str) -> float:
    """Any finite number."""
    return _finite(text)


def unit_interval_float(text: str) -> float:
    """A number in [0, 1) (Adam's β₁, β₂)."""
    v = _finite(text)
    if not 0 <= v < 1:
        raise BadInputError(f"must be a number in [0, 1), got {text!r}")
    return v


def size_arg(text: str) -> tuple[int, int]:
    """``M`` (square) or ``MxN``."""
    parts = text.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise BadInputError(f"must be M or MxN with positive integers, got {text!r}") from None
    if len(dims) not in (1, 2) or any(d < 1 for d in dims):
        raise BadInputError(f"must be M or MxN with positive integers, got {text!r}")
    return (dims[0], dims[0]) if len(dims) == 1 else (dims[0], dims[1])


def observed_arg(text: str) -> int | None:
    """A positive count of observed entries, or ``all`` (None)."""
    if text.lower() == "all":
        return None
    try:
        v = int(text)
    except ValueError:
        raise BadInputError(f"must be a positive integer or 'all', got {text!r}") from None
    if v < 1:
        raise BadInputError(f"must be a positive integer or 'all', got {text!r}")
    return v


def penalty_arg(text: str) -> str:
    """A penalty spelling validated by :func:`flowsim.penalties.make_penalty` (its canonical spelling)."""
    from ..penalties import make_penalty

    try:
        return make_penalty(text).spec()
    except BadInputError as exc:
        raise BadInputError(str(exc).replace("--penalty ", "")) from None


def lrs_arg(text: str) -> list[float]:
    """A comma-separated list of at least two finite step sizes > 0."""
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadInputError(f"must be comma-separated numbers, got {text!r}") from None
    if len(vals) < 2 or any(not (math.isfinite(v) and v > 0) for v in vals):
        raise BadInputError(f"needs at least two finite step sizes > 0, got {text!r}")
    return vals


def plain_float(text: str) -> float:
    """Python's ``float`` with argparse's message (``invalid float value: 'x'``)."""
    try:
        return float(text)
    except ValueError:
        raise BadInputError(f"invalid float value: {text!r}") from None


def plain_int(text: str) -> int:
    """Python's ``int`` with argparse's message (``invalid int value: 'x'``)."""
    try:
        return int(text)
    except ValueError:
        raise BadInputError(f"invalid int value: {text!r}") from None


# ---- value -> text (the inverse of the converters, for ``to_argv``) --------------------------------------

def value_text(value: Any) -> str:
    """The command-line text of a parsed value: floats by ``repr``, ``(m, n)`` sizes as ``MxN``, lists of
    step sizes comma-separated; parsing the text gives the value back."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, list):
        return ",".join(value_text(v) for v in value)
    return str(value)


# ---- the option table of a spec ----------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One option of a command: its converter (None: the text itself), allowed choices, and whether it is
    a flag (``store_true``: given or not, no value). ``none_text`` is the text of the value None where the
    option has one (``--observed all``)."""

    convert: Converter | None = None
    choices: tuple[str, ...] | None = None
    flag: bool = False
    none_text: str | None = None
    many: bool = False


def option(default: Any, convert: Converter | None = None, *, choices: tuple[str, ...] | None = None,
           flag: bool = False, none_text: str | None = None, many: bool = False) -> Any:
    """A spec field with its :class:`Option` (a dataclass field whose metadata holds the option); ``many``:
    a repeatable option whose value is the list of the given values."""
    opt = Option(convert, tuple(choices) if choices is not None else None, flag, none_text, many)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"option": opt})
    return dataclasses.field(default=default, metadata={"option": opt})


def flag_name(dest: str) -> str:
    """``t_end`` → ``--t-end``."""
    return "--" + dest.replace("_", "-")


def option_key(name: str) -> str:
    """Normalize an option name: ``t-end``/``t_end``/``--t-end`` → ``t_end``."""
    return name.strip().lstrip("-").replace("-", "_")


S = TypeVar("S", bound="RunSpec")


@dataclass(frozen=True)
class RunSpec:
    """Base class of the run specs: one frozen dataclass per command whose fields are the command's options
    (the argparse ``dest`` names, in the order of ``flowsim COMMAND --help``).

    ``provenance`` is the command line recorded in ``run.json`` (``argv``) when it differs from
    :meth:`to_argv` (a command typed by the user keeps its own spelling); it is not an option and not part
    of the spec's equality.
    """

    command: ClassVar[str] = ""

    @classmethod
    def options(cls) -> dict[str, Option]:
        """Field name → :class:`Option`, in field order."""
        return {f.name: f.metadata["option"] for f in dataclasses.fields(cls) if "option" in f.metadata}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Field name → default value."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if "option" not in f.metadata:
                continue
            factory = f.default_factory
            out[f.name] = f.default if factory is dataclasses.MISSING else factory()
        return out

    @classmethod
    def parse_value(cls, name: str, value: Any) -> Any:
        """The value of option ``name`` from a text or a plain value (int, float, bool, None): a non-text
        value is written as its command-line text first, so that a sweep value and the same value typed
        on the command line give the same result and the same one-line message
        (``argument --rank: must be a positive integer, got '0'``)."""
        opts = cls.options()
        key = option_key(name)
        if key not in opts:
            raise BadInputError(f"unknown option {key!r} for flowsim {cls.command}")
        opt = opts[key]
        if opt.flag:
            if not isinstance(value, bool):
                raise BadInputError(f"option {key!r} is a flag: use true/false")
            return True if value else cls.defaults()[key]  # a flag that is not given keeps its default
        if isinstance(value, bool):
            raise BadInputError(f"option {key!r} takes a value, got a boolean")
        if value is None:
            return None
        if opt.many:
            items = [value] if isinstance(value, str) else list(value)
            return [cls._convert(key, opt, v) for v in items]
        return cls._convert(key, opt, value)

    @classmethod
    def _convert(cls, key: str, opt: Option, value: Any) -> Any:
        flag = flag_name(key)
        text = value if isinstance(value, str) else value_text(value)
        if opt.convert is not None:
            try:
                value = opt.convert(text)
            except BadInputError as exc:
                raise BadInputError(f"argument {flag}: {exc}") from None
        else:
            value = text
        if opt.choices is not None and value not in opt.choices:
            choices = ", ".join(map(repr, opt.choices))
            raise BadInputError(f"argument {flag}: invalid choice: {value!r} (choose from {choices})")
        return value

    @classmethod
    def from_options(cls: type[S], options: Mapping[str, Any] | None = None, **more: Any) -> S:
        """A spec from option names (``t-end``, ``t_end`` or ``--t-end``) and values (texts or plain values,
        checked as on the command line); unset options keep their defaults. ``provenance`` may be given."""
        provenance = more.pop("provenance", None)
        values = {}
        for name, value in {**(options or {}), **more}.items():
            values[option_key(name)] = cls.parse_value(name, value)
        return cls(**values, provenance=provenance)  # type: ignore[call-arg]

    @classmethod
    def from_namespace(cls: type[S], args: Any, provenance: str | None = None) -> S:
        """A spec from parsed command-line arguments (an ``argparse.Namespace`` with the same names)."""
        return cls(**{name: getattr(args, name) for name in cls.options()}, provenance=provenance)  # type: ignore[call-arg]

    def replace(self: S, **changes: Any) -> S:
        """A copy with some fields changed (``provenance`` is dropped unless given)."""
        return dataclasses.replace(self, **{"provenance": None, **changes})

    def to_argv(self) -> list[str]:
        """The command-line arguments (after ``flowsim COMMAND``) that give this spec: every option whose
        value differs from its default, in field order."""
        argv: list[str] = []
        defaults = self.defaults()
        for name, opt in self.options().items():
            value = getattr(self, name)
            if value == defaults[name] and type(value) is type(defaults[name]):
                continue
            if opt.flag:
                argv += [flag_name(name)] if value else []
            elif opt.many:
                for v in value or []:
                    argv += [flag_name(name), value_text(v)]
            elif value is None:
                if opt.none_text is None:
                    raise ValueError(f"{flag_name(name)}: None has no command-line text")
                argv += [flag_name(name), opt.none_text]
            else:
                argv += [flag_name(name), value_text(value)]
        return argv

    def command_line(self) -> str:
        """The command line recorded in ``run.json``: ``provenance``, else ``flowsim COMMAND`` and
        :meth:`to_argv`."""
        if self.provenance is not None:  # type: ignore[attr-defined]
            return self.provenance  # type: ignore[attr-defined]
        return shlex.join(["flowsim", self.command, *self.to_argv()])

    def params(self) -> dict[str, Any]:
        """Every option, JSON-ready (tuples as lists): the ``params`` of ``run.json``."""
        out = {}
        for name in self.options():
            v = getattr(self, name)
            out[name] = list(v) if isinstance(v, tuple) else (list(v) if isinstance(v, list) else v)
        return out


def provenance_field() -> Any:
    """The ``provenance`` field every spec ends with (not compared, not an option)."""
    return dataclasses.field(default=None, compare=False, repr=False)
