"""leelalab: Leela Chess Zero networks in PyTorch, for studying learned look-ahead.

Quick start::

    import chess
    import leelalab

    net = leelalab.load_network("maia-1900")
    evaluation = net.evaluate(chess.Board())[0]
    evaluation.top_moves(3), evaluation.wdl
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Evaluation", "evaluate", "load_network", "load_weights", "__version__"]

if TYPE_CHECKING:
    from leelalab.evaluation import Evaluation, evaluate
    from leelalab.networks import load_network
    from leelalab.weights import load_weights

_LAZY = {
    "Evaluation": "leelalab.evaluation",
    "evaluate": "leelalab.evaluation",
    "load_network": "leelalab.networks",
    "load_weights": "leelalab.weights",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import leelalab` stays cheap (torch is imported on first use).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'leelalab' has no attribute {name!r}")
