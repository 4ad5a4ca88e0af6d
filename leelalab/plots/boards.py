"""Figures for papers: boards with arrows and highlighted squares, puzzle panels.

Everything draws into Matplotlib axes, never calls ``plt.show()`` and never changes global
settings (styles apply through ``matplotlib.rc_context``). Boards are shown from White's
side by default, rank 1 at the bottom; squares are real (absolute) chess squares.
Colours keep one meaning across figures: 1st-move target, 3rd-move target, corrupted.

Needs the ``viz`` extra: ``pip install "leelalab[viz]"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chess

from leelalab.errors import LeelaLabError

LIGHT, DARK = "#f0d9b5", "#b58863"
COLORS = {
    "first_target": "#0072b2",  # blue
    "third_target": "#e69f00",  # orange
    "corrupted": "#cc79a7",  # purple
    "move": "#009e73",  # green
}
PAPER_STYLE = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 8,
    "axes.titlesize": 8,
    "savefig.bbox": "tight",
    "savefig.dpi": 300,
}
_GLYPHS = {
    (chess.KING, True): "\u2654",
    (chess.QUEEN, True): "\u2655",
    (chess.ROOK, True): "\u2656",
    (chess.BISHOP, True): "\u2657",
    (chess.KNIGHT, True): "\u2658",
    (chess.PAWN, True): "\u2659",
    (chess.KING, False): "\u265a",
    (chess.QUEEN, False): "\u265b",
    (chess.ROOK, False): "\u265c",
    (chess.BISHOP, False): "\u265d",
    (chess.KNIGHT, False): "\u265e",
    (chess.PAWN, False): "\u265f",
}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise LeelaLabError('plots need the viz extra: pip install "leelalab[viz]"') from None
    return plt


def _xy(square: int, orientation: bool) -> tuple[float, float]:
    file, rank = chess.square_file(square), chess.square_rank(square)
    if orientation == chess.BLACK:
        file, rank = 7 - file, 7 - rank
    return file + 0.5, rank + 0.5


def draw_board(
    ax: Any,
    board: chess.Board,
    *,
    arrows: Sequence[tuple[int, int, str]] = (),
    highlights: dict[int, str] | None = None,
    orientation: bool = chess.WHITE,
    coordinates: bool = True,
) -> Any:
    """Draw ``board`` into ``ax`` with square outlines (``highlights``) and ``arrows``."""
    from matplotlib.patches import FancyArrow, Rectangle

    for square in chess.SQUARES:
        x, y = _xy(square, orientation)
        light = (chess.square_file(square) + chess.square_rank(square)) % 2 == 1
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, color=LIGHT if light else DARK, lw=0))
        piece = board.piece_at(square)
        if piece is not None:
            ax.text(
                x,
                y - 0.04,
                _GLYPHS[piece.piece_type, piece.color],
                ha="center",
                va="center",
                fontsize=17,
                family="DejaVu Sans",
                color="black",
            )
    for square, color in (highlights or {}).items():
        x, y = _xy(square, orientation)
        ax.add_patch(Rectangle((x - 0.46, y - 0.46), 0.92, 0.92, fill=False, ec=color, lw=2.2))
    for start, end, color in arrows:
        (x0, y0), (x1, y1) = _xy(start, orientation), _xy(end, orientation)
        ax.add_patch(
            FancyArrow(
                x0,
                y0,
                (x1 - x0) * 0.85,
                (y1 - y0) * 0.85,
                width=0.08,
                head_width=0.3,
                head_length=0.3,
                length_includes_head=True,
                color=color,
                alpha=0.85,
                lw=0,
            )
        )
    if coordinates:
        files = "abcdefgh" if orientation == chess.WHITE else "hgfedcba"
        ranks = "12345678" if orientation == chess.WHITE else "87654321"
        ax.set_xticks([i + 0.5 for i in range(8)], list(files))
        ax.set_yticks([i + 0.5 for i in range(8)], list(ranks))
        ax.tick_params(length=0, labelsize=6)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlim(0, 8)
    ax.set_ylim(0, 8)
    ax.set_aspect("equal")
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ax


def puzzle_figure(
    fen: str,
    moves: Sequence[str],
    policies: Sequence[dict[str, float]],
    *,
    title: str = "",
    width: float = 5.5,
) -> Any:
    """The look-ahead paper's Figure 2 layout: the puzzle, after move 1, after move 2.

    Arrows show the move played from each board; the 1st and 3rd moves' target squares are
    outlined; under each board, the network's top-3 moves with their probabilities.

    Args:
        fen: the puzzle FEN (before the opponent's move); ``moves`` the full Lichess line.
        policies: the network's legal-move probabilities at the three boards.
        width: figure width in inches (5.5 ≈ a paper's text width).
    """
    plt = _pyplot()
    board = chess.Board(fen)
    board.push_uci(moves[0])
    line = [chess.Move.from_uci(uci) for uci in moves[1:4]]
    if len(line) < 3 or len(policies) < 3:
        raise LeelaLabError("the figure needs a line of at least 3 moves after the opponent's")
    highlights = {
        line[0].to_square: COLORS["first_target"],
        line[2].to_square: COLORS["third_target"],
    }
    orientation = board.turn
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(
            2, 3, figsize=(width, width * 0.62), gridspec_kw={"height_ratios": [3, 1.1]}
        )
        captions = ["Puzzle", "After move 1", "After move 2"]
        for column in range(3):
            draw_board(
                axes[0, column],
                board,
                orientation=orientation,
                highlights=highlights,
                arrows=[(line[column].from_square, line[column].to_square, COLORS["move"])],
            )
            axes[0, column].set_title(captions[column])
            top = sorted(policies[column].items(), key=lambda item: -item[1])[:3]
            bars = axes[1, column]
            names = [board.san(chess.Move.from_uci(uci)) for uci, _ in top]
            colors = [COLORS["move"] if uci == line[column].uci() else "0.6" for uci, _ in top]
            positions = list(range(len(top)))[::-1]
            bars.barh(positions, [p for _, p in top], color=colors, height=0.7)
            for y, (_, p) in zip(positions, top, strict=True):
                bars.text(min(p + 0.02, 0.85), y, f"{p:.2f}", va="center", fontsize=6)
            bars.set_yticks(positions, names)
            bars.set_ylim(-0.6, 2.6)
            bars.set_xlim(0, 1)
            bars.tick_params(labelsize=6)
            bars.spines[["top", "right"]].set_visible(False)
            board.push(line[column])
        if title:
            figure.suptitle(title)
        figure.tight_layout()
    return figure


def save_figure(figure: Any, path: str | os.PathLike[str]) -> list[Path]:
    """Save as PDF and PNG (same stem), whatever suffix ``path`` has."""
    path = Path(path)
    outputs = [path.with_suffix(".pdf"), path.with_suffix(".png")]
    with _pyplot().rc_context(PAPER_STYLE):
        for output in outputs:
            figure.savefig(output)
    return outputs
