"""The errors every engine problem raises: one line each, naming the binary or the file."""

from __future__ import annotations

from leelalab.errors import LeelaLabError


class EngineError(LeelaLabError):
    """An engine failed, could not start, or a search overran its wall-clock guard."""


class EngineNotFoundError(EngineError):
    """An engine binary (lc0, Stockfish) is not installed or not where it was said to be."""


class EngineCacheError(EngineError):
    """An engine cache file is not a readable leelalab engine cache."""
