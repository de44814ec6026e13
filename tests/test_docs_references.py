"""References a reader can follow: no file of the repository cites the specification document that is not in
it (its sections are covered by ``docs/math.md`` and ``docs/contract.md``) or an issue number, every
``flowsim.…`` name that ``docs/math.md`` and ``docs/contract.md`` print in backticks resolves, every
``docs/math.md §N`` cited in the code is a section of ``docs/math.md``, and every paper short name cited in
the code or the documents is expanded in ``docs/references.md``."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: History files may name issues; none exists yet, the names are reserved.
HISTORY = {"CHANGELOG.md", "HISTORY.md", "NEWS.md"}
SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "runs", "node_modules", "__pycache__"}

# Built from pieces so that this file does not match its own patterns.
SPEC_REF = re.compile("SPEC" + r"\s*§")
ISSUE_REF = re.compile(
    r"\b" + "issue" + r"s?[ -]?#?\d+"         # the word, then a number (after a space, a dash or a hash)
    + r"|(?<![\w&/#])" + "#" + r"\d{1,4}\b"   # a hash and a number (not an HTML entity, not a hex colour)
    + r"|\b(?:PR|GH)[ -]?#?\d+\b",            # a pull request
    re.IGNORECASE,
)
DOTTED = re.compile(r"`(flowsim(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
MATH_SECTION_CITED = re.compile(r"docs/math\.md (§\d+(?:\.\d+)?(?:(?:, |–| ≡ )§\d+(?:\.\d+)?)*)")


def repository_files(*suffixes: str) -> list[Path]:
    """The repository's files with these suffixes: tracked or new (``git ls-files``; ignored files such as run
    outputs excluded), or, outside a git checkout, every file below the root except build and run folders."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.splitlines()
        paths = [ROOT / p for p in out]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*") if not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in paths if p.suffix in suffixes and p.is_file() and p.name not in HISTORY)


def resolve(dotted: str) -> object:
    """Import the longest importable module prefix of ``dotted`` and follow the rest as attributes."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError:
            continue
        for name in parts[k:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def math_sections() -> set[str]:
    """The section numbers of ``docs/math.md`` ("4", "8.2", …) from its headings."""
    heads = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", (DOCS / "math.md").read_text(encoding="utf-8"), re.M)
    return set(heads)


@pytest.mark.parametrize("text", [
    "see " + "SPEC" + " §3.4(b)", "(" + "issue" + " 12)", "Issue" + "-2 kernel", "issues" + " " + "#" + "7",
    "fixed in " + "#" + "12", "PR" + " 31",
])
def test_the_patterns_catch_what_they_must(text: str) -> None:
    assert SPEC_REF.search(text) or ISSUE_REF.search(text)


@pytest.mark.parametrize("text", ["color #1f77b4", "&#12;", "tissue 3", "docs/math.md §8.2", "W21 = W2 @ W1"])
def test_the_patterns_leave_the_rest(text: str) -> None:
    assert not SPEC_REF.search(text) and not ISSUE_REF.search(text)


def test_no_reference_to_the_specification_or_to_issue_numbers() -> None:
    files = repository_files(".py", ".md")
    assert len(files) > 50, "the file list looks wrong"
    offenders = []
    for path in files:
        for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for pattern in (SPEC_REF, ISSUE_REF):
                m = pattern.search(line)
                if m:
                    where = f"{path.relative_to(ROOT)}:{no}"
                    offenders.append(f"{where}: {m.group(0)!r} in {line.strip()[:80]!r}")
    assert not offenders, "cite docs/math.md, docs/contract.md or a paper instead:\n" + "\n".join(offenders)


@pytest.mark.parametrize("doc", ["math.md", "contract.md"])
def test_every_flowsim_name_in_the_docs_resolves(doc: str) -> None:
    names = sorted(set(DOTTED.findall((DOCS / doc).read_text(encoding="utf-8"))))
    if doc == "math.md":
        assert len(names) > 40, names
    broken = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{name}: {type(exc).__name__}: {exc}")
    assert not broken, f"docs/{doc} names code that does not exist:\n" + "\n".join(broken)


def test_cited_math_sections_exist() -> None:
    sections = math_sections()
    assert {"1", "4", "8.2", "13"} <= sections, sections
    missing = []
    for path in repository_files(".py", ".md"):
        for m in MATH_SECTION_CITED.finditer(path.read_text(encoding="utf-8", errors="replace")):
            for sec in re.findall(r"§(\d+(?:\.\d+)?)", m.group(1)):
                if sec not in sections:
                    missing.append(f"{path.relative_to(ROOT)}: docs/math.md §{sec}")
    assert not missing, "\n".join(missing)


def test_every_paper_short_name_is_expanded() -> None:
    """Every short name of a source (capitals and letters, then a two-digit year: ACH18, Zhao22, HNW93, …)
    used anywhere has a row in docs/references.md."""
    refs = (DOCS / "references.md").read_text(encoding="utf-8")
    expanded = set(re.findall(r"^\| \*\*([A-Za-z]+\d\d)\*\*", refs, re.M))
    assert {"ACH18", "ACHL19", "Zhao22", "RC20", "BB21", "BD21", "KB15", "DHS11", "TH12"} <= expanded
    assert re.search(r"Zhao22.{0,80}\bZ22\b", refs, re.S), "docs/references.md should say that Z22 is Zhao22"
    expanded.add("Z22")  # the prefix of the claim ids Z22-EQ7, ...
    not_sources = {"RK45", "RK23"}  # scipy's method names
    short = re.compile(r"\b[A-Z][A-Za-z]{0,7}\d\d\b")
    missing: dict[str, str] = {}
    for path in repository_files(".py", ".md"):
        for name in short.findall(path.read_text(encoding="utf-8", errors="replace")):
            if name not in expanded and name not in not_sources and not re.fullmatch(r"W\d\d", name):
                missing.setdefault(name, str(path.relative_to(ROOT)))
    assert not missing, f"short names without a citation in docs/references.md (name: first file): {missing}"
