"""What every command shares, so that the same thing is spelled the same way everywhere.

- ``--net`` names the network under study (a file or a bundled name); ``--output`` (alias
  ``--out``) the file or directory written; ``--overwrite`` replaces an existing output;
  ``--no-progress`` hides progress bars; ``--seed`` seeds everything random; ``--device``
  picks the torch device.
- Every option has help text, and ``--help`` shows its default.
- Output: results on stdout, notes (``wrote …``) on stderr, errors as one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from leelalab.errors import LeelaLabError

DEFAULT_NETWORK = "maia-1900"
HISTORY_CHOICES = ("lc0", "none", "repeat")
NET_HELP = (
    "network: an lc0 .pb.gz/.pb, .onnx or .safetensors file, or a bundled name "
    "(maia-1900, weak-maia-1900, lab-t6-128)"
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and appends each option's default to its help.

    Flags (``store_true``) and options without a default are left alone: their help says
    what happens when they are not given.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or not action.option_strings
        ):
            return text
        if isinstance(default, list | tuple):
            shown = " ".join(str(value) for value in default)
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def add_command(
    subparsers: Any, name: str, help: str, *, description: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand parser with the shared help formatter."""
    return subparsers.add_parser(
        name, help=help, description=description or help, formatter_class=HelpFormatter
    )


def add_group(subparsers: Any, name: str, help: str, dest: str) -> tuple[Any, Any]:
    """A command group (``leelalab puzzles …``); alone, it prints its own help."""
    parser = add_command(subparsers, name, help)
    parser.set_defaults(run=_help_of(parser))
    return parser, parser.add_subparsers(dest=dest, metavar="COMMAND")


def _help_of(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show_help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return show_help


def add_net(
    parser: argparse.ArgumentParser,
    *,
    default: str | None = DEFAULT_NETWORK,
    help: str = NET_HELP,
    aliases: Sequence[str] = (),
    positional: bool = False,
) -> None:
    """``--net`` (plus old spellings as aliases, and optionally an old positional form)."""
    if positional:
        parser.add_argument(
            "--net",
            *aliases,
            dest="net",
            default=None,
            help=f"{help}" + (f" (default: {default})" if default else ""),
        )
        parser.add_argument("net_positional", nargs="?", help=argparse.SUPPRESS)
        parser.set_defaults(_net_default=default)
    else:
        parser.add_argument("--net", *aliases, dest="net", default=default, help=help)


def add_strong_weak(
    parser: argparse.ArgumentParser,
    *,
    strong_default: str | None,
    strong_help: str,
    weak_help: str,
) -> None:
    """``--strong`` (alias ``--net``: the network under study) and ``--weak``."""
    parser.add_argument(
        "--strong", "--net", dest="strong", default=strong_default, help=strong_help
    )
    parser.add_argument("--weak", help=weak_help)


def add_output(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    required: bool = True,
    positional: bool = False,
) -> None:
    """``--output`` (alias ``--out``): the file or directory a command writes."""
    parser.add_argument(
        "--output", "--out", dest="output", required=required and not positional, help=help
    )
    if positional:
        parser.add_argument("output_positional", nargs="?", help=argparse.SUPPRESS)


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """``--overwrite`` of a run directory (only the files the old run wrote are removed)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output instead of refusing (a finished run with the same "
        "settings is otherwise kept, an unfinished one resumed; files of yours in the "
        "directory stay)",
    )


def add_overwrite_file(parser: argparse.ArgumentParser) -> None:
    """``--overwrite`` of a command whose ``--output`` is one file (or a figure's two)."""
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output file if it exists"
    )


def add_run_options(
    parser: argparse.ArgumentParser,
    output: str,
    *,
    file: bool = False,
    seed: str | None = None,
    progress: bool = True,
    device: bool = True,
) -> None:
    """The options every run shares, spelled once: ``--output`` (help ``output``) with
    ``--overwrite`` (of a directory, or of one file with ``file``), then ``--seed`` (when
    ``seed`` is its help), ``--device`` and ``--no-progress``."""
    add_output(parser, output)
    (add_overwrite_file if file else add_overwrite)(parser)
    if seed is not None:
        add_seed(parser, seed)
    if device:
        add_device(parser)
    if progress:
        add_no_progress(parser)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_seed(parser: argparse.ArgumentParser, help: str, default: int = 0) -> None:
    parser.add_argument("--seed", type=int, default=default, help=help)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device: cpu, cuda, cuda:1, or auto ($LEELALAB_DEVICE, else cuda if present)",
    )


def add_batch_size(parser: argparse.ArgumentParser, default: int, help: str = "") -> None:
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=default,
        help=help or "positions per network forward",
    )


