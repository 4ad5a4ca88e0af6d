"""The strong/weak puzzle filter: probabilities, filter rules, resumability, export contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leelalab.cli import main
from leelalab.errors import LeelaLabError
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models.evaluation import evaluate
from leelalab.puzzles.filter import (
    LineEvaluation,
    Thresholds,
    evaluate_lines,
    export_dataset,
    filter_puzzles,
    line_boards,
    puzzle_filters,
)
from leelalab.puzzles.reader import Puzzle, iter_puzzles, shipped_puzzles_path


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    strong = save_weights(random_resnet_weights(seed=1, filters=16), folder / "strong.pb.gz")
    weak = save_weights(random_resnet_weights(seed=2, filters=8), folder / "weak.pb.gz")
    return load_network(strong), load_network(weak)


def _puzzle(moves: str, themes: str = "") -> Puzzle:
    return Puzzle(
        "x",
        "r6k/pp2r2p/4Rp1Q/3p4/8/1N1P2R1/PqP2bPP/7K b - - 0 24",
        tuple(moves.split()),
        1500,
        tuple(themes.split()),
    )


def test_line_probabilities_equal_evaluate(nets) -> None:
    strong, _ = nets
    puzzles = list(iter_puzzles(shipped_puzzles_path(), limit=12))
    lines = evaluate_lines(strong, puzzles, batch_size=7)
    for puzzle, line in zip(puzzles, lines, strict=True):
        boards = line_boards(puzzle)
        assert len(boards) == len(puzzle.moves) - 1 == len(line.pv_probs)
        assert [m.uci() for m in boards[0].move_stack] == [puzzle.moves[0]]
        for board, move, probability, top in zip(
            boards, puzzle.moves[1:], line.pv_probs, line.top_moves, strict=True
        ):
            reference = evaluate(strong, board)[0]
            assert probability == pytest.approx(reference.policy[move], rel=1e-5, abs=1e-7)
            assert top == next(iter(reference.policy))


def test_shared_evaluation_across_input_formats_equals_evaluate() -> None:
    """Two networks, one of them canonicalising (several transforms in a batch), evaluated
    together with batches that cut through puzzles."""
    from leelalab.models import build_network
    from leelalab.puzzles.filter import evaluate_lines_together

    classical = build_network(random_resnet_weights(seed=7)).eval()
    canonical = build_network(random_resnet_weights(seed=8, input_format=3)).eval()
    puzzles = list(iter_puzzles(shipped_puzzles_path(), limit=15))
    together = evaluate_lines_together(
        [(classical, "lc0"), (canonical, "none")], puzzles, batch_size=11
    )
    for network, history, lines in (
        (classical, "lc0", together[0]),
        (canonical, "none", together[1]),
    ):
        for puzzle, line in zip(puzzles, lines, strict=True):
            boards = line_boards(puzzle)
            references = evaluate(network, boards, history=history)
            for move, probability, top, wdl, reference in zip(
                puzzle.moves[1:],
                line.pv_probs,
                line.top_moves,
                line.wdl,
                references,
                strict=True,
            ):
                assert probability == pytest.approx(reference.policy[move], rel=1e-5, abs=1e-7)
                assert top == next(iter(reference.policy))
                # Equal up to float32 rounding (other batches, other kernels).
                assert wdl == pytest.approx(list(reference.wdl), rel=1e-5, abs=1e-6)


def test_filter_rules_on_hand_built_lines() -> None:
    t = Thresholds()
    puzzle = _puzzle("f2g3 e6e7 b2b1 b3c1 b1c1 h6c1")
    strong = LineEvaluation(pv_probs=[0.9, 0.2, 0.6, 0.1, 0.51])
    weak = LineEvaluation(pv_probs=[0.04, 0.8, 0.1, 0.1, 0.1])
    flags = puzzle_filters(puzzle, strong, weak, t)
    assert flags == {
        "not_mate_in_1": True,
        "pv_length": True,
        "hard": True,
        "correct": True,
        "forcing": True,
        "different_targets": True,
    }
    # "correct" needs every solver move (plies 0, 2, 4) above 0.5, not the opponent's.
    assert not puzzle_filters(puzzle, LineEvaluation([0.9, 0.9, 0.9, 0.9, 0.5]), weak, t)["correct"]
    assert not puzzle_filters(puzzle, strong, LineEvaluation([0.05, 0.8]), t)["hard"]
    assert not puzzle_filters(puzzle, strong, LineEvaluation([0.01, 0.7]), t)["forcing"]
    assert not puzzle_filters(_puzzle("f2g3 e6e7 b2b1", "mateIn1 short"), strong, weak, t)[
        "not_mate_in_1"
    ]
    short = puzzle_filters(_puzzle("f2g3 e6e7 b2b1"), strong, weak, t)
    assert not short["pv_length"] and not short["different_targets"]
    # Targets of the 1st, 2nd and 3rd moves: e7, e2, e2 are not pairwise distinct.
    repeated = Puzzle("z", puzzle.fen, ("f2g3", "e6e7", "b2e2", "e7e2"), None, ())
    assert not puzzle_filters(repeated, strong, weak, Thresholds())["different_targets"]


def test_resume_after_interruption_gives_identical_output(nets, tmp_path: Path) -> None:
    strong, weak = nets
    source = shipped_puzzles_path()
    full = filter_puzzles(
        strong, weak, source, tmp_path / "a", limit=60, chunk_size=16, progress=False
    )
    expected = (tmp_path / "a" / "dataset.jsonl").read_text()
    # Simulate a run killed after two chunks: later chunks missing, a half-written temp file.
    partial = tmp_path / "b"
    filter_puzzles(strong, weak, source, partial, limit=60, chunk_size=16, progress=False)
    for chunk in sorted((partial / "chunks").glob("*.jsonl"))[2:]:
        chunk.unlink()
    (partial / "chunks" / "00002.jsonl.tmp").write_text('{"truncated": ')
    (partial / "dataset.jsonl").unlink()
    resumed = filter_puzzles(strong, weak, source, partial, limit=60, chunk_size=16, progress=False)
    assert (partial / "dataset.jsonl").read_text() == expected
    assert resumed.counts == full.counts and full.counts["puzzles"] == 60
    run = json.loads((partial / "run.json").read_text())
    assert run["stage_counts"] == full.counts and len(run["input_sha256"]) == 64
    assert run["strong"]["sha256"] == strong.sha256 and run["thresholds"]["hard"] == 0.05
    with pytest.raises(
        LeelaLabError, match=r"other settings \(differing: limit\); pass --overwrite"
    ):
        filter_puzzles(strong, weak, source, partial, limit=61, chunk_size=16, progress=False)


def test_export_contract(nets, tmp_path: Path) -> None:
    strong, weak = nets
    filter_puzzles(strong, weak, shipped_puzzles_path(), tmp_path, limit=20, progress=False)
    assert export_dataset(tmp_path, tmp_path / "out.jsonl") == 20
    for line in (tmp_path / "out.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert set(record) == {
            "id",
            "fen",
            "moves",
            "strong_pv_probs",
            "weak_pv_probs",
            "strong_wdl",
            "filters",
            "selected",
            "corruption",
        }
        assert (
            len(record["strong_pv_probs"]) == len(record["moves"]) - 1 == len(record["strong_wdl"])
        )
        assert set(record["filters"]) == {
            "not_mate_in_1",
            "pv_length",
            "hard",
            "correct",
            "forcing",
            "different_targets",
        }
    with pytest.raises(LeelaLabError, match="no such dataset directory"):
        export_dataset(tmp_path / "missing", tmp_path / "x.jsonl")


def test_cli_filter_and_export(nets, tmp_path: Path, capsys) -> None:
    strong, weak = nets
    args = [
        "puzzles",
        "filter",
        "--strong",
        strong.source,
        "--weak",
        weak.source,
        "--output",
        str(tmp_path / "run"),
        "--limit",
        "10",
        "--no-progress",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "10 rows read" in out and "selected" in out
    assert main(["puzzles", "export", str(tmp_path / "run"), str(tmp_path / "out.jsonl")]) == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 10


def test_cli_show_writes_pdf_and_png(nets, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="needs the viz extra")
    strong, weak = nets
    filter_puzzles(strong, weak, shipped_puzzles_path(), tmp_path / "run", limit=5, progress=False)
    puzzle_id = next(
        p.id for p in iter_puzzles(shipped_puzzles_path(), limit=5) if len(p.moves) >= 4
    )
    assert (
        main(
            [
                "puzzles",
                "show",
                str(tmp_path / "run"),
                "--id",
                puzzle_id,
                "--out",
                str(tmp_path / "fig.pdf"),
            ]
        )
        == 0
    )
    assert (tmp_path / "fig.pdf").stat().st_size > 0 and (tmp_path / "fig.png").stat().st_size > 0
    assert main(["puzzles", "show", str(tmp_path / "run"), "--id", "nope", "--out", "x.pdf"]) == 1


def test_cli_show_draws_the_corrupted_twin(nets, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("matplotlib", reason="needs the viz extra")
    import chess

    import leelalab.plots.boards as boards

    strong, weak = nets
    filter_puzzles(strong, weak, shipped_puzzles_path(), tmp_path / "run", limit=5, progress=False)
    puzzle = next(p for p in iter_puzzles(shipped_puzzles_path(), limit=5) if len(p.moves) >= 4)
    board = puzzle.board(plies=1)
    first = chess.Move.from_uci(puzzle.moves[1])
    square = next(  # an edit: remove one piece that is neither a king nor the 1st move's
        s
        for s, piece in board.piece_map().items()
        if piece.piece_type != chess.KING and s not in (first.from_square, first.to_square)
    )
    board.remove_piece_at(square)
    corruption = {"fen": board.fen(), "squares": [chess.square_name(square)], "kind": "remove"}
    line = json.dumps({"id": puzzle.id, "corruption": corruption})
    (tmp_path / "run" / "corruptions.jsonl").write_text(line + "\n")
    drawn = []
    monkeypatch.setattr(boards, "save_figure", lambda figure, path: drawn.append(figure) or [])
    assert main(["puzzles", "show", str(tmp_path / "run"), "--id", puzzle.id, "--out", "x"]) == 0
    (figure,) = drawn
    assert [ax.get_title() for ax in figure.axes[:2]] == [
        "Puzzle (move 1 to play)",
        "Corrupted twin (remove)",
    ]


@pytest.mark.slow
def test_kill_9_then_resume_gives_identical_output(nets, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    strong, weak = nets
    args = [
        sys.executable,
        "-m",
        "leelalab.cli",
        "puzzles",
        "filter",
        "--strong",
        strong.source,
        "--weak",
        weak.source,
        "--limit",
        "400",
        "--chunk-size",
        "40",
        "--no-progress",
    ]
    subprocess.run(
        [*args, "--output", str(tmp_path / "reference")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    process = subprocess.Popen(
        [*args, "--output", str(tmp_path / "killed")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    chunks = tmp_path / "killed" / "chunks"
    deadline = time.time() + 300
    while (
        len(list(chunks.glob("*.jsonl"))) < 3 and time.time() < deadline and process.poll() is None
    ):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "dataset.jsonl").exists()  # it really died mid-run
    subprocess.run(
        [*args, "--output", str(tmp_path / "killed")], check=True, capture_output=True, timeout=600
    )
    reference = (tmp_path / "reference" / "dataset.jsonl").read_text()
    assert (tmp_path / "killed" / "dataset.jsonl").read_text() == reference


def test_preparation_errors_reach_the_caller(nets) -> None:
    """The preparation thread's exception (here: a line move that is not legal, in the
    second batch) is raised by evaluate_lines, not swallowed."""
    strong, _ = nets
    good = list(iter_puzzles(shipped_puzzles_path(), limit=3))
    bad = Puzzle("bad", good[0].fen, (good[0].moves[0], "a1a1"), None, ())
    with pytest.raises(ValueError):
        evaluate_lines(strong, [*good, bad], batch_size=2)


def test_legal_move_indices_equal_legal_moves_and_indices() -> None:
    import chess

    from leelalab.lc0 import policy_map

    boards = [b for p in iter_puzzles(shipped_puzzles_path(), limit=20) for b in line_boards(p)]
    boards.append(chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1"))  # castling both ways
    boards.append(chess.Board("8/P6k/8/8/8/8/6Kp/8 w - - 0 1"))  # promotions
    for board in boards:
        for transform in range(8):
            try:
                moves, expected = policy_map.legal_moves_and_indices(board, transform)
            except Exception as error:  # noqa: BLE001 - the same error must come back
                with pytest.raises(type(error)):
                    policy_map.legal_move_indices(board, list(board.legal_moves), transform)
                continue
            assert policy_map.legal_move_indices(board, moves, transform).tolist() == (
                expected.tolist()
            )


def test_filter_output_directory_life_cycle(nets, tmp_path: Path) -> None:
    from leelalab.puzzles.reader import PuzzleFileError
    from leelalab.runs.results import ResultsError

    strong, weak = nets
    options = dict(limit=12, chunk_size=8, progress=False)
    # A missing input creates nothing.
    with pytest.raises(PuzzleFileError, match="no such puzzle file"):
        filter_puzzles(strong, weak, tmp_path / "missing.csv", tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()
    source = tmp_path / "in" / "puzzles.csv"
    source.parent.mkdir()
    source.write_bytes(shipped_puzzles_path().read_bytes())
    first = filter_puzzles(strong, weak, source, tmp_path / "out", **options)
    expected = (tmp_path / "out" / "dataset.jsonl").read_text()
    # The same file spelled with another path (a relative one, through a symlink): complete.
    (tmp_path / "link").symlink_to(tmp_path / "in")
    again = filter_puzzles(
        strong, weak, tmp_path / "link" / "puzzles.csv", tmp_path / "out", **options
    )
    assert again.already_complete and again.counts == first.counts
    assert again.report.rows == first.report.rows == 12
    # Other settings: refused; with overwrite: replaced.
    with pytest.raises(ResultsError, match=r"differing: limit\); pass --overwrite"):
        filter_puzzles(
            strong, weak, source, tmp_path / "out", limit=6, chunk_size=8, progress=False
        )
    replaced = filter_puzzles(
        strong,
        weak,
        source,
        tmp_path / "out",
        limit=6,
        chunk_size=8,
        progress=False,
        overwrite=True,
    )
    assert replaced.counts["puzzles"] == 6 and not replaced.already_complete
    assert (tmp_path / "out" / "dataset.jsonl").read_text() == "".join(
        expected.splitlines(keepends=True)[:6]
    )


def test_a_truncated_input_fails_and_is_never_a_shorter_dataset(nets, tmp_path: Path) -> None:
    import zstandard

    from leelalab.puzzles.reader import PuzzleFileError

    strong, weak = nets
    lines = shipped_puzzles_path().read_text().splitlines(keepends=True)
    # Frames of 10 rows (as pzstd writes them; zstd decodes a frame in 128 KiB blocks), the
    # last one cut short.
    frames = [
        zstandard.ZstdCompressor().compress("".join(lines[i : i + 10]).encode())
        for i in range(0, 41, 10)
    ]
    cut = tmp_path / "cut.csv.zst"
    cut.write_bytes(b"".join(frames[:-1]) + frames[-1][:-5])
    # The end of the file comes after the first chunks were written: they are kept (to
    # resume once the file is whole) but no dataset is written.
    with pytest.raises(PuzzleFileError, match="truncated"):
        filter_puzzles(strong, weak, cut, tmp_path / "late", chunk_size=8, progress=False)
    assert (tmp_path / "late" / "chunks" / "00000.jsonl").is_file()
    assert not (tmp_path / "late" / "dataset.jsonl").exists()
    # Before the first chunk: nothing is left behind.
    with pytest.raises(PuzzleFileError, match="truncated"):
        filter_puzzles(strong, weak, cut, tmp_path / "early", chunk_size=64, progress=False)
    assert not (tmp_path / "early").exists()


def test_filter_progress_runs_over_the_input_bytes(nets, tmp_path: Path, capsys) -> None:
    strong, weak = nets
    lines = shipped_puzzles_path().read_text().splitlines(keepends=True)
    source = tmp_path / "p.csv"
    source.write_text("".join(lines[:30]))
    filter_puzzles(strong, weak, source, tmp_path / "out", chunk_size=8, batch_size=16)
    err = capsys.readouterr().err
    size = source.stat().st_size
    assert "100%" in err and f"{size / 1024:.2f}k/{size / 1024:.2f}k" in err


def test_corrupt_checks_its_dataset_records_timing_and_refuses_other_settings(
    nets, tmp_path: Path, monkeypatch
) -> None:
    import leelalab.puzzles.corruptions as corruptions
    from leelalab.puzzles.corruptions import CorruptionThresholds
    from leelalab.puzzles.dataset import DatasetError, dataset_settings, write_pairs_dataset
    from leelalab.puzzles.filter import corrupt_dataset, find_record
    from positions import corrupted_puzzles

    strong, weak = nets
    with pytest.raises(DatasetError, match="no such dataset directory"):
        corrupt_dataset(tmp_path / "nowhere", strong, weak)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"not a filtered dataset \(no dataset.jsonl"):
        corrupt_dataset(tmp_path / "empty", strong, weak)
    with pytest.raises(DatasetError, match="no dataset.jsonl"):
        dataset_settings(tmp_path / "empty")

    data = tmp_path / "data"
    write_pairs_dataset(data, corrupted_puzzles(2))
    (data / "corruptions.jsonl").unlink()
    with pytest.raises(DatasetError, match="no settings.json"):
        dataset_settings(data)
    loose = CorruptionThresholds(
        weak_log_odds_change=5.0, strong_q_drop=-1.0, strong_max_prob=1.0, max_jsd=1.0
    )
    counts = corrupt_dataset(data, strong, weak, loose, progress=False)
    assert counts == {"selected": 2, "corrupted": 2}
    record = json.loads((data / "run.json").read_text())["corruption"]
    assert record["seconds"] > 0 and record["counts"] == counts and "versions" in record
    assert record["settings"]["thresholds"]["max_jsd"] == 1.0
    written = (data / "corruptions.jsonl").read_text()

    def never(*args, **kwargs):
        raise AssertionError("a complete corruption run must not be redone")

    monkeypatch.setattr(corruptions, "find_corruption", never)
    assert corrupt_dataset(data, strong, weak, loose, progress=False) == counts
    with pytest.raises(DatasetError, match="made with other settings; pass --overwrite"):
        corrupt_dataset(data, strong, weak, progress=False)
    assert (data / "corruptions.jsonl").read_text() == written
    monkeypatch.undo()
    strict = CorruptionThresholds(weak_log_odds_change=0.0)
    assert corrupt_dataset(data, strong, weak, strict, progress=False, overwrite=True) == {
        "selected": 2,
        "corrupted": 0,
    }
    # Corruptions of unknown origin are not silently replaced either.
    (data / "run.json").unlink()
    with pytest.raises(DatasetError, match="made by an earlier run; pass --overwrite"):
        corrupt_dataset(data, strong, weak, strict, progress=False)

    # Malformed dataset lines are one error with the file and line.
    with (data / "dataset.jsonl").open("a") as handle:
        handle.write('{"id": "broken", \n')
    with pytest.raises(DatasetError, match=r"dataset.jsonl:3: not JSON"):
        find_record(data, "nope")
    # (These hand-written records lack the filter's numbers: also one clear line.)
    with pytest.raises(DatasetError, match=r"record '\w+' lacks \['strong_pv_probs'"):
        export_dataset(data, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.jsonl.tmp").exists()


def test_export_keeps_the_fen_with_its_en_passant_square(nets, tmp_path: Path) -> None:
    strong, weak = nets
    source = tmp_path / "ep.csv"
    lines = shipped_puzzles_path().read_text().splitlines(keepends=True)
    # A puzzle whose FEN has an en-passant square (white can take on d6 with e5xd6).
    ep_fen = "r1bqkbnr/ppp1pppp/2n5/3pP3/8/8/PPPP1PPP/RNBQKBNR w KQkq d6 0 3"
    source.write_text(lines[0] + lines[1] + f"ep001,{ep_fen},e5d6 e7d6 d1g4 c8g4,1500,,,,,,\n")
    filter_puzzles(strong, weak, source, tmp_path / "run", progress=False)
    assert export_dataset(tmp_path / "run", tmp_path / "out.jsonl") == 2
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert records[0]["fen"] == lines[1].split(",")[1]
    assert records[1]["fen"] == ep_fen and records[1]["moves"][0] == "e5d6"


def test_filter_settings_validate_and_take_the_older_keywords() -> None:
    from leelalab.puzzles.settings import FilterSettings, Thresholds
    from leelalab.runs.experiment import SettingsError

    with pytest.raises(SettingsError, match="--hard"):
        Thresholds(hard=1.5)
    with pytest.raises(SettingsError, match="--min-pv-plies"):
        FilterSettings(min_pv_plies=0)
    with pytest.raises(SettingsError, match="--strong-history"):
        FilterSettings(strong_history="sometimes")
    older = FilterSettings.from_options({"thresholds": Thresholds(hard=0.2), "limit": 5})
    assert older == FilterSettings(hard=0.2, limit=5)
    assert older.thresholds == Thresholds(hard=0.2)
    with pytest.raises(TypeError, match="bogus"):
        FilterSettings.from_options({"bogus": 1})


def test_line_boards_with_the_final_position() -> None:
    import chess

    from leelalab.puzzles.filter import line_boards

    start = chess.STARTING_FEN
    puzzle = Puzzle("p", start, ("e2e4", "e7e5", "g1f3", "b8c6"))
    boards = line_boards(puzzle)
    assert [b.move_stack[-1].uci() for b in boards] == ["e2e4", "e7e5", "g1f3"]
    with_final = line_boards(puzzle, final=True)
    assert with_final[:-1] == boards
    assert [m.uci() for m in with_final[-1].move_stack] == list(puzzle.moves)
