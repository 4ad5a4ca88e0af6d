"""Streaming the Lichess puzzle CSV: malformed rows are skipped and counted."""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard

from leelalab.puzzles.reader import PuzzleFileError, SkipReport, iter_puzzles, shipped_puzzles_path

HEADER = "PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags\n"
GOOD = "00008,r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24,f2g3 e6e7 b2b1 b3c1 b1c1 h6c1,1811,,,,hangingPiece,https://lichess.org/787zsVup/black#48,\n"


def test_shipped_sample_reads_completely() -> None:
    report = SkipReport()
    puzzles = list(iter_puzzles(shipped_puzzles_path(), report=report))
    assert len(puzzles) == 4935 == report.kept == report.rows
    assert not report.skipped
    first = puzzles[0]
    assert first.id == "00008" and first.rating == 1811 and first.themes == ("hangingPiece",)
    assert first.board(plies=1).fen().startswith("r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2b1/PqP3PP/7K w")
    assert first.solution == ("e6e7", "b2b1", "b3c1", "b1c1", "h6c1")


def test_malformed_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    rows = [
        GOOD,
        "bad1,not a fen,e2e4 e7e5,1500,,,,,,\n",
        "bad2,r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24,f2g3 zz99,1500,,,,,,\n",
        "bad3,r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24,f2g3 a1a2,1500,,,,,,\n",
        "bad4,r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24,f2g3,1500,,,,,,\n",
        "bad5,,e2e4 e7e5,1500,,,,,,\n",
        "bad6\n",
        "bad7,r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24,f2g3 e6e7,abc,,,,,,\n",
        GOOD.replace("00008", "00009").replace(",1811,", ",,"),
    ]
    path = tmp_path / "puzzles.csv"
    path.write_text(HEADER + "".join(rows))
    report = SkipReport()
    puzzles = list(iter_puzzles(path, report=report))
    assert [p.id for p in puzzles] == ["00008", "00009"]
    assert puzzles[1].rating is None
    assert report.rows == 9 and report.kept == 2
    assert report.skipped == {
        "bad FEN": 1,
        "unparsable move": 1,
        "illegal move": 1,
        "empty solution": 1,
        "missing column": 2,
        "bad rating": 1,
    }
    assert "7 skipped" in str(report)


def test_zstd_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "puzzles.csv.zst"
    text = HEADER + "".join(GOOD.replace("00008", f"{i:05d}") for i in range(50))
    path.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    assert len(list(iter_puzzles(path))) == 50
    assert [p.id for p in iter_puzzles(path, limit=3)] == ["00000", "00001", "00002"]


def test_not_a_puzzle_file(tmp_path: Path) -> None:
    with pytest.raises(PuzzleFileError, match="no such puzzle file"):
        list(iter_puzzles(tmp_path / "missing.csv"))
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(PuzzleFileError, match="missing columns"):
        list(iter_puzzles(other))


def test_seeded_sample_is_uniform_reproducible_and_in_file_order() -> None:
    from leelalab.puzzles.reader import sample_puzzles

    path = shipped_puzzles_path()
    order = {p.id: i for i, p in enumerate(iter_puzzles(path))}
    a = sample_puzzles(path, 50, seed=1)
    assert [p.id for p in a] == [p.id for p in sample_puzzles(path, 50, seed=1)]
    assert [p.id for p in a] != [p.id for p in sample_puzzles(path, 50, seed=2)]
    positions = [order[p.id] for p in a]
    assert positions == sorted(positions) and len(set(positions)) == 50
    assert max(positions) > 2500  # not a prefix of the file
    counts = [0, 0]
    for seed in range(40):
        for p in sample_puzzles(path, 20, seed=seed):
            counts[order[p.id] >= len(order) // 2] += 1
    assert abs(counts[0] - counts[1]) < 0.2 * sum(counts)
