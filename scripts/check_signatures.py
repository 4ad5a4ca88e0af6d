"""List functions under leelalab/ that take more than 8 parameters (a settings object and
``self``/``cls`` not counted as extra) or run longer than 80 lines. Exit 1 on any over-long
parameter list (issue 26: "no function takes more than 8 parameters besides a settings
object"); long functions are listed for review."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "leelalab"
MAX_PARAMETERS = 8
LONG_FUNCTION = 80


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    arguments = node.args
    names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
    names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return [name for name in names if name not in ("self", "cls", "settings")]


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
