"""The ``leelalab`` command line: a thin layer over the library.

Every command reports bad input (a missing or corrupt network, a bad FEN, an illegal move)
as one line on stderr and exits with status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import chess

from leelalab.errors import LeelaLabError, PositionError

HISTORY_CHOICES = ("lc0", "none", "repeat")


def _print_table(rows: Sequence[Sequence[str]], out: TextIO, align: str = "") -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        cells = [
            cell.rjust(width) if align[i : i + 1] == "r" else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)
        if number == 0:
            print("  ".join("-" * width for width in widths), file=out)


def cmd_info(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import resolve_network
    from leelalab.lc0.weights import load_weights

    description = load_weights(resolve_network(args.net)).describe()
    if args.json:
        print(json.dumps(description.to_dict(), indent=2))
    else:
        print(description)
    return 0


def _read_positions(path: Path) -> Iterator[chess.Board]:
    from leelalab.lc0.encoding import board_from_fen_and_moves

    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                fen = record["fen"]
                moves = record.get("moves", [])
                if not isinstance(fen, str) or not isinstance(moves, list):
                    raise TypeError
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise PositionError(
                    f"{path} line {number}: expected a JSON object "
                    '{"fen": "...", "moves": ["e2e4", ...]}'
                ) from None
            try:
                yield board_from_fen_and_moves(fen, [str(move) for move in moves])
            except PositionError as error:
                raise PositionError(f"{path} line {number}: {error}") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import load_network
    from leelalab.lc0.encoding import board_from_fen_and_moves
    from leelalab.models.evaluation import iter_evaluate

    if args.fen is not None:
        board = board_from_fen_and_moves(args.fen, args.moves or [])
    if args.backend == "ort":
        from leelalab.inference.networks import onnxruntime_network

        network = onnxruntime_network(args.net)
    else:
        network = load_network(args.net, device=args.device)
    if args.fen is not None:
        evaluation = next(iter_evaluate(network, [board], history=args.history))
        if args.json:
            print(json.dumps(evaluation.to_json()))
            return 0
        print(f"position: {board.fen()}  ({'white' if board.turn else 'black'} to move)")
        rows = [["move", "san", "probability"]]
        for uci, probability in evaluation.top_moves(args.top):
            rows.append([uci, board.san(chess.Move.from_uci(uci)), f"{probability:.4f}"])
        _print_table(rows, sys.stdout, align="llr")
        w, d, l = evaluation.wdl
        moves_left = "n/a" if evaluation.moves_left is None else f"{evaluation.moves_left:.1f}"
        print(
            f"W/D/L: {w:.4f} / {d:.4f} / {l:.4f}   Q: {evaluation.q:+.4f}   "
            f"moves left: {moves_left}"
        )
        return 0
    output = Path(args.output)
    partial = output.with_name(output.name + ".partial")
    count = 0
    try:
        with partial.open("w", encoding="utf-8") as handle:
            boards = _read_positions(Path(args.positions))
            for evaluation in iter_evaluate(
                network,
                boards,
                history=args.history,
                batch_size=args.batch_size,
                compile=args.compile,
            ):
                handle.write(json.dumps(evaluation.to_json()) + "\n")
                count += 1
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {count} evaluations to {output}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import load_network
    from leelalab.puzzles.demo import evaluate_puzzle_starts
    from leelalab.puzzles.reader import shipped_puzzles_path

    path = Path(args.puzzles) if args.puzzles else shipped_puzzles_path()
    network = load_network(args.net, device=args.device)
    summary = evaluate_puzzle_starts(
        network,
        path,
        limit=args.limit,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        compile=args.compile,
    )
    print(
        f"network: {args.net}   puzzles: {path}   history: lc0 (from the puzzle FEN + the "
        "opponent's move)"
    )
    print(summary.report)
    print()
    _print_table(summary.table(), sys.stdout, align="lrrrr")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from leelalab.inference.convert import convert
    from leelalab.lc0.weights.enums import Encoding

    encoding = Encoding[args.encoding.upper()]
    path = convert(args.net, args.output, input_format=args.input_format, encoding=encoding)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_puzzles_filter(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import load_network
    from leelalab.puzzles.filter import Thresholds, filter_puzzles
    from leelalab.puzzles.reader import shipped_puzzles_path

    strong = load_network(args.strong, device=args.device)
    from leelalab.inference.networks import default_weak_network

    weak_name = args.weak or default_weak_network(args.strong)
    weak = load_network(weak_name, device=args.device)
    thresholds = Thresholds(
        hard=args.hard, correct=args.correct, forcing=args.forcing, min_pv_plies=args.min_pv_plies
    )
    run = filter_puzzles(
        strong,
        weak,
        Path(args.input) if args.input else shipped_puzzles_path(),
        args.output,
        thresholds=thresholds,
        strong_history=args.strong_history,
        weak_history=args.weak_history,
        limit=args.limit,
        sample=args.sample,
        seed=args.seed,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    print(run.report)
    rows = [["stage", "puzzles"]] + [[name, str(count)] for name, count in run.counts.items()]
    _print_table(rows, sys.stdout, align="lr")
    print(f"wrote {run.output / 'dataset.jsonl'} and run.json in {run.seconds:.1f} s")
    return 0


def cmd_puzzles_corrupt(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import default_weak_network, load_network
    from leelalab.puzzles.filter import corrupt_dataset

    run = json.loads((Path(args.directory) / "settings.json").read_text())
    strong = load_network(args.strong or run["strong"]["source"])
    weak = load_network(args.weak or run["weak"]["source"] or default_weak_network(args.strong))
    counts = corrupt_dataset(
        args.directory, strong, weak, stockfish=args.stockfish, progress=not args.no_progress
    )
    print(f"{counts['corrupted']} of {counts['selected']} selected puzzles have a corruption")
    return 0


def cmd_puzzles_show(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import load_network
    from leelalab.models.evaluation import evaluate
    from leelalab.plots.boards import puzzle_figure, save_figure
    from leelalab.puzzles.filter import find_record, line_boards
    from leelalab.puzzles.reader import Puzzle

    record = find_record(args.directory, args.id)
    settings = json.loads((Path(args.directory) / "settings.json").read_text())
    network = load_network(args.net or settings["strong"]["source"])
    puzzle = Puzzle(record["id"], record["fen"], tuple(record["moves"]))
    boards = line_boards(puzzle)[:3]
    evaluations = evaluate(network, boards, history=settings["strong"]["history"])
    figure = puzzle_figure(
        puzzle.fen, puzzle.moves, [e.policy for e in evaluations], title=f"Puzzle {puzzle.id}"
    )
    for path in save_figure(figure, args.out):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_puzzles_export(args: argparse.Namespace) -> int:
    from leelalab.puzzles.filter import export_dataset

    count = export_dataset(args.directory, args.output)
    print(f"wrote {count} puzzles to {args.output}", file=sys.stderr)
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import load_network
    from leelalab.training.distill import DistillConfig, distill

    config = DistillConfig(
        positions=args.positions,
        blocks=args.blocks,
        filters=args.filters,
        epochs=args.epochs,
        seed=args.seed,
    )
    report = distill(load_network(args.teacher), args.out, config, progress=not args.no_progress)
    print(f"wrote {args.out} (and {args.out}.run.json)")
    print(
        f"held-out agreement with the teacher: top-1 {report.top1_agreement:.1%}, "
        f"KL {report.policy_kl:.3f}, W/D/L MAE {report.wdl_mae:.3f}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from leelalab._version import __version__

    parser = argparse.ArgumentParser(
        prog="leelalab",
        description="Leela Chess Zero networks in PyTorch, identical to lc0.",
    )
    parser.add_argument("--version", action="version", version=f"leelalab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="describe a network file")
    info.add_argument("net", help="a .pb.gz/.pb file or a bundled name (maia-1900)")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(run=cmd_info)

    evaluate = commands.add_parser("eval", help="evaluate positions with a network")
    evaluate.add_argument("net", help="a .pb.gz/.pb file or a bundled name (maia-1900)")
    evaluate.add_argument("--fen", help="one position (FEN); history comes from --moves")
    evaluate.add_argument("--moves", nargs="*", metavar="UCI", help="moves played from --fen")
    evaluate.add_argument("--positions", help='JSONL input, lines {"fen": ..., "moves": [...]}')
    evaluate.add_argument("--output", help="JSONL output, one line per input line, same order")
    evaluate.add_argument(
        "--history",
        choices=HISTORY_CHOICES,
        default="lc0",
        help="history planes: as lc0 (default), zeroed, or repeated",
    )
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    evaluate.add_argument(
        "--compile", action="store_true", help="torch.compile the network (faster long runs)"
    )
    evaluate.add_argument(
        "--backend",
        choices=("torch", "ort"),
        default="torch",
        help="torch: the native module (default); ort: onnxruntime (outputs only, no hooks)",
    )
    evaluate.add_argument("--top", type=int, default=10, help="moves shown in the table")
    evaluate.add_argument("--json", action="store_true", help="print the JSON record (--fen)")
    evaluate.set_defaults(run=cmd_eval)

    convert = commands.add_parser(
        "convert", help="convert a network between .pb.gz/.pb, .onnx and .safetensors"
    )
    convert.add_argument("net", help="a .pb.gz/.pb, .onnx (lc0 leela2onnx) or .safetensors file")
    convert.add_argument("output", help="the output file; its suffix picks the format")
    convert.add_argument(
        "--encoding",
        choices=("linear16", "float16", "bfloat16", "float32"),
        default="linear16",
        help=".pb.gz layer encoding: linear16 (every lc0, lossy) or float (lc0 >= 0.33)",
    )
    convert.add_argument(
        "--input-format", type=int, default=1, help="input format of an .onnx source (default 1)"
    )
    convert.set_defaults(run=cmd_convert)

    puzzles = commands.add_parser("puzzles", help="the Lichess puzzle pipeline")
    puzzle_commands = puzzles.add_subparsers(dest="puzzles_command", required=True)
    filtering = puzzle_commands.add_parser(
        "filter", help="evaluate puzzles with a strong and a weak network and filter them"
    )
    filtering.add_argument("--strong", default="maia-1900", help="strong network")
    filtering.add_argument(
        "--weak", help="weak network (default for maia-1900: the shipped weak-maia-1900)"
    )
    filtering.add_argument("--input", help="Lichess puzzle CSV or .csv.zst (default: shipped)")
    filtering.add_argument("--output", required=True, help="output directory (resumable)")
    filtering.add_argument("--limit", type=int, help="first N valid puzzles only")
    filtering.add_argument("--sample", type=int, help="a seeded random sample of N puzzles")
    filtering.add_argument("--seed", type=int, default=0, help="seed of --sample")
    filtering.add_argument("--hard", type=float, default=0.05)
    filtering.add_argument("--correct", type=float, default=0.5)
    filtering.add_argument("--forcing", type=float, default=0.7)
    filtering.add_argument("--min-pv-plies", type=int, default=3)
    filtering.add_argument("--strong-history", choices=HISTORY_CHOICES, default="lc0")
    filtering.add_argument("--weak-history", choices=HISTORY_CHOICES, default="lc0")
    filtering.add_argument("--chunk-size", type=int, default=1024)
    filtering.add_argument("--batch-size", type=int, default=256)
    filtering.add_argument("--device", default="cpu")
    filtering.add_argument("--no-progress", action="store_true")
    filtering.set_defaults(run=cmd_puzzles_filter)
    corrupt = puzzle_commands.add_parser(
        "corrupt", help="find a corrupted twin for every selected puzzle"
    )
    corrupt.add_argument("directory")
    corrupt.add_argument("--strong", help="default: the network the filter used")
    corrupt.add_argument("--weak", help="default: the network the filter used")
    corrupt.add_argument(
        "--stockfish",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="keep only corruptions Stockfish confirms (Debian: apt-get install stockfish)",
    )
    corrupt.add_argument("--no-progress", action="store_true")
    corrupt.set_defaults(run=cmd_puzzles_corrupt)
    show = puzzle_commands.add_parser(
        "show", help="draw a puzzle as in the paper's Figure 2 (PDF and PNG)"
    )
    show.add_argument("directory")
    show.add_argument("--id", required=True, help="Lichess puzzle id")
    show.add_argument("--out", required=True, help="figure path (.pdf; a .png is written too)")
    show.add_argument("--net", help="network for the policy bars (default: the strong one)")
    show.set_defaults(run=cmd_puzzles_show)
    export = puzzle_commands.add_parser("export", help="export a filtered dataset as JSONL")
    export.add_argument("directory")
    export.add_argument("output")
    export.set_defaults(run=cmd_puzzles_export)

    distill = commands.add_parser(
        "distill", help="distil a small weak ResNet from a teacher's sampled self-play"
    )
    distill.add_argument("--teacher", default="maia-1900")
    distill.add_argument("--out", required=True, help="output .pb.gz (run.json written beside)")
    distill.add_argument("--positions", type=int, default=40_000)
    distill.add_argument("--blocks", type=int, default=2)
    distill.add_argument("--filters", type=int, default=16)
    distill.add_argument("--epochs", type=int, default=8)
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--no-progress", action="store_true")
    distill.set_defaults(run=cmd_distill)

    demo = commands.add_parser(
        "demo", help="evaluate a network on the shipped Lichess puzzles' first positions"
    )
    demo.add_argument("--net", default="maia-1900")
    demo.add_argument("--puzzles", help="Lichess puzzle CSV (default: the shipped sample)")
    demo.add_argument("--limit", type=int, default=None, help="at most this many puzzles")
    demo.add_argument("--batch-size", type=int, default=256)
    demo.add_argument("--device", default="cpu")
    demo.add_argument("--compile", action="store_true", help="torch.compile the network")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(run=cmd_demo)

    plot = commands.add_parser("plot", help="figures for papers (PDF + PNG)")
    plot_commands = plot.add_subparsers(dest="plot_command", required=True)
    from leelalab.cli import patching as cli_patching
    from leelalab.cli import probing as cli_probing
    from leelalab.cli import train as cli_train

    cli_patching.register(commands, plot_commands)
    cli_probing.register(commands, plot_commands)
    cli_train.register(commands, plot_commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "eval":
        if (args.fen is None) == (args.positions is None):
            parser.error("eval: give exactly one of --fen or --positions")
        if args.positions is not None and args.output is None:
            parser.error("eval: --positions needs --output")
        if args.batch_size < 1:
            parser.error("--batch-size must be at least 1")
    try:
        return int(args.run(args))
    except LeelaLabError as error:
        print(f"leelalab: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"leelalab: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("leelalab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
