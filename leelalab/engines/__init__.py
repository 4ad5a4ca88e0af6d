"""External chess engines (Stockfish, lc0's own search) over python-chess's ``chess.engine``:
one way to find and start them (``binaries``), typed search limits (``limits``), one SQLite
cache of their results keyed by position, limit and engine identity (``cache``), a cached,
deterministic Stockfish (``stockfish``) and lc0's MCTS with an exact node budget (``lc0``).
"""

from leelalab.engines.binaries import find_lc0, find_stockfish
from leelalab.engines.cache import CACHE_FILE, EngineCache, position_key
from leelalab.engines.errors import EngineCacheError, EngineError, EngineNotFoundError
from leelalab.engines.lc0 import LC0_OPTIONS, Lc0Engine, SearchResult, lc0_identity
from leelalab.engines.limits import Limit
from leelalab.engines.stockfish import Line, Stockfish

__all__ = [
    "CACHE_FILE",
    "LC0_OPTIONS",
    "EngineCache",
    "EngineCacheError",
    "EngineError",
    "EngineNotFoundError",
    "Lc0Engine",
    "Limit",
    "Line",
    "SearchResult",
    "Stockfish",
    "find_lc0",
    "find_stockfish",
    "lc0_identity",
    "position_key",
]
