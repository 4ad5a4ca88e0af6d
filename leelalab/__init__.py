"""leelalab: Leela Chess Zero networks in PyTorch, for studying learned look-ahead."""

from __future__ import annotations

__version__ = "0.1.0"
