"""Figures for papers: boards with arrows and highlighted squares, puzzle panels.

Everything draws into Matplotlib axes, never calls ``plt.show()`` and never changes global
settings (styles apply through ``matplotlib.rc_context``). Boards are shown from White's
side by default, rank 1 at the bottom; squares are real (absolute) chess squares.
Colours keep one meaning across figures: 1st-move target, 3rd-move target, corrupted.
Pieces are vector glyphs sized in squares (:data:`PIECE_SCALE`), white ones filled white.

Needs the ``viz`` extra: ``pip install "leelalab[viz]"``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chess
import numpy as np

from leelalab.errors import LeelaLabError

LIGHT, DARK = "#f0d9b5", "#b58863"
# Okabe–Ito colours, except a true purple for "corrupted" (Okabe–Ito's reddish purple reads as
# pink, and sits next to grey under deuteranopia); #762a83 is ColorBrewer's PRGn purple.
COLORS = {
    "first_target": "#0072b2",  # blue
    "third_target": "#e69f00",  # orange
    "corrupted": "#762a83",  # purple
    "move": "#009e73",  # green
}
SIGNED_CMAP = "RdBu_r"
"""Signed effects: diverging, centred at 0 (``TwoSlopeNorm``), red = positive."""
MAGNITUDE_CMAP = "YlGn"
"""Non-negative magnitudes (KL): sequential from 0. Light at 0, so pieces and outlines read on
the many near-zero squares; its yellow-greens stay apart from the blue, orange and purple
outlines (ColorBrewer, colourblind-safe)."""
PAPER_STYLE = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 8,
    "axes.titlesize": 8,
    "savefig.bbox": "tight",
    "savefig.dpi": 300,
    "text.usetex": False,
}
PIECE_SCALE = 0.8
"""Piece glyph height as a fraction of the square: the board is still visible around it."""

# DejaVu Sans chess symbols: the outlined (white) and filled (black) glyph of each piece type.
_WHITE_GLYPHS = {
    chess.KING: "\u2654",
    chess.QUEEN: "\u2655",
    chess.ROOK: "\u2656",
    chess.BISHOP: "\u2657",
    chess.KNIGHT: "\u2658",
    chess.PAWN: "\u2659",
}
_BLACK_GLYPHS = {
    chess.KING: "\u265a",
    chess.QUEEN: "\u265b",
    chess.ROOK: "\u265c",
    chess.BISHOP: "\u265d",
    chess.KNIGHT: "\u265e",
    chess.PAWN: "\u265f",
}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise LeelaLabError('plots need the viz extra: pip install "leelalab[viz]"') from None
    return plt


_NETWORK_SUFFIXES = (".pb.gz", ".pb", ".onnx", ".safetensors", ".gz", ".json")


def network_name(source: str | os.PathLike[str] | None) -> str:
    """A short name for a network source, for titles and legends: the file name without its
    weights suffix (``.../maia-1900.pb.gz`` gives ``maia-1900``); text after the path, such as
    `` (random init, seed 0)``, is kept; ``None`` or ``""`` gives ``"unknown network"``."""
    if source is None or not str(source).strip():
        return "unknown network"
    text = str(source).strip()
    rest = ""
    if text.endswith(")") and " (" in text:
        text, rest = text.split(" (", 1)
        rest = f" ({rest}"
    name = Path(text).name or text
    for suffix in _NETWORK_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return name + rest


def _xy(square: int, orientation: bool) -> tuple[float, float]:
    file, rank = chess.square_file(square), chess.square_rank(square)
    if orientation == chess.BLACK:
        file, rank = 7 - file, 7 - rank
    return file + 0.5, rank + 0.5


def _text_path(symbol: str) -> Any:
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    return TextPath((0, 0), symbol, size=1, prop=FontProperties(family="DejaVu Sans"))


@functools.cache
def _glyph_height() -> float:
    """The tallest chess glyph's height in em (every piece is drawn relative to it)."""
    symbols = [*_WHITE_GLYPHS.values(), *_BLACK_GLYPHS.values()]
    return max(_text_path(symbol).get_extents().height for symbol in symbols)


@functools.cache
def _glyph(symbol: str) -> Any:
    """The glyph's outline centred on (0, 0), scaled so that the tallest glyph is 1 high."""
    from matplotlib.path import Path as MplPath

    path = _text_path(symbol)
    box = path.get_extents()
    centre = np.array([(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2])
    return MplPath((path.vertices - centre) / _glyph_height(), path.codes)


@functools.cache
def _silhouette(piece_type: int) -> Any:
    """The piece's outer contour alone (the largest polygon of its glyph), to fill."""
    from matplotlib.path import Path as MplPath

    def area(polygon: np.ndarray) -> float:
        x, y = polygon[:, 0], polygon[:, 1]
        return abs(float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))) / 2

    polygons = _glyph(_WHITE_GLYPHS[piece_type]).to_polygons()
    return MplPath(max(polygons, key=area), closed=True)


