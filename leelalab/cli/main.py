"""The ``leelalab`` command line: a thin layer over the library.

Every command reports bad input (a missing or corrupt network, a bad FEN, an illegal move,
a malformed input row) as one line on stderr and exits with status 1; usage errors exit
with status 2. ``leelalab`` alone, or a command group alone, prints its help.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from leelalab.cli.common import HelpFormatter, add_group, resolve_positional_aliases
from leelalab.errors import LeelaLabError


def build_parser() -> argparse.ArgumentParser:
    from leelalab._version import __version__
    from leelalab.cli import (
        analyses,
        anomaly,
        inside,
        networks,
        patching,
        probing,
        puzzles,
        train,
    )

    parser = argparse.ArgumentParser(
        prog="leelalab",
        description="Leela Chess Zero networks in PyTorch, identical to lc0: evaluate them,\n"
        "build puzzle datasets, patch, probe and plot. `leelalab COMMAND --help` for details.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"leelalab {__version__}")
    parser.set_defaults(run=lambda _args: _print_help(parser))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    networks.register(commands)
    puzzles.register(commands)
    _, plot = add_group(commands, "plot", "figures for papers (PDF + PNG)", "plot_command")
    patching.register(commands, plot)
    probing.register(commands, plot)
    inside.register(commands, plot)
    analyses.register(commands, plot)
    anomaly.register(commands, plot)
    train.register(commands, plot)
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from leelalab.cli import networks

    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_positional_aliases(parser, args)
    networks.check(parser, args)
    _show_notes()
    try:
        return int(args.run(args))
    except LeelaLabError as error:
        print(f"leelalab: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"leelalab: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("leelalab: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # A bug, not bad input: still one line for the user, the traceback on request.
        if os.environ.get("LEELALAB_DEBUG"):
            raise
        print(
            f"leelalab: internal error: {type(error).__name__}: {_one_line(error)} "
            "(set LEELALAB_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


def _show_notes() -> None:
    """The library's notes (``logging``, e.g. "resuming …") as ``leelalab: …`` on stderr."""
    import logging

    class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
        """Writes to whatever ``sys.stderr`` is when a note is written."""

        @property  # type: ignore[override]
        def stream(self) -> TextIO:
            return sys.stderr

        @stream.setter
        def stream(self, _value: object) -> None:
            pass

    logger = logging.getLogger("leelalab")
    if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("leelalab: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _one_line(error: BaseException, limit: int = 500) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
