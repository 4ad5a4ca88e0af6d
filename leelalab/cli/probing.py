"""CLI commands for activation stores and probes (``leelalab activations``, ``leelalab
probe``, ``leelalab plot probes``): thin wrappers over :mod:`leelalab.probing.store`,
:mod:`leelalab.probing.probes` and :mod:`leelalab.plots.probes`."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_activations_cache(args: argparse.Namespace) -> int:
    from leelalab.cli.patching import _network
    from leelalab.probing.store import ActivationStore, cache_activations

    network = _network(args)
    path = cache_activations(
        network,
        args.directory,
        args.hooks,
        args.output,
        dtype=args.dtype,
        batch_size=args.batch_size,
        part_size=args.part_size,
        limit=args.limit,
        selected_only=args.selected_only,
        min_moves=args.min_moves,
        random_init=args.random_init,
        progress=not args.no_progress,
    )
    store = ActivationStore(path)
    print(f"wrote {path} ({store.n} puzzles, {len(store.hooks)} hooks) and {path}.run.json")
    return 0


def cmd_probe_train(args: argparse.Namespace) -> int:
    from leelalab.probing.probes import ProbeConfig, train_probes

    config = ProbeConfig(
        target=args.target,
        query=None if args.query == "none" else args.query,
        probe=args.probe,
        rank=args.rank,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        test_fraction=args.test_fraction,
        seeds=args.seeds,
        control=not args.no_control,
        memory_budget_mb=args.memory_budget,
    )
    summary = train_probes(
        args.store, args.output, config, hooks=args.hooks, progress=not args.no_progress
    )
    print(f"{config.probe} probe for {config.target}, {len(config.seeds)} seeds (mean ± std)")
    rows = [["hook", "accuracy", "control", "selectivity", "test puzzles"]]
    for result in summary["results"]:
        control = result["control_mean"]
        rows.append(
            [
                result["hook"],
                f"{result['accuracy_mean']:.3f} ± {result['accuracy_std']:.3f}",
                "-" if control is None else f"{control:.3f} ± {result['control_std']:.3f}",
                "-" if control is None else f"{result['selectivity']:.3f}",
                str(result["test_puzzles"]),
            ]
        )
    _print_rows(rows)
    weights = "" if config.probe == "logistic" else ", probe weights (.safetensors)"
    print(f"wrote {args.output}/results.json, config.json, run.json{weights}")
    return 0


def cmd_probe_eval(args: argparse.Namespace) -> int:
    from leelalab.probing.probes import evaluate_saved_probes

    accuracies = evaluate_saved_probes(args.probes, args.store)
    _print_rows([["hook", "accuracy"]] + [[h, f"{a:.3f}"] for h, a in accuracies.items()])
    return 0


def cmd_plot_probes(args: argparse.Namespace) -> int:
    from leelalab.plots.probes import plot_probe_results

    for path in plot_probe_results(args.results, args.out):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _print_rows(rows: list[list[str]]) -> None:
    from leelalab.cli.patching import _print_rows as print_rows

    print_rows(rows)


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``activations``, ``probe`` and ``plot probes`` to the ``leelalab`` parser."""
    activations = commands.add_parser("activations", help="disk-backed activation stores")
    activation_commands = activations.add_subparsers(dest="activations_command", required=True)
    cache = activation_commands.add_parser(
        "cache", help="cache hook activations of a dataset's puzzle positions to HDF5"
    )
    cache.add_argument("directory", help="a dataset directory (leelalab puzzles filter)")
    cache.add_argument("--net", help="network (default: the dataset's strong network)")
    cache.add_argument(
        "--hooks", nargs="+", default=["blocks.*.hook_resid_post"], help="names or globs"
    )
    cache.add_argument("--output", required=True, help="the store, e.g. runs/acts.h5")
    cache.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    cache.add_argument("--batch-size", type=int, default=64)
    cache.add_argument("--part-size", type=int, default=512, help="puzzles per resumable part")
    cache.add_argument("--limit", type=int)
    cache.add_argument("--selected-only", action="store_true", help="only selected puzzles")
    cache.add_argument("--min-moves", type=int, default=1)
    cache.add_argument(
        "--random-init", type=int, metavar="SEED", help="cache a randomly initialised copy"
    )
    cache.add_argument("--device", default="cpu")
    cache.add_argument("--no-progress", action="store_true")
    cache.set_defaults(run=cmd_activations_cache)

    probe = commands.add_parser("probe", help="train and evaluate probes on an activation store")
    probe_commands = probe.add_subparsers(dest="probe_command", required=True)
    train = probe_commands.add_parser("train", help="train a probe per hook and seed")
    train.add_argument("store", help="an activation store (leelalab activations cache)")
    train.add_argument("--target", default="move3_target", help="move<k>_target|source, k=1..7")
    train.add_argument("--query", default="move1_target", help="bilinear query square, or 'none'")
    train.add_argument("--probe", choices=("bilinear", "linear", "logistic"), default="bilinear")
    train.add_argument("--output", required=True, help="probe directory, e.g. probes/NAME")
    train.add_argument("--hooks", nargs="+", help="hooks to probe (default: all in the store)")
    train.add_argument("--rank", type=int, default=32)
    train.add_argument("--lr", type=float, default=1e-2)
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--test-fraction", type=float, default=0.3)
    train.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    train.add_argument("--no-control", action="store_true", help="skip the control task")
    train.add_argument(
        "--memory-budget", type=int, default=256, metavar="MB", help="RAM for activation blocks"
    )
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(run=cmd_probe_train)

    evaluate = probe_commands.add_parser("eval", help="evaluate saved probes on a store")
    evaluate.add_argument("probes", help="a probe directory (leelalab probe train)")
    evaluate.add_argument("store", help="an activation store")
    evaluate.set_defaults(run=cmd_probe_eval)

    plot = plot_commands.add_parser("probes", help="probe accuracy vs layer")
    plot.add_argument("results", nargs="+", help="probe directories (trained, random-init, ...)")
    plot.add_argument("--out", required=True, help="figure directory (PDF + PNG)")
    plot.set_defaults(run=cmd_plot_probes)
