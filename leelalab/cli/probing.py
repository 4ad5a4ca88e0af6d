"""CLI commands for activation stores and probes (``leelalab activations``, ``leelalab
probe``, ``leelalab plot probes``): thin wrappers over :mod:`leelalab.probing.store`,
:mod:`leelalab.probing.probes` and :mod:`leelalab.plots.probes`."""

from __future__ import annotations

import argparse
from typing import Any

from leelalab.cli.common import (
    add_command,
    add_device,
    add_executor,
    add_group,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite,
    executor_from,
    network_from_dataset,
    note,
    print_table,
)
from leelalab.cli.figures import add_figure_overwrite, write_figures
from leelalab.probing.settings import CacheSettings
from leelalab.runs.experiment import add_settings_options, settings_from_args

HOOKS_HELP = "hook names or globs (leelalab info NET --hooks lists them)"


def cmd_activations_cache(args: argparse.Namespace) -> int:
    from leelalab.probing.store import ActivationStore, cache_activations

    settings = settings_from_args(CacheSettings, args)
    network = network_from_dataset(args)
    path = cache_activations(
        network,
        args.directory,
        args.hooks,
        args.output,
        settings,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        executor=executor_from(args),
    )
    store = ActivationStore(path)
    print(f"wrote {path} ({store.n} puzzles, {len(store.hooks)} hooks) and {path}.run.json")
    return 0


def cmd_probe_train(args: argparse.Namespace) -> int:
    from leelalab.probing.probes import ProbeSettings, describe_accuracy, train_probes

    config = settings_from_args(ProbeSettings, args)
    results = train_probes(
        args.store,
        args.output,
        config,
        hooks=args.hooks,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    print(f"{config.probe} probe for {config.target}, {len(config.seeds)} seeds (mean ± std)")
    rows = [["hook", "accuracy", "control", "selectivity", "test puzzles"]]
    for result in results.results:
        control = result["control_mean"]
        rows.append(
            [
                result["hook"],
                describe_accuracy(result),
                "-" if control is None else f"{control:.3f} ± {result['control_std']:.3f}",
                "-" if control is None else f"{result['selectivity']:.3f}",
                str(result["test_puzzles"]),
            ]
        )
    print_table(rows)
    weights = "" if config.probe == "logistic" else ", probe weights (.safetensors)"
    note(f"wrote {args.output}/results.json, config.json, run.json{weights}")
    return 0


def cmd_probe_eval(args: argparse.Namespace) -> int:
    from leelalab.probing.probes import MINIMUM_TEST_PUZZLES, evaluate_saved_probes

    evaluation = evaluate_saved_probes(
        args.probes, args.store, include_training=args.include_training
    )
    left_out = (
        "training puzzles included"
        if args.include_training
        else f"{evaluation.excluded} puzzles the probes trained on left out"
    )
    print(f"{evaluation.puzzles} store puzzles evaluated ({left_out}); 95% Wilson intervals")
    rows = [["hook", "accuracy", "95% CI", "puzzles"]]
    for hook in evaluation:
        estimate = evaluation.interval(hook)
        if estimate.n < MINIMUM_TEST_PUZZLES:
            cells = [estimate.describe(MINIMUM_TEST_PUZZLES), "-"]
        else:
            cells = [f"{estimate.value:.3f}", f"[{estimate.low:.3f}, {estimate.high:.3f}]"]
        rows.append([hook, *cells, str(evaluation.evaluated[hook])])
    print_table(rows)
    return 0


def cmd_plot_probes(args: argparse.Namespace) -> int:
    from leelalab.plots.probes import plot_probe_results
    from leelalab.probing.probes import ProbeResults

    # Every input is read before the figure folder is touched.
    runs = [ProbeResults.load(directory) for directory in args.results]
    figures = write_figures(
        args.output, args.overwrite, lambda folder: plot_probe_results(runs, folder)
    )
    for path in figures:
        note(f"wrote {path}")
    return 0


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``activations``, ``probe`` and ``plot probes`` to the ``leelalab`` parser."""
    _, activation_commands = add_group(
        commands, "activations", "disk-backed activation stores", "activations_command"
    )
    cache = add_command(
        activation_commands,
        "cache",
        "cache hook activations of a dataset's puzzle positions to HDF5",
    )
    cache.add_argument(
        "directory", metavar="DIR", help="a dataset directory (leelalab puzzles filter)"
    )
    add_net(cache, default=None, help="network (default: the dataset's strong network)")
    cache.add_argument(
        "--hooks",
        nargs="+",
        default=["blocks.*.hook_resid_post"],
        help=HOOKS_HELP,
    )
    add_output(cache, "the store, e.g. runs/acts.h5 (resumable)")
    add_overwrite(cache)
    add_settings_options(cache, CacheSettings)
    add_device(cache)
    add_no_progress(cache)
    add_executor(cache)
    cache.set_defaults(run=cmd_activations_cache)

    _, probe_commands = add_group(
        commands, "probe", "train and evaluate probes on an activation store", "probe_command"
    )
    train = add_command(probe_commands, "train", "train a probe per hook and seed")
    train.add_argument(
        "store", metavar="STORE", help="an activation store (leelalab activations cache)"
    )
    add_output(train, "probe directory, e.g. probes/NAME")
    add_overwrite(train)
    train.add_argument("--hooks", nargs="+", help=f"{HOOKS_HELP}; default: every hook in the store")
    from leelalab.probing.settings import ProbeSettings

    add_settings_options(train, ProbeSettings, defaults={"seeds": [0, 1, 2]})
    add_no_progress(train)
    train.set_defaults(run=cmd_probe_train)

    evaluate = add_command(probe_commands, "eval", "evaluate saved probes on a store")
    evaluate.add_argument("probes", metavar="DIR", help="a probe directory (leelalab probe train)")
    evaluate.add_argument("store", metavar="STORE", help="an activation store")
    evaluate.add_argument(
        "--include-training",
        action="store_true",
        help="also score the puzzles the probes trained on (optimistic; off by default)",
    )
    evaluate.set_defaults(run=cmd_probe_eval)

    plot = add_command(plot_commands, "probes", "probe accuracy vs layer")
    plot.add_argument(
        "results", metavar="DIR", nargs="+", help="probe directories (trained, random-init, ...)"
    )
    add_output(plot, "figure directory (PDF + PNG)")
    add_figure_overwrite(plot)
    plot.set_defaults(run=cmd_plot_probes)