def add_limit(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--limit", type=positive_int, help=help)


def add_history(parser: argparse.ArgumentParser, flag: str = "--history", help: str = "") -> None:
    parser.add_argument(
        flag,
        choices=HISTORY_CHOICES,
        default="lc0",
        help=help
        or "history planes: exactly as lc0 feeds them, zeroed (none), or repeated from the FEN",
    )


def add_executor(parser: argparse.ArgumentParser) -> None:
    """``--executor local|ray`` and its Ray settings (long jobs; see leelalab.runs.executor)."""
    group = parser.add_argument_group("where the chunks run")
    group.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: Ray workers that load the networks once each (the "
        "outputs are the same byte for byte; needs the ray extra)",
    )
    group.add_argument(
        "--ray-address",
        help="Ray cluster to join (default: $RAY_ADDRESS, else start a local Ray instance)",
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        help="Ray workers (default: as many as fit, each with --threads-per-worker CPUs)",
    )
    group.add_argument(
        "--threads-per-worker",
        type=positive_int,
        help="torch threads in each Ray worker (default: this process's torch threads, "
        "which keeps the outputs byte-identical to a local run for every batch shape; "
        "1, with one worker per core, is fastest on a small machine)",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0.0,
        help="GPUs Ray reserves for each worker (fractions share a GPU; use with --device cuda)",
    )


def executor_from(args: argparse.Namespace) -> Any:
    from leelalab.runs.executor import Executor

    executor = Executor(
        kind=args.executor,
        address=args.ray_address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        threads_per_worker=args.threads_per_worker,
    )
    executor.check_available()
    return executor


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def resolve_positional_aliases(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fold the old positional spellings (``leelalab info NET``) into their options."""
    for name in ("net", "output"):
        if not hasattr(args, f"{name}_positional"):
            continue
        positional = getattr(args, f"{name}_positional")
        given = getattr(args, name, None)
        if positional is not None and given is not None and given != positional:
            parser.error(f"--{name} given twice: {given} and {positional}")
        value = positional if positional is not None else given
        if value is None:
            value = getattr(args, f"_{name}_default", None)
        if value is None:
            parser.error(f"the following arguments are required: --{name}")
        setattr(args, name, value)


def network_from_dataset(args: argparse.Namespace, directory: str | Path | None = None) -> Any:
    """``--net``, or else the strong network the dataset was filtered with."""
    from leelalab.inference.networks import load_network

    name = args.net
    directory = Path(directory if directory is not None else args.directory)
    if name is None:
        from leelalab.puzzles.dataset import dataset_network

        name = dataset_network(directory, "strong", remedy="pass --net")
    return load_network(name, device=getattr(args, "device", "cpu"))


def check_output_file(
    path: str | Path,
    *,
    overwrite: bool,
    suffixes: Sequence[str] = (),
    what: str = "output file",
) -> Path:
    """``--output`` of a command that writes one file, checked before any work is done.

    Refused: a name not ending in one of ``suffixes`` (when given), a directory, an existing
    file without ``overwrite``, a parent that is a file. Nothing is created here: call
    :func:`make_parent` just before writing.
    """
    path = Path(path)
    if suffixes and not path.name.endswith(tuple(suffixes)):
        raise LeelaLabError(f"{path}: the {what} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise LeelaLabError(f"{path} is a directory; --output names the {what} to write")
    if path.exists() and not overwrite:
        raise LeelaLabError(f"{path} exists; pass --overwrite to replace it")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise LeelaLabError(f"{path}: {parent} is a file, not a folder")
            break
    return path


def check_figure_output(path: str | Path, *, overwrite: bool) -> Path:
    """``--output`` of a figure command: ``STEM.pdf`` and ``STEM.png`` are written, so
    either existing is refused without ``overwrite`` (see :func:`check_output_file`)."""
    path = Path(path)
    for figure in (path.with_suffix(".pdf"), path.with_suffix(".png")):
        check_output_file(figure, overwrite=overwrite, what="figure")
    return path


def make_parent(path: str | Path) -> Path:
    """Create the folder ``path`` goes into (after the inputs were checked)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def note_resumed(what: str | Path, done: int, total: int | None, unit: str) -> None:
    """``resuming WHAT: N of M UNIT done`` on stderr, for every resumable command."""
    of_total = f" of {total}" if total is not None else ""
    note(f"resuming {what}: {done}{of_total} {unit} done")


def add_directory(parser: argparse.ArgumentParser, help: str) -> None:
    """The positional run or dataset directory, named ``DIR`` in every command."""
    parser.add_argument("directory", metavar="DIR", help=help)


def print_table(rows: Sequence[Sequence[str]], out: TextIO | None = None, align: str = "") -> None:
    """A plain text table; ``align`` has one ``l``/``r`` per column (default: first left)."""
    out = out or sys.stdout
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        cells = []
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            right = align[i : i + 1] == "r" if align else i > 0
            cells.append(cell.rjust(width) if right else cell.ljust(width))
        print("  ".join(cells).rstrip(), file=out)
        if number == 0:
            print("  ".join("-" * width for width in widths), file=out)


def note(message: str) -> None:
    """A line for the user that is not a result (``wrote …``): stderr."""
    print(message, file=sys.stderr)
