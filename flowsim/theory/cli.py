"""``flowsim check``: run the claims registry (SPEC §6, §7) and print the verdict table.

Options: ``--quick`` (reduced instance set, < 60 s), ``--json FILE`` (the records of SPEC §7),
``--markdown FILE`` (the table of ``docs/claims.md``), ``--claim ID`` (repeatable), ``--list``,
``--module PATH_OR_NAME`` (repeatable; user claims registered with :func:`flowsim.theory.registry.claim` or
:func:`flowsim.theory.registry.formula_claim`), ``--seed S`` (the instances). Exit codes: 0 when every claim
was measured (whatever the verdicts), 2 for bad input, 3 when a claim's test raised, 130 on Ctrl-C (the
records measured so far are still written).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from flowsim.cli.common import make_parser, nonneg_int
from flowsim.cli.interrupts import check_interrupt, deferred, note_interrupt
from flowsim.cli.interrupts import exit_code as interrupt_exit_code
from flowsim.errors import EXIT_OK, EXIT_RUN_FAILED, BadInputError

from .registry import CheckConfig, Claim, ClaimRecord, evaluate, load_builtin_claims, load_user_module
from .report import markdown_from_records, records_json, table, write_json


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The ``flowsim check`` parser."""
    p = make_parser(prog, "Check published theorem statements (ACH18, Zhao22, RC20, ...) numerically: each "
                          "claim's residual against an exact route, its tolerance and verdict.")
    p.add_argument("--quick", action="store_true", help="reduced set of instances (< 60 s on 2 cores)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the claim records as JSON")
    p.add_argument("--markdown", default=None, metavar="FILE", help="write the Markdown table")
    p.add_argument("--claim", action="append", default=None, metavar="ID",
                   help="check only this claim (repeatable)")
    p.add_argument("--list", action="store_true", help="list the registered claims and exit")
    p.add_argument("--module", action="append", default=[], metavar="PATH_OR_NAME",
                   help="also load the claims of a user module (.py file or importable name; repeatable)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the random instances")
    p.add_argument("--quiet", action="store_true", help="print only the table")
    return p


def _check_output(path: str | None, flag: str) -> None:
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
    unknown = [i for i in ids if i not in registry]
    if unknown:
        raise BadInputError(f"unknown claim id(s) {', '.join(unknown)}; known ids: {', '.join(registry)}")
    wanted = set(ids)
    return [c for cid, c in registry.items() if cid in wanted]


def _write(args: argparse.Namespace, records: list[ClaimRecord]) -> None:
    if args.json:
        write_json(args.json, records)
    if args.markdown:
        from flowsim.io import atomic_write_bytes

        atomic_write_bytes(args.markdown, markdown_from_records(records_json(records)).encode())


def run(args: argparse.Namespace) -> int:
    """Run the selected claims and report (see the module docstring for exit codes)."""
    start = time.perf_counter()
    registry = load_builtin_claims()
    for spec in args.module:
        try:
            load_user_module(spec)
        except (ImportError, ValueError) as exc:
            raise BadInputError(str(exc).replace("\n", " ")) from None
    claims = select_claims(registry, args.claim)
    if args.list:
        width = max((len(c.id) for c in claims), default=5)
        for c in claims:
            print(f"{c.id.ljust(width)}  {c.source}  [{c.group}]  {c.statement}")
        return EXIT_OK
    _check_output(args.json, "--json")
    _check_output(args.markdown, "--markdown")
    config = CheckConfig(quick=args.quick, seed=args.seed)
    records: list[ClaimRecord] = []
    try:
        for c in claims:
            if not args.quiet:
                print(f"checking {c.id} ...", file=sys.stderr, flush=True)
            record = evaluate(c, config)
            check_interrupt()  # a test that swallowed the interrupt measured a cut run: not a verdict
            records.append(record)
    except KeyboardInterrupt as exc:
        note_interrupt(exc)
        with deferred():
            _write(args, records)
        print(table(records))
        print(f"flowsim check: interrupted after {len(records)} of {len(claims)} claims "
              f"({time.perf_counter() - start:.1f} s); the records so far were written", file=sys.stderr)
        return interrupt_exit_code()
    with deferred():
        _write(args, records)
    print(table(records))
    errored = [r.id for r in records if r.errored]
    if not args.quiet:
        print(f"wall time {time.perf_counter() - start:.1f} s ({'quick' if args.quick else 'full'} run, "
              f"seed {args.seed})")
    if errored:
        for r in records:
            if r.errored:
                print(f"flowsim check: claim {r.id} raised: {r.details['error']}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_OK
