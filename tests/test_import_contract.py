"""The import contract of ``[tool.importlinter]`` in pyproject.toml holds (``lint-imports``, as CI runs it).

One dependency direction (math core → flows → integrator → theory | validation → run functions → sweep →
gallery → CLI, every module placed), only ``flowsim.cli`` knows every command, and the flows never import a
solver. Running it from the test suite makes the README's test command check the contract too.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("importlinter") is None,
    reason="import-linter is not installed (it is in the `test` extra: pip install -e '.[test]')",
)


def test_pyproject_declares_the_contracts() -> None:
    """The three contracts are declared, so that a passing ``lint-imports`` is not an empty check."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert config["root_package"] == "flowsim"
    ids = {c["id"]: c for c in config["contracts"]}
    assert set(ids) == {"layers", "cli-knows-every-command", "flows-without-solver"}
    layers = ids["layers"]["layers"]
    assert layers[0] == "cli" and layers[-1].startswith("factors") and ids["layers"]["exhaustive"]
    assert layers.index("flows") > [i for i, layer in enumerate(layers) if "integrator" in layer][0]


def test_import_contract_is_kept() -> None:
    """``lint-imports`` exits 0: every contract is kept (its report is the failure message otherwise)."""
    here = str(Path(sys.executable).parent)  # the environment's scripts first, then the PATH
    script = shutil.which("lint-imports", path=here) or shutil.which("lint-imports")
    assert script is not None, "import-linter is installed but its `lint-imports` script is not on the path"
    proc = subprocess.run(
        [script, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BROKEN" not in proc.stdout and "kept, 0 broken" in proc.stdout, proc.stdout
