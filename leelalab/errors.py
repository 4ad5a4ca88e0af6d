"""Exception types raised by leelalab.

Every error a user can cause with bad input derives from :class:`LeelaLabError`, so the CLI
can turn it into one readable line and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations


class LeelaLabError(Exception):
    """Base class of every error caused by bad input to leelalab."""


class WeightsError(LeelaLabError):
    """An lc0 network file could not be read."""


class WeightsFileNotFoundError(WeightsError, FileNotFoundError):
    """The network file (or bundled network name) does not exist."""


class CorruptWeightsError(WeightsError):
    """The file is truncated, not gzip/protobuf, or internally inconsistent."""


class UnsupportedNetworkError(WeightsError):
    """The file is a valid lc0 network, but uses a feature leelalab (or lc0) cannot run."""


class PositionError(LeelaLabError, ValueError):
    """A position or move sequence is invalid (bad FEN, illegal move, ...)."""


class MoveIndexError(LeelaLabError, ValueError):
    """A move has no entry in lc0's 1858-move policy index."""
