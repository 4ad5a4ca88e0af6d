"""Figure directories of ``plot`` commands: existing figures are replaced only on request.

A plot command draws into a scratch folder first, so the names it writes are known before
anything in ``--output`` is touched; when one of them exists already, the command refuses
(one line naming it) unless ``--overwrite``. Other files in the folder — other commands'
figures, a user's notes — are never touched.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from leelalab.errors import LeelaLabError


class FigureExistsError(LeelaLabError):
    """A figure a plot command would write exists and ``--overwrite`` was not given."""


def add_figure_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace figures of the same name in the output directory (other files stay)",
    )


def write_figures(
    out: str | Path, overwrite: bool, draw: Callable[[Path], list[Path]]
) -> list[Path]:
    """``draw(folder)`` into a scratch folder, then move its files into ``out``.

    Raises :class:`FigureExistsError` (before ``out`` is created or changed) when a figure
    exists there and not ``overwrite``. Returns the figures' paths in ``out``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LeelaLabError(f"{out} exists and is not a directory; choose another output")
    with tempfile.TemporaryDirectory(prefix="leelalab-figures-") as scratch:
        drawn = list(dict.fromkeys(draw(Path(scratch))))  # a later figure replaced an earlier
        targets = [out / path.relative_to(scratch) for path in drawn]
        existing = [str(target) for target in targets if target.exists()]
        if existing and not overwrite:
            raise FigureExistsError(
                f"{existing[0]} exists ({len(existing)} of the figures); pass --overwrite to "
                "replace them or choose another output"
            )
        out.mkdir(parents=True, exist_ok=True)
        for path, target in zip(drawn, targets, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), target)
    return targets
