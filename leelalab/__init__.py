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

from leelalab._version import __version__

__all__ = ["Evaluation", "evaluate", "load_network", "load_weights", "__version__"]

if TYPE_CHECKING:
    from leelalab.inference.networks import load_network
    from leelalab.lc0.weights import load_weights
    from leelalab.models.evaluation import Evaluation, evaluate

_LAZY = {
    "Evaluation": "leelalab.models.evaluation",
    "evaluate": "leelalab.models.evaluation",
    "load_network": "leelalab.inference.networks",
    "load_weights": "leelalab.lc0.weights",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import leelalab` stays cheap (torch is imported on first use).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'leelalab' has no attribute {name!r}")