def _piece_patches(
    piece: chess.Piece, centre: tuple[float, float], scale: float, zorder: float
) -> list[Any]:
    """Patches drawing ``piece`` ``scale`` squares tall at ``centre`` (data coordinates): the
    silhouette filled white (with a thin white rim for black pieces, so they read on dark
    colours too), then the font's glyph in black on top, as a chess font renders it."""
    from matplotlib.patches import PathPatch
    from matplotlib.transforms import Affine2D

    place = Affine2D().scale(scale).translate(*centre)
    glyph = (_WHITE_GLYPHS if piece.color == chess.WHITE else _BLACK_GLYPHS)[piece.piece_type]
    rim = 0.0 if piece.color == chess.WHITE else 0.8
    return [
        PathPatch(
            place.transform_path(_silhouette(piece.piece_type)),
            facecolor="white",
            edgecolor="white" if rim else "none",
            lw=rim,
            zorder=zorder,
        ),
        PathPatch(
            place.transform_path(_glyph(glyph)),
            facecolor="black",
            edgecolor="none",
            zorder=zorder + 0.01,
        ),
    ]


def draw_board(
    ax: Any,
    board: chess.Board,
    *,
    arrows: Sequence[tuple[int, int, str]] = (),
    highlights: dict[int, str] | None = None,
    orientation: bool = chess.WHITE,
    coordinates: bool = True,
    piece_scale: float = PIECE_SCALE,
    checkered: bool = True,
) -> Any:
    """Draw ``board`` into ``ax`` with square outlines (``highlights``) and ``arrows``.

    Pieces are vector glyphs ``piece_scale`` squares tall, so their size follows the board at
    any figure size. Each piece's patches carry the gid ``piece:<square>:<symbol>`` (e.g.
    ``piece:e1:K``). ``checkered=False`` leaves the squares empty, for a heatmap drawn under
    the pieces (at zorder 1; squares are at 0.5, pieces 3, outlines 4, arrows 5).
    """
    from matplotlib.patches import FancyArrow, Rectangle

    if not 0 < piece_scale <= 1:
        raise LeelaLabError(f"piece_scale must be in (0, 1], got {piece_scale}")
    for square in chess.SQUARES:
        x, y = _xy(square, orientation)
        if checkered:
            light = (chess.square_file(square) + chess.square_rank(square)) % 2 == 1
            ax.add_patch(
                Rectangle(
                    (x - 0.5, y - 0.5), 1, 1, color=LIGHT if light else DARK, lw=0, zorder=0.5
                )
            )
        piece = board.piece_at(square)
        if piece is not None:
            for patch in _piece_patches(piece, (x, y), piece_scale, zorder=3):
                patch.set_gid(f"piece:{chess.square_name(square)}:{piece.symbol()}")
                ax.add_patch(patch)
    for square, color in (highlights or {}).items():
        x, y = _xy(square, orientation)
        ax.add_patch(
            Rectangle(
                (x - 0.45, y - 0.45),
                0.9,
                0.9,
                fill=False,
                ec=color,
                lw=2.0,
                zorder=4,
                path_effects=_halo(3.2),
            )
        )
    for start, end, color in arrows:
        (x0, y0), (x1, y1) = _xy(start, orientation), _xy(end, orientation)
        ax.add_patch(
            FancyArrow(
                x0,
                y0,
                (x1 - x0) * 0.85,
                (y1 - y0) * 0.85,
                width=0.1,
                head_width=0.34,
                head_length=0.32,
                length_includes_head=True,
                color=color,
                alpha=0.9,
                lw=0,
                zorder=5,
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


def _halo(width: float) -> list[Any]:
    """A white rim under a line, so coloured outlines read on any square or heatmap colour."""
    from matplotlib import patheffects

    return [patheffects.Stroke(linewidth=width, foreground="white"), patheffects.Normal()]


def outline_legend_handles(names: Sequence[str] = ("first_target", "third_target")) -> list[Any]:
    """Legend handles for the square outlines of :data:`COLORS` entries ``names``."""
    from matplotlib.patches import Patch

    labels = {
        "first_target": "1st move target (outline)",
        "third_target": "3rd move target (outline)",
        "corrupted": "corrupted square(s) (outline)",
    }
    return [
        Patch(facecolor="none", edgecolor=COLORS[name], lw=2.0, label=labels[name])
        for name in names
    ]


def _top_bars(bars: Any, board: chess.Board, policy: dict[str, float], line_move: str | None,
               label: str) -> None:  # fmt: skip
    """The network's top-3 moves at ``board`` as horizontal bars, the puzzle line's move
    green."""
    top = sorted(policy.items(), key=lambda item: -item[1])[:3]
    names = [board.san(chess.Move.from_uci(uci)) for uci, _ in top]
    colors = [COLORS["move"] if uci == line_move else "0.6" for uci, _ in top]
    positions = list(range(len(top)))[::-1]
    bars.barh(positions, [p for _, p in top], color=colors, height=0.7)
    for y, (_, p) in zip(positions, top, strict=True):
        bars.text(min(p + 0.02, 0.85), y, f"{p:.2f}", va="center", fontsize=6)
    bars.set_yticks(positions, names)
    bars.set_ylim(-0.6, 2.6)
    bars.set_xlim(0, 1)
    bars.set_xlabel(label, fontsize=6)
    bars.tick_params(labelsize=6)
    bars.spines[["top", "right"]].set_visible(False)


def puzzle_figure(
    fen: str,
    moves: Sequence[str],
    policies: Sequence[dict[str, float]],
    *,
    title: str = "",
    network: str = "",
    width: float = 5.5,
    corruption: dict[str, Any] | None = None,
    corrupted_policy: dict[str, float] | None = None,
) -> Any:
    """The look-ahead paper's Figure 2 layout: the puzzle, after move 1, after move 2.

    Arrows show the move played from each board; the 1st and 3rd moves' target squares are
    outlined; under each board, the network's top-3 moves with their probabilities, the
    puzzle line's move in green. A legend under the figure names every mark.

    Args:
        fen: the puzzle FEN (before the opponent's move); ``moves`` the full Lichess line.
        policies: the network's legal-move probabilities at the three boards.
        network: the network's name (see :func:`network_name`), for the title and the bars.
        width: figure width in inches (5.5 ≈ a paper's text width); a fourth board makes
            the figure a third wider.
        corruption: the dataset's corruption of the puzzle (``fen`` with the solver to move,
            ``squares``, ``kind``): drawn beside the puzzle, its edited squares outlined in
            purple, with ``corrupted_policy`` (the network's policy there) under it.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

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
    policy_name = f"{network} policy" if network else "network policy"
    columns = 3 if corruption is None else 4
    total = width * columns / 3
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(
            2,
            columns,
            figsize=(total, width * 0.68),
            gridspec_kw={"height_ratios": [3, 1.1]},
            layout="constrained",
        )
        captions = ["Puzzle (move 1 to play)", "After move 1", "After move 2"]
        places = [0, 1, 2] if corruption is None else [0, 2, 3]
        for column, place in enumerate(places):
            draw_board(
                axes[0, place],
                board,
                orientation=orientation,
                highlights=highlights,
                arrows=[(line[column].from_square, line[column].to_square, COLORS["move"])],
            )
            axes[0, place].set_title(captions[column])
            _top_bars(
                axes[1, place],
                board,
                policies[column],
                line[column].uci(),
                f"{policy_name}, top 3",
            )
            board.push(line[column])
        if corruption is not None:
            twin = chess.Board(corruption["fen"])
            edited = {chess.parse_square(name) for name in corruption["squares"]}
            twin_highlights = {**highlights, **dict.fromkeys(edited, COLORS["corrupted"])}
            arrows = []
            if line[0] in twin.legal_moves:
                arrows = [(line[0].from_square, line[0].to_square, COLORS["move"])]
            draw_board(
                axes[0, 1],
                twin,
                orientation=orientation,
                highlights=twin_highlights,
                arrows=arrows,
            )
            kind = str(corruption.get("kind", "")).replace("_", " ")
            axes[0, 1].set_title(f"Corrupted twin{f' ({kind})' if kind else ''}")
            if corrupted_policy:
                _top_bars(
                    axes[1, 1], twin, corrupted_policy, line[0].uci(), f"{policy_name}, top 3"
                )
            else:
                axes[1, 1].axis("off")
        handles = [
            *outline_legend_handles(
                ("first_target", "third_target")
                if corruption is None
                else ("first_target", "third_target", "corrupted")
            ),
            Line2D([], [], color=COLORS["move"], lw=2, marker=">", ms=4, label="move played"),
            Patch(facecolor=COLORS["move"], label="bar: the puzzle line's move"),
            Patch(facecolor="0.6", label="bar: other top moves"),
        ]
        figure.legend(
            handles=handles,
            loc="outside lower center",
            ncol=3,
            frameon=False,
            fontsize=6,
        )
        heading = title or "Puzzle"
        if network:
            heading += f" — {network}"
        figure.suptitle(heading)
    return figure


def save_figure(figure: Any, path: str | os.PathLike[str]) -> list[Path]:
    """Save as PDF and PNG (same stem), whatever suffix ``path`` has."""
    path = Path(path)
    outputs = [path.with_suffix(".pdf"), path.with_suffix(".png")]
    with _pyplot().rc_context(PAPER_STYLE):
        for output in outputs:
            figure.savefig(output)
    return outputs
