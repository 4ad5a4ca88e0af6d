"""The package's shape: few top-level modules, documented subpackages, README in step."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "leelalab"


def test_at_most_ten_modules_sit_at_the_top_of_the_package() -> None:
    modules = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(modules) <= 10, modules


@pytest.mark.parametrize(
    "package",
    sorted(path.parent.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("__init__.py")),
)
def test_every_subpackage_says_what_it_owns(package: str) -> None:
    source = (PACKAGE / package / "__init__.py").read_text()
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring, f"leelalab/{package}/__init__.py has no docstring"
    assert len(docstring.split()) >= 8, f"leelalab/{package}: say what the package owns"


def test_every_subpackage_is_in_the_layers_contract() -> None:
    import tomllib

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(contract for contract in contracts if contract["type"] == "layers")["layers"]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    subpackages = {f"leelalab.{path.parent.name}" for path in PACKAGE.glob("*/__init__.py")}
    assert subpackages <= named, subpackages - named


def test_no_function_takes_more_than_eight_parameters_besides_its_settings() -> None:
    # Issue 26: long parameter lists become a settings object (scripts/check_signatures.py).
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "check_signatures.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    too_many = [line for line in result.stdout.splitlines() if line.startswith("too many")]
    assert result.returncode == 0 and not too_many, "\n".join(too_many)
