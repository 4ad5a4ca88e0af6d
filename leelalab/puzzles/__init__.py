"""Lichess puzzles: the streaming CSV reader (``reader``), the paper's filter (``filter``),
corrupted twins (``corruptions``), reading built datasets (``dataset``) and ``demo``.
"""
