"""A patching or head-analysis run directory, loaded: the residual-patching results, the
head experiments' results and the recorded settings that the ``plot patching`` figures draw.

Reading happens here, once, so that figures take loaded data and never a directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leelalab.errors import LeelaLabError
from leelalab.patching.heads import HEAD_FILES, HeadResults
from leelalab.patching.residual import RESULTS_FILE, PatchingResults


@dataclass(frozen=True)
class PatchingRun:
    """What one ``patch residual`` / ``patch heads`` / ``heads …`` directory holds."""

    name: str
    settings: dict[str, Any]
    """The run's ``settings.json`` (network source, direction, dataset), or ``{}``."""
    residual: PatchingResults | None = None
    heads: dict[str, HeadResults] = field(default_factory=dict)
    """Head experiments' results by format (:data:`~leelalab.patching.heads.HEAD_FILES`)."""
    clean_fens: dict[str, str | None] = field(default_factory=dict)
    """Puzzle id → clean position (FEN) for the board figures, None where not found."""

    @property
    def network(self) -> str | None:
        network = self.settings.get("network")
        return network if isinstance(network, str) else None


def _settings(directory: Path) -> dict[str, Any]:
    """The run's recorded settings, or ``{}`` (figures then name what the results hold)."""
    try:
        settings = json.loads((directory / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


def _clean_fen(settings: dict[str, Any], puzzle: str) -> str | None:
    """The clean position of ``puzzle`` from the dataset the results came from, if found."""
    from leelalab.puzzles.dataset import load_dataset

    try:
        for item in load_dataset(settings["dataset"], selected_only=False):
            if item.id == puzzle:
                return item.clean_board.fen()
    except (OSError, KeyError, TypeError, LeelaLabError, ValueError):
        return None
    return None


def load_patching_run(
    directory: str | os.PathLike[str], *, puzzles: Sequence[str] = ()
) -> PatchingRun:
    """Every result file in ``directory`` (residual patching and head experiments) and the
    clean positions of ``puzzles`` (default: the first patched puzzle) for board figures.

    Raises:
        LeelaLabError: one line naming the directory or file: not a directory, no results of
            these experiments in it, or a truncated or foreign results file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise LeelaLabError(f"{directory}: no such results directory")
    settings = _settings(directory)
    residual = None
    fens: dict[str, str | None] = {}
    if (directory / RESULTS_FILE).is_file():
        residual = PatchingResults.load(directory)
        ids = [str(pid) for pid in residual.arrays["puzzle_ids"]]
        fens = {puzzle: _clean_fen(settings, puzzle) for puzzle in list(puzzles) or ids[:1]}
    heads = {
        format: HeadResults.load(directory, format)
        for format, (name, _) in HEAD_FILES.items()
        if (directory / name).is_file()
    }
    if residual is None and not heads:
        raise LeelaLabError(f"{directory}: no patching or head-analysis results to plot")
    return PatchingRun(directory.name, settings, residual, heads, fens)


__all__ = ["PatchingRun", "load_patching_run"]
