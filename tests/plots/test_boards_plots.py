"""Puzzle figures: drawn from real data, saved as PDF and PNG."""

from __future__ import annotations

from pathlib import Path

import chess
import pytest

pytest.importorskip("matplotlib", reason="needs the viz extra")

from leelalab.plots.boards import draw_board, puzzle_figure, save_figure  # noqa: E402


def test_draw_board_places_every_piece_on_its_square() -> None:
    import matplotlib.pyplot as plt

    board = chess.Board("8/1P4k1/8/8/8/8/5K2/8 w - - 0 60")
    for orientation in (chess.WHITE, chess.BLACK):
        figure, ax = plt.subplots()
        draw_board(ax, board, orientation=orientation, highlights={chess.B8: "blue"})
        placed = {
            (
                round(t.get_position()[0] - 0.5),
                round(t.get_position()[1] + 0.04 - 0.5),
            ): t.get_text()
            for t in ax.texts
        }
        for square, piece in board.piece_map().items():
            file, rank = chess.square_file(square), chess.square_rank(square)
            if orientation == chess.BLACK:
                file, rank = 7 - file, 7 - rank
            assert placed[file, rank] == piece.unicode_symbol()
        assert len(placed) == len(board.piece_map())
        plt.close(figure)


def test_puzzle_figure_files(tmp_path: Path) -> None:
    fen = "r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24"
    moves = ["f2g3", "e6e7", "b2b1", "b3c1"]
    policies = [{"e6e7": 0.7, "h6f8": 0.2, "h2g3": 0.1}, {"b2b1": 1.0}, {"b3c1": 0.9, "h1h2": 0.1}]
    figure = puzzle_figure(fen, moves, policies, title="test")
    paths = save_figure(figure, tmp_path / "fig.pdf")
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    assert paths[0].read_bytes()[:4] == b"%PDF" and paths[1].stat().st_size > 10_000
