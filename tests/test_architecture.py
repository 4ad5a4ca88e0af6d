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


RMTREE_ALLOWED = {
    "runs/results.py": "RunDirectory removes the folders this session created, when a run "
    "fails before writing any result",
}
"""The modules that may call ``shutil.rmtree``, and why. Every other removal goes through
``leelalab.runs.results`` (``RunDirectory.discard``, ``remove_output``), which deletes only
what leelalab wrote: no command grows its own overwrite policy again."""


def _rmtree_calls(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "rmtree":
                lines.append(node.lineno)
    return lines


def test_only_the_run_life_cycle_deletes_folders() -> None:
    calls = {
        path.relative_to(PACKAGE).as_posix(): _rmtree_calls(path)
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    offenders = {name: lines for name, lines in calls.items() if lines}
    assert set(offenders) <= set(RMTREE_ALLOWED), {
        name: lines for name, lines in offenders.items() if name not in RMTREE_ALLOWED
    }
    # The allow-list stays current: each entry still needs its exception.
    assert set(RMTREE_ALLOWED) <= set(offenders), set(RMTREE_ALLOWED) - set(offenders)


def test_the_rmtree_check_sees_both_spellings(tmp_path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import shutil\nfrom shutil import rmtree\nshutil.rmtree('a')\nrmtree('b')\n")
    assert _rmtree_calls(source) == [3, 4]


def test_no_function_takes_more_than_eight_parameters_besides_its_settings() -> None:
    # Issue 26: long parameter lists become a settings object (scripts/check_signatures.py).
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "check_signatures.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    too_many = [line for line in result.stdout.splitlines() if line.startswith("too many")]
    assert result.returncode == 0 and not too_many, "\n".join(too_many)
