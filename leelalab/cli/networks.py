"""Commands on networks: ``info``, ``eval``, ``convert`` and ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chess

from leelalab.cli.common import (
    add_batch_size,
    add_command,
    add_device,
    add_history,
    add_limit,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite_file,
    check_output_file,
    note,
    print_table,
)
from leelalab.errors import PositionError

if TYPE_CHECKING:
    from leelalab.lc0.encoding import HistoryMode
    from leelalab.models.base import LeelaNetwork


def cmd_info(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import resolve_network
    from leelalab.lc0.weights import load_weights
    from leelalab.models import check_network

    weights = load_weights(resolve_network(args.net))
    check_network(weights)  # a file that loads but cannot run is an error here too
    description = weights.describe()
    hooks = _hook_names(args.net) if args.hooks else None
    if args.json:
        record = description.to_dict()
        if hooks is not None:
            record["hooks"] = hooks
        print(json.dumps(record, indent=2))
        return 0
    print(description)
    if hooks is not None:
        print(f"\nhook points ({len(hooks)}), for run_with_cache / run_with_hooks / names_filter:")
        for name in hooks:
            print(f"  {name}")
    return 0


def _hook_names(net: str) -> list[str]:
    from leelalab.inference.networks import load_network

    return sorted(load_network(net).hook_dict)


def parse_moves(board: chess.Board, moves: list[str]) -> list[str]:
    """UCI or SAN moves played from ``board``, as UCI (python-chess parses both)."""
    played = board.copy(stack=False)
    ucis = []
    for number, text in enumerate(moves, start=1):
        try:
            move = played.parse_uci(text)
        except ValueError:
            try:
                move = played.parse_san(text)
            except ValueError:
                raise PositionError(
                    f"move {number} ({text!r}) is neither a legal UCI nor a legal SAN move in "
                    f"{played.fen(en_passant='fen')}"
                ) from None
        ucis.append(move.uci())
        played.push(move)
    return ucis


def cmd_eval(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import load_network
    from leelalab.lc0.encoding import board_from_fen_and_moves
    from leelalab.models.evaluation import iter_evaluate

    if args.fen is not None:
        start = board_from_fen_and_moves(args.fen, [])
        board = board_from_fen_and_moves(args.fen, parse_moves(start, args.moves or []))
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
        print_table(rows, sys.stdout, align="llr")
        w, d, l = evaluation.wdl
        moves_left = "n/a" if evaluation.moves_left is None else f"{evaluation.moves_left:.1f}"
        print(
            f"W/D/L: {w:.4f} / {d:.4f} / {l:.4f}   Q: {evaluation.q:+.4f}   "
            f"moves left: {moves_left}"
        )
        return 0
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise PositionError(f"{output} exists; pass --overwrite to replace it")
    count = write_evaluations(
        network,
        args.positions,
        output,
        history=args.history,
        batch_size=args.batch_size,
        compile=args.compile,
        progress=not args.no_progress,
    )
    note(f"wrote {count} evaluations to {output}")
    return 0


def _json_line_writer() -> Any:
    """``record -> bytes`` of one JSONL line: orjson when installed (several times faster),
    else the standard library. Both write the same fields and values; only the bytes of the
    numbers differ (orjson writes ``0.00001`` where json writes ``1e-05``)."""
    try:
        import orjson
    except ImportError:
        return lambda record: (json.dumps(record) + "\n").encode()
    return lambda record: orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def write_evaluations(
    network: LeelaNetwork,
    positions: str | Path,
    output: Path,
    *,
    history: HistoryMode = "lc0",
    batch_size: int = 256,
    compile: bool = False,
    progress: bool = True,
) -> int:
    """``leelalab eval --positions``: evaluate a JSONL file of positions into ``output`` (one
    record per input line, written to ``OUTPUT.partial`` and renamed at the end); returns the
    number of positions."""
    from tqdm.auto import tqdm

    from leelalab.models.evaluation import iter_evaluate
    from leelalab.puzzles.positions import count_positions, read_positions

    line = _json_line_writer()
    partial = output.with_name(output.name + ".partial")
    count = 0
    try:
        with partial.open("wb") as handle:
            evaluations = iter_evaluate(
                network,
                read_positions(positions),
                history=history,
                batch_size=batch_size,
                compile=compile,
            )
            bar = tqdm(
                evaluations,
                desc="eval",
                unit="pos",
                total=count_positions(positions) if progress else None,
                disable=not progress,
                delay=1.0,  # no bar for runs that end, or fail, at once
            )
            for evaluation in bar:
                handle.write(line(evaluation.to_json()))
                count += 1
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return count


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
    print_table(summary.table(), sys.stdout, align="lrrrr")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from leelalab.inference.convert import convert
    from leelalab.lc0.weights.enums import Encoding

    output = check_output_file(args.output, overwrite=args.overwrite, what="network file")
    encoding = Encoding[args.encoding.upper()]
    path = convert(args.net, output, input_format=args.input_format, encoding=encoding)
    note(f"wrote {path}")
    return 0


def register(commands: Any) -> None:
    """Add ``info``, ``eval``, ``convert`` and ``demo``."""
    info = add_command(commands, "info", "describe a network file (and list its hook points)")
    add_net(info, positional=True)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument(
        "--hooks",
        action="store_true",
        help="also list every hook point name (builds the network)",
    )
    info.set_defaults(run=cmd_info)

    evaluate = add_command(
        commands,
        "eval",
        "evaluate positions with a network",
        description="Evaluate one position (--fen, with --moves as history) or a JSONL file "
        '(--positions, lines {"fen": ..., "moves": [...]}) with a network.',
    )
    add_net(evaluate, positional=True)
    evaluate.add_argument("--fen", help="one position (FEN); its history comes from --moves")
    evaluate.add_argument(
        "--moves", nargs="*", metavar="MOVE", help="moves played from --fen, UCI or SAN"
    )
    evaluate.add_argument(
        "--positions", help='JSONL input, one {"fen": ..., "moves": [UCI, ...]} per line'
    )
    add_output(evaluate, "JSONL output (with --positions), one line per input line", required=False)
    add_overwrite_file(evaluate)
    add_history(evaluate)
    add_batch_size(evaluate, 256)
    add_device(evaluate)
    evaluate.add_argument(
        "--compile", action="store_true", help="torch.compile the network (faster long runs)"
    )
    evaluate.add_argument(
        "--backend",
        choices=("torch", "ort"),
        default="torch",
        help="torch: the native module; ort: onnxruntime (outputs only, no hooks)",
    )
    evaluate.add_argument("--top", type=int, default=10, help="moves shown in the table (--fen)")
    evaluate.add_argument("--json", action="store_true", help="print the JSON record (--fen)")
    add_no_progress(evaluate)
    evaluate.set_defaults(run=cmd_eval)

    convert = add_command(
        commands, "convert", "convert a network between .pb.gz/.pb, .onnx and .safetensors"
    )
    add_net(convert, positional=True, default=None)
    add_output(convert, "the output file; its suffix picks the format", positional=True)
    add_overwrite_file(convert)
    convert.add_argument(
        "--encoding",
        choices=("linear16", "float16", "bfloat16", "float32"),
        default="linear16",
        help=".pb.gz layer encoding: linear16 (every lc0, lossy) or float (lc0 >= 0.33)",
    )
    convert.add_argument(
        "--input-format", type=int, default=1, help="input format of an .onnx source"
    )
    convert.set_defaults(run=cmd_convert)

    demo = add_command(
        commands, "demo", "evaluate a network on the shipped Lichess puzzles' first positions"
    )
    add_net(demo)
    demo.add_argument("--puzzles", help="Lichess puzzle CSV (default: the shipped sample)")
    add_limit(demo, "at most this many puzzles (default: all)")
    add_batch_size(demo, 256)
    add_device(demo)
    demo.add_argument("--compile", action="store_true", help="torch.compile the network")
    add_no_progress(demo)
    demo.set_defaults(run=cmd_demo)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage rules argparse cannot express."""
    if args.command == "eval":
        if (args.fen is None) == (args.positions is None):
            parser.error("eval: give exactly one of --fen or --positions")
        if args.positions is not None and args.output is None:
            parser.error("eval: --positions needs --output")
