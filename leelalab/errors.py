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


class NonFiniteWeightsError(CorruptWeightsError):
    """A layer of the file decodes to NaN or infinite numbers."""


class NonFiniteOutputError(LeelaLabError):
    """A network produced NaN or infinite outputs (its weights are finite but absurd)."""


class LayerIndexError(LeelaLabError, ValueError):
    """A body layer index outside the network's range."""


class PositionError(LeelaLabError, ValueError):
    """A position or move sequence is invalid (bad FEN, illegal move, ...)."""


class MoveIndexError(LeelaLabError, ValueError):
    """A move has no entry in lc0's 1858-move policy index."""


def name_source(error: LeelaLabError, source: object) -> LeelaLabError:
    """``error`` with its message prefixed by ``source`` (a file name), unless it names it.

    The same exception type comes back, so callers can still tell errors apart; library code
    raises it ``from None`` where the inner error only lacked the file name.
    """
    message = str(error)
    name = str(source)
    if not name or message.startswith(f"{name}:") or message.startswith(name + " "):
        return error
    try:
        return type(error)(f"{name}: {message}")
    except TypeError:  # an error type with a richer constructor: keep its class's family
        return LeelaLabError(f"{name}: {message}")
