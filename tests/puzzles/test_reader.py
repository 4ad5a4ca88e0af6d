"""Streaming the Lichess puzzle CSV: a malformed row costs only that row and is counted with
its line number; unreadable or truncated input is an error naming the file, never a partial
success."""

from __future__ import annotations

import gzip
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
        "missing column": 1,
        "malformed row (wrong number of fields)": 1,
        "bad rating": 1,
    }
    # Line numbers count the header as line 1.
    assert report.lines["bad FEN"] == [3] and report.lines["missing column"] == [7]
    assert report.lines["malformed row (wrong number of fields)"] == [8]
    assert "7 skipped" in str(report) and "bad FEN (line 3)" in str(report)


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
    with pytest.raises(PuzzleFileError, match="lacks the columns PuzzleId, FEN, Moves"):
        list(iter_puzzles(other))


def test_the_default_input_is_package_data_wherever_the_command_runs(tmp_path, monkeypatch) -> None:
    import hashlib

    import leelalab

    monkeypatch.delenv("LEELALAB_PUZZLES", raising=False)
    monkeypatch.chdir(tmp_path)
    path = shipped_puzzles_path()
    package = Path(leelalab.__file__).resolve().parent
    assert path == package / "data" / "puzzles" / "lichess_sample.csv"
    # The bytes the sample had at puzzles/lichess_sample.csv, so recorded runs still resume.
    digest = "1adeed3ee5b0d0420d3df8bbffeb2775c75320d68b0a8afe699f957dcbf40b72"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    monkeypatch.setenv("LEELALAB_PUZZLES", str(tmp_path / "gone.csv"))
    with pytest.raises(PuzzleFileError, match=r"gone.csv: .*not found; pass --input PATH"):
        shipped_puzzles_path()


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


def _sample_text(rows: int) -> tuple[str, list[str]]:
    """The shipped sample's header and its first ``rows`` rows (real Lichess rows)."""
    lines = shipped_puzzles_path().read_text(encoding="utf-8").splitlines(keepends=True)
    return lines[0], lines[1 : rows + 1]


@pytest.mark.parametrize("rows_after", [5, 2000])
def test_a_stray_quote_costs_only_its_own_row(tmp_path: Path, rows_after: int) -> None:
    """A stray quote used to swallow the following rows into one field (short files) or
    stop the run with "field larger than field limit" (long files)."""
    header, rows = _sample_text(rows_after + 3)
    broken = rows[2].replace(",", ',"', 1)  # an unbalanced quote in the 3rd row
    path = tmp_path / "quote.csv"
    path.write_text(header + "".join(rows[:2] + [broken] + rows[3:]), encoding="utf-8")
    report = SkipReport()
    ids = [p.id for p in iter_puzzles(path, report=report)]
    expected = [row.split(",")[0] for row in rows[:2] + rows[3:]]
    assert ids == expected
    assert report.skipped == {"malformed row (unbalanced quotes)": 1}
    assert report.lines == {"malformed row (unbalanced quotes)": [4]}
    # A quote inside an otherwise well-formed field is just a bad value of that row.
    path.write_text(header + rows[0] + rows[1].replace(" ", '"', 1) + rows[2], encoding="utf-8")
    report = SkipReport()
    assert len(list(iter_puzzles(path, report=report))) == 2 and report.rows == 3


def test_byte_order_mark_and_crlf_line_endings(tmp_path: Path) -> None:
    header, rows = _sample_text(20)
    path = tmp_path / "bom.csv"
    path.write_bytes(("\ufeff" + header + "".join(rows)).replace("\n", "\r\n").encode("utf-8"))
    report = SkipReport()
    puzzles = list(iter_puzzles(path, report=report))
    assert len(puzzles) == 20 and not report.skipped
    assert puzzles[0].id == rows[0].split(",")[0] and puzzles[-1].themes  # no stray "\r"
    assert report.bytes_read == report.size == path.stat().st_size


def test_invalid_utf8_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    header, rows = _sample_text(10)
    path = tmp_path / "latin1.csv"
    path.write_bytes((header + "".join(rows[:6])).encode() + "caf\xe9,x\n".encode("latin-1"))
    with pytest.raises(PuzzleFileError, match=r"latin1\.csv: line 8 is not UTF-8"):
        list(iter_puzzles(path))
    binary = tmp_path / "binary.csv"  # e.g. a gzipped CSV under a .csv name
    binary.write_bytes(gzip.compress((header + "".join(rows)).encode()))
    with pytest.raises(PuzzleFileError, match=r"binary\.csv: line 1 is not UTF-8"):
        list(iter_puzzles(binary))


def test_empty_and_headerless_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(PuzzleFileError, match="empty file"):
        list(iter_puzzles(empty))
    header, rows = _sample_text(3)
    headerless = tmp_path / "headerless.csv"
    headerless.write_text("".join(rows))
    with pytest.raises(PuzzleFileError, match="header, line 1, lacks the columns"):
        list(iter_puzzles(headerless))


def test_an_overlong_line_costs_only_itself(tmp_path: Path) -> None:
    header, rows = _sample_text(4)
    path = tmp_path / "long.csv"
    path.write_text(header + rows[0] + "x" * 200_000 + "\n" + "".join(rows[1:]))
    report = SkipReport()
    assert len(list(iter_puzzles(path, report=report))) == 4
    assert report.lines == {"malformed row (line too long)": [3]}


def test_zstd_that_is_not_zstd_or_is_truncated_is_an_error(tmp_path: Path) -> None:
    header, rows = _sample_text(2000)
    text = (header + "".join(rows)).encode()
    compressed = zstandard.ZstdCompressor(level=3).compress(text)
    whole = tmp_path / "whole.csv.zst"
    whole.write_bytes(compressed)
    report = SkipReport()
    assert len(list(iter_puzzles(whole, report=report))) == 2000
    assert report.bytes_read == report.size == len(compressed)
    # Cut anywhere, the stream is an error, never a shorter success: the old reader read
    # the first part and stopped quietly ("0 skipped").
    for cut in (len(compressed) // 3, len(compressed) - 1):
        truncated = tmp_path / f"cut{cut}.csv.zst"
        truncated.write_bytes(compressed[:cut])
        with pytest.raises(
            PuzzleFileError, match=r"cut\d+\.csv\.zst: the zstd stream is truncated"
        ):
            list(iter_puzzles(truncated))
    fake = tmp_path / "fake.csv.zst"
    fake.write_bytes(text)
    with pytest.raises(PuzzleFileError, match=r"fake\.csv\.zst: not a valid zstd file"):
        list(iter_puzzles(fake))
    # Concatenated frames (e.g. `zstd` run on parts, then `cat`) are one file.
    half = len(header) + sum(len(r) for r in rows[:1000])
    frames = tmp_path / "frames.csv.zst"
    frames.write_bytes(
        zstandard.ZstdCompressor().compress(text[:half])
        + zstandard.ZstdCompressor().compress(text[half:])
    )
    assert len(list(iter_puzzles(frames))) == 2000


def test_check_puzzle_file_reads_only_the_header(tmp_path: Path) -> None:
    from leelalab.puzzles.reader import check_puzzle_file

    check_puzzle_file(shipped_puzzles_path())
    with pytest.raises(PuzzleFileError, match="no such puzzle file"):
        check_puzzle_file(tmp_path / "missing.csv")
    (tmp_path / "other.csv").write_text("a,b\n")
    with pytest.raises(PuzzleFileError, match="not a Lichess puzzle CSV"):
        check_puzzle_file(tmp_path / "other.csv")
