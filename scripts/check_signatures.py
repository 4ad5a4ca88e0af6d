"""List functions under leelalab/ that take more than 8 parameters (``self``/``cls`` and one
settings object not counted) or run longer than 80 lines. Exit 1 on any over-long
parameter list (issue 26: "no function takes more than 8 parameters besides a settings
object"); long functions are listed for review."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "leelalab"
MAX_PARAMETERS = 8
LONG_FUNCTION = 80


SETTINGS_SUFFIXES = ("Settings", "Config", "Spec", "Shape")


def _is_settings(argument: ast.arg) -> bool:
    """``self``/``cls``, or the settings object: named so, or annotated with a settings
    class (``…Settings``, ``…Config``, ``…Spec``, ``…Shape``, optionally ``| None``)."""
    if argument.arg in ("self", "cls", "settings", "config", "spec"):
        return True
    annotation = ast.unparse(argument.annotation) if argument.annotation else ""
    first = annotation.split("|")[0].strip().split(".")[-1]
    return first.endswith(SETTINGS_SUFFIXES)


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """The parameters besides ``self``/``cls`` and one settings object."""
    arguments = node.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    settings = [a for a in every if _is_settings(a) and a.arg not in ("self", "cls")]
    extra = settings[1:]  # only one settings object is free
    return [a.arg for a in every if not _is_settings(a)] + [a.arg for a in extra]


def main() -> int:
    too_many = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"
            count = len(parameters(node))
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if count > MAX_PARAMETERS:
                too_many.append(f"{where}: {count} parameters")
            elif length > LONG_FUNCTION:
                print(f"long: {where}: {length} lines")
    for line in too_many:
        print(f"too many parameters: {line}")
    return 1 if too_many else 0


if __name__ == "__main__":
    sys.exit(main())
