"""``check`` as a typed run: :class:`CheckSpec` and :func:`run_check` evaluate the claims registry
(:mod:`flowsim.theory.registry`) and print the verdict table.

Exit codes: 0 when every claim was measured (whatever the verdicts), 2 for bad input, 3 when a claim's test
raised, 130 on Ctrl-C (the records measured so far are still written).
"""

from __future__ import annotations

import builtins
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..errors import EXIT_OK, EXIT_RUN_FAILED, BadInputError
from ..theory.registry import (
    REGISTRY,
    CheckConfig,
    Claim,
    ClaimRecord,
    evaluate,
    load_builtin_claims,
    load_user_module,
    resolve_claim_id,
)
from ..theory.report import markdown_from_records, records_json, table, write_json
from .common import RunResult
from .interrupts import check_interrupt, deferred, note_interrupt
from .interrupts import exit_code as interrupt_exit_code
from .options import RunSpec, nonneg_int, option, provenance_field


@dataclass(frozen=True)
class CheckSpec(RunSpec):
    """The options of ``flowsim check`` (names and defaults of ``flowsim check --help``)."""

    command: ClassVar[str] = "check"

    quick: bool = option(False, flag=True)
    json: str | None = option(None)
    markdown: str | None = option(None)
    claim: builtins.list[str] | None = option(None, many=True)
    list: bool = option(False, flag=True)
    module: builtins.list[str] = option([], many=True)
    seed: int = option(0, nonneg_int)
    quiet: bool = option(False, flag=True)
    provenance: str | None = provenance_field()


def _check_output(path: str | None, flag: str) -> None:
    """``--json``/``--markdown`` must name a file in an existing, writable folder."""
    if path is None:
        return
    p = Path(path)
    if len(p.name.encode()) > 255 - 16:  # the atomic writer's temporary name adds up to 16 bytes
        raise BadInputError(f"{flag}: file name too long ({len(p.name.encode())} bytes; at most 239)")
    if p.is_dir():
        raise BadInputError(f"{flag} {p} is a directory, expected a file name")
    parent = p.absolute().parent
    if not parent.is_dir():
        raise BadInputError(f"{flag} {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{flag} {p}: folder {parent} is not writable")


def select_claims(registry: dict[str, Claim], ids: list[str] | None) -> list[Claim]:
    """The claims named by ``--claim`` (in registry order), or all; unknown ids are bad input."""
    if not ids:
        return list(registry.values())
    resolved = {i: resolve_claim_id(registry, i) for i in ids}
    unknown = [i for i, cid in resolved.items() if cid is None]
    if unknown:
        raise BadInputError(f"unknown claim id(s) {', '.join(unknown)}; known ids: {', '.join(registry)}")
    wanted = set(resolved.values())
    return [c for cid, c in registry.items() if cid in wanted]


def _write(spec: CheckSpec, records: list[ClaimRecord]) -> None:
    if spec.json:
        write_json(spec.json, records)
    if spec.markdown:
        from ..io import atomic_write_bytes

        atomic_write_bytes(spec.markdown, markdown_from_records(records_json(records)).encode())


def run_check(spec: CheckSpec) -> RunResult:
    """Run the selected claims, write ``--json``/``--markdown`` and print the table (with ``list``: print
    the registered claims only). ``final`` holds the number of records and the ids of the claims that
    raised; an interrupt is the status ``interrupted`` with the records so far written."""
    start = time.perf_counter()

    def result(status: str, message: str, code: int, records: list[ClaimRecord]) -> RunResult:
        errored = [r.id for r in records if r.errored]
        return RunResult(status, message, code, None, {"records": len(records), "errored": errored},
                         time.perf_counter() - start)

    registry = load_builtin_claims()
    for name in spec.module:
        try:
            added = load_user_module(name)
        except (ImportError, ValueError) as exc:
            raise BadInputError(str(exc).replace("\n", " ")) from None
        registry.update({cid: REGISTRY[cid] for cid in added if cid in REGISTRY})
    claims = select_claims(registry, spec.claim)
    if spec.list:
        width = max((len(c.id) for c in claims), default=5)
        for c in claims:
            print(f"{c.id.ljust(width)}  {c.source}  [{c.group}]  {c.statement}")
        return result("ok", f"{len(claims)} claims listed", EXIT_OK, [])
    _check_output(spec.json, "--json")
    _check_output(spec.markdown, "--markdown")
    config = CheckConfig(quick=spec.quick, seed=spec.seed)
    records: list[ClaimRecord] = []
    try:
        for c in claims:
            if not spec.quiet:
                print(f"checking {c.id} ...", file=sys.stderr, flush=True)
            record = evaluate(c, config)
            check_interrupt()  # a test that swallowed the interrupt measured a cut run: not a verdict
            records.append(record)
    except KeyboardInterrupt as exc:
        note_interrupt(exc)
        with deferred():
            _write(spec, records)
        print(table(records))
        print(f"flowsim check: interrupted after {len(records)} of {len(claims)} claims "
              f"({time.perf_counter() - start:.1f} s); the records so far were written", file=sys.stderr)
        return result("interrupted", f"interrupted after {len(records)} of {len(claims)} claims",
                      interrupt_exit_code(), records)
    with deferred():
        _write(spec, records)
    print(table(records))
    errored = [r.id for r in records if r.errored]
    if not spec.quiet:
        print(f"wall time {time.perf_counter() - start:.1f} s ({'quick' if spec.quick else 'full'} run, "
              f"seed {spec.seed})")
    if errored:
        for r in records:
            if r.errored:
                print(f"flowsim check: claim {r.id} raised: {r.details['error']}", file=sys.stderr)
        return result("failed", f"claims that raised: {errored}", EXIT_RUN_FAILED, records)
    return result("ok", f"{len(records)} claims measured", EXIT_OK, records)
