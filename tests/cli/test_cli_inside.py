"""``leelalab lens``, ``refutations``, ``future-board``, ``steer`` and their plots, end to
end on tiny synthetic networks and a filtered slice of the shipped puzzles."""

from __future__ import annotations

import json
import math
from pathlib import Path

import chess
import numpy as np
import pytest

from leelalab.analyses.refutation import load_search
from leelalab.cli import main
from leelalab.engines import EngineNotFoundError, find_stockfish
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models.evaluation import evaluate
from leelalab.runs.results import read_h5


@pytest.fixture(scope="module")
def networks(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("nets")
    return {
        "resnet": save_weights(
            random_resnet_weights(blocks=2, filters=8, seed=31), directory / "r.pb.gz"
        ),
        "transformer": save_weights(
            random_transformer_weights(layers=2, d_model=16, heads=2, seed=32),
            directory / "t.pb.gz",
        ),
        "weak": save_weights(
            random_resnet_weights(blocks=1, filters=8, seed=33), directory / "w.pb.gz"
        ),
    }


def _filter(networks: dict[str, Path], strong: str, directory: Path) -> Path:
    args = ["puzzles", "filter", "--strong", str(networks[strong]), "--weak"]
    args += [str(networks["weak"]), "--output", str(directory), "--limit", "40", "--no-progress"]
    assert main(args) == 0
    return directory


@pytest.fixture(scope="module")
def filtered(networks, tmp_path_factory) -> Path:
    return _filter(networks, "resnet", tmp_path_factory.mktemp("filtered"))


@pytest.fixture(scope="module")
def filtered_by(networks, filtered, tmp_path_factory) -> dict[str, Path]:
    """A filter run per strong network (the lens's groups come from the filter's network)."""
    transformer = _filter(networks, "transformer", tmp_path_factory.mktemp("filtered-t"))
    return {"resnet": filtered, "transformer": transformer}


def _log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _pngs(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir() if path.suffix == ".png"}


@pytest.mark.parametrize("kind", ["resnet", "transformer"])
def test_lens_train_run_and_plot(kind, networks, filtered_by, tmp_path, capsys) -> None:
    net = str(networks[kind])
    lens = tmp_path / "lens"
    # 128 games in parallel: 512 positions give each game 4 plies, so that some held-out
    # positions do not occur in training games (at 64, every game is only the start position).
    args = ["lens", "train", "--net", net, "--output", str(lens), "--positions", "512"]
    assert main([*args, "--epochs", "1", "--batch-size", "32", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "policy KL tuned" in text
    # The layer column says `in` (as the README and the figures do), not the internal -1,
    # which the stored report keeps.
    lines = text.splitlines()
    body = lines[lines.index(next(line for line in lines if line.startswith("-----"))) + 1 :]
    column = [line.split()[0] for line in body if line.split()]
    assert column[:2] == ["in", "0"] and "-1" not in text
    stored = json.loads((lens / "lens.json").read_text())["report"]["held_out"]["logit_lens"]
    assert stored["layers"][0] == -1
    assert main([*args, "--epochs", "2", "--no-progress"]) == 1  # other settings: refused
    assert "other settings" in capsys.readouterr().err
    assert main([*args, "--epochs", "1", "--batch-size", "32", "--no-progress", "--overwrite"]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    run = ["lens", "run", str(filtered_by[kind]), "--net", net, "--tuned-lens", str(lens)]
    assert main([*run, "--output", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "logit lens" in text and "tuned lens" in text and "strong-missed" in text
    assert main(["plot", "lens", str(out), "--out", str(tmp_path / "figs")]) == 0
    assert _pngs(tmp_path / "figs") == {"lens_layers.png", "lens_emergence.png"}


def test_future_board_and_steering(networks, filtered, tmp_path, capsys) -> None:
    net = str(networks["resnet"])
    store = tmp_path / "acts.h5"
    cache = ["activations", "cache", str(filtered), "--net", net, "--output", str(store)]
    assert main([*cache, "--no-progress"]) == 0
    random_store = tmp_path / "random.h5"
    cache = ["activations", "cache", str(filtered), "--net", net, "--random-init", "0"]
    assert main([*cache, "--output", str(random_store), "--no-progress"]) == 0
    options = ["--horizons", "0", "1", "--seeds", "0", "--epochs", "1", "--no-progress"]
    for source, name in ((store, "fb"), (random_store, "fb-random")):
        assert main(["future-board", str(source), "--output", str(tmp_path / name), *options]) == 0
    assert "arrivals" in capsys.readouterr().out
    figures = tmp_path / "figs"
    plot = [
        "plot",
        "future-board",
        str(tmp_path / "fb"),
        "--random-init",
        str(tmp_path / "fb-random"),
    ]
    assert main([*plot, "--out", str(figures)]) == 0

    probes = tmp_path / "probe"
    train = ["probe", "train", str(store), "--output", str(probes), "--seeds", "0"]
    assert main([*train, "--epochs", "1", "--no-control", "--no-progress"]) == 0
    steer = ["steer", str(filtered), "--probes", str(probes), "--net", net, "--limit", "3"]
    steer += ["--scales", "1", "--targets", "1", "--random-directions", "1", "--no-progress"]
    assert main([*steer, "--output", str(tmp_path / "steer")]) == 0
    assert "probe direction" in capsys.readouterr().out
    assert main(["plot", "steering", str(tmp_path / "steer"), "--out", str(figures)]) == 0
    assert _pngs(figures) == {"future_board.png", "steering.png"}


def test_refutations_find_measure_and_plot(networks, filtered, tmp_path, capsys) -> None:
    try:
        stockfish = find_stockfish()
    except EngineNotFoundError:
        pytest.skip("Stockfish is not installed")
    out = tmp_path / "ref"
    find = ["refutations", "find", str(filtered), "--output", str(out), "--stockfish", stockfish]
    find += ["--sample", "2", "--depths", "1", "3", "--max-candidates", "6", "--no-progress"]
    # Random networks solve no puzzle, so draw from every puzzle rather than a stratum.
    find += ["--min-moves", "3", "--stratum", "all"]
    assert main(find) == 0
    assert "matched pairs" in capsys.readouterr().out
    assert main(find) == 0  # finished: kept, and the Stockfish cache makes it instant
    assert json.loads((out / "run.json").read_text())["stockfish_analyses_this_session"] == 0
    capsys.readouterr()
    assert main(["refutations", "measure", str(out)]) == 0
    assert "refutation − control" in capsys.readouterr().out
    measure = json.loads((out / "measure.json").read_text())
    assert set(measure["networks"]) == {"strong", "weak"}
    # Every stored log-odds is the strong network's on the stored boards, without history.
    arrays, depths = load_search(out / "refutations.h5")
    values, _ = read_h5(out / "measure.h5")
    strong = load_network(networks["resnet"])
    checked = 0
    for k in depths:
        for i, record in enumerate(arrays[f"k{k}"]):
            for role in ("refutation", "control"):
                stored = values[f"strong__k{k}__{role}_log_odds"][i]
                if record[role] is None:
                    assert np.isnan(stored)
                    continue
                move = arrays["first_move"][i]
                clean, edited = evaluate(
                    strong, [chess.Board(arrays["clean_fen"][i]), chess.Board(record[role]["fen"])]
                )
                assert values["strong__clean_log_odds"][i] == pytest.approx(
                    _log_odds(clean.policy[move]), abs=1e-4
                )
                assert stored == pytest.approx(_log_odds(edited.policy[move]), abs=1e-4)
                checked += 1
    assert checked > 0
    assert main(["plot", "refutations", str(out), "--out", str(tmp_path / "figs")]) == 0
    assert _pngs(tmp_path / "figs") == {"refutation_depth.png"}


def test_overwrite_refuses_foreign_directories(tmp_path, filtered, networks, capsys) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    args = ["lens", "run", str(filtered), "--net", str(networks["resnet"]), "--output"]
    assert main([*args, str(foreign), "--overwrite", "--no-progress"]) == 1
    assert "is not a leelalab output directory" in capsys.readouterr().err
    assert (foreign / "notes.txt").exists()


def test_lens_run_refuses_a_filter_run_of_another_network(tmp_path, filtered, networks, capsys):
    """The strata come from the filter's strong network and strong-missed from --net: with
    two networks the groups would be mixed, so the run is refused before --output is touched."""
    earlier = tmp_path / "run"
    earlier.mkdir()
    (earlier / "run.json").write_text("{}")
    args = ["lens", "run", str(filtered), "--net", str(networks["transformer"]), "--output"]
    assert main([*args, str(earlier), "--overwrite", "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    assert "filtered with the strong network" in error
    assert str(networks["resnet"]) in error and str(networks["transformer"]) in error
    assert (earlier / "run.json").exists()


def test_inside_commands_have_help(capsys) -> None:
    for command in (
        ["lens", "train"],
        ["lens", "run"],
        ["refutations", "find"],
        ["refutations", "measure"],
        ["future-board"],
        ["steer"],
        ["plot", "lens"],
        ["plot", "refutations"],
        ["plot", "future-board"],
        ["plot", "steering"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: leelalab" in capsys.readouterr().out


# One shape for every run (issue 26) and first-use errors (issue 20) ------------------------

HEADER = "PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags"


def _one_line_error(code: int, capsys) -> str:
    """The command failed with one line on stderr: no traceback, no internal error."""
    error = capsys.readouterr().err
    assert code != 0, error
    assert len(error.strip().splitlines()) == 1, error
    assert "Traceback" not in error and "internal error" not in error, error
    return error


def _files(directory: Path) -> dict[str, bytes]:
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def runs(networks, filtered, tmp_path_factory) -> dict[str, Path]:
    """One output of each command (small), for the tests that feed them to other commands."""
    root = tmp_path_factory.mktemp("runs")
    net = str(networks["resnet"])
    quiet = ["--no-progress"]
    made = {"dataset": filtered, "store": root / "acts.h5"}
    cache = ["activations", "cache", str(filtered), "--net", net, "--output", str(made["store"])]
    assert main([*cache, *quiet]) == 0
    made["lens-train"] = root / "lens-train"
    train = ["lens", "train", "--net", net, "--output", str(made["lens-train"])]
    assert main([*train, "--positions", "512", "--epochs", "1", *quiet]) == 0
    made["lens"] = root / "lens"
    assert (
        main(["lens", "run", str(filtered), "--net", net, "--out", str(made["lens"]), *quiet]) == 0
    )
    made["future-board"] = root / "fb"
    board = ["future-board", str(made["store"]), "--output", str(made["future-board"])]
    board += ["--horizons", "0", "1", "--seeds", "0", "--epochs", "1", "--no-square-concepts"]
    assert main([*board, "--no-board-concepts", *quiet]) == 0
    made["probes"] = root / "probes"
    probe = ["probe", "train", str(made["store"]), "--output", str(made["probes"]), "--seeds", "0"]
    assert main([*probe, "--epochs", "1", "--no-control", *quiet]) == 0
    made["steer"] = root / "steer"
    steer = ["steer", str(filtered), "--probes", str(made["probes"]), "--net", net, "--limit", "2"]
    steer += ["--scales", "1", "--targets", "1", "--random-directions", "1"]
    assert main([*steer, "--output", str(made["steer"]), *quiet]) == 0
    try:
        stockfish = find_stockfish()
    except EngineNotFoundError:
        stockfish = None
    if stockfish is not None:
        made["refutations"] = root / "ref"
        find = ["refutations", "find", str(filtered), "--output", str(made["refutations"])]
        find += ["--stockfish", stockfish, "--sample", "1", "--depths", "1", "--min-moves", "3"]
        assert main([*find, "--max-candidates", "4", "--stratum", "all", *quiet]) == 0
        assert main(["refutations", "measure", str(made["refutations"])]) == 0
    csv = root / "header-only.csv"
    csv.write_text(HEADER + "\n")
    made["empty"] = root / "empty"
    empty = ["puzzles", "filter", "--input", str(csv), "--strong", net, "--weak"]
    assert main([*empty, str(networks["weak"]), "--output", str(made["empty"]), *quiet]) == 0
    return made


def _commands(runs: dict[str, Path], networks: dict[str, Path]) -> dict[str, list]:
    """Each run-directory command with its real inputs (``--output`` added by the caller)."""
    net = str(networks["resnet"])
    quiet = "--no-progress"
    board = ["--horizons", "0", "1", "--seeds", "0", "--epochs", "1", "--no-square-concepts"]
    return {
        "lens train": ["lens", "train", "--net", net, "--positions", "512", "--epochs", "1"],
        "lens run": ["lens", "run", str(runs["dataset"]), "--net", net, quiet],
        "future-board": ["future-board", str(runs["store"]), *board, "--no-board-concepts", quiet],
        "steer": [
            *["steer", str(runs["dataset"]), "--probes", str(runs["probes"]), "--net", net],
            *["--limit", "2", "--scales", "1", "--targets", "1", "--random-directions", "1", quiet],
        ],
        "refutations find": [
            *["refutations", "find", str(runs["dataset"]), "--sample", "1", "--depths", "1"],
            *["--min-moves", "3", "--max-candidates", "4", "--stratum", "all", quiet],
        ],
    }


@pytest.mark.parametrize(
    "command", ["lens train", "lens run", "future-board", "steer", "refutations find"]
)
def test_overwrite_keeps_a_users_file_and_bad_input_keeps_the_output(
    command, runs, networks, tmp_path, capsys
) -> None:
    output = tmp_path / "out"
    args = [*_commands(runs, networks)[command], "--output", str(output)]
    if command == "refutations find":
        try:
            args += ["--stockfish", find_stockfish()]
        except EngineNotFoundError:
            pytest.skip("Stockfish is not installed")
    if command == "lens train":
        args.append("--no-progress")
    assert main(args) == 0
    (output / "notes.txt").write_text("mine")
    assert main([*args, "--overwrite"]) == 0
    assert (output / "notes.txt").read_text() == "mine"
    capsys.readouterr()
    before = _files(output)
    # An input that does not exist (or a setting out of range): refused, output untouched.
    broken = {
        "lens train": [*args, "--held-out", "1.5"],
        "lens run": [a if a != str(runs["dataset"]) else str(tmp_path / "nope") for a in args],
        "future-board": [a if a != str(runs["store"]) else str(tmp_path / "nope.h5") for a in args],
        "steer": [a if a != str(runs["probes"]) else str(tmp_path / "nope") for a in args],
        "refutations find": [
            a if a != str(runs["dataset"]) else str(tmp_path / "nope") for a in args
        ],
    }[command]
    _one_line_error(main([*broken, "--overwrite"]), capsys)
    assert _files(output) == before


@pytest.mark.parametrize(
    "command,source",
    [
        (["lens", "run"], "steer"),
        (["lens", "run"], "empty"),
        (["refutations", "find"], "lens"),
        (["refutations", "find"], "empty"),
        (["refutations", "measure"], "dataset"),
        (["refutations", "measure"], "empty"),
        (["steer"], "lens"),
        (["steer"], "empty"),
        (["future-board"], "lens"),
        (["future-board"], "empty"),
        (["plot", "lens"], "refutations"),
        (["plot", "lens"], "steer"),
        (["plot", "lens"], "empty"),
        (["plot", "refutations"], "lens"),
        (["plot", "future-board"], "lens"),
        (["plot", "steering"], "lens"),
        (["plot", "steering"], "empty"),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value),
)
def test_wrong_kind_and_empty_inputs_are_one_line(command, source, runs, tmp_path, capsys):
    if source not in runs:
        pytest.skip("Stockfish is not installed")
    args = [*command, str(runs[source])]
    if command[0] == "steer":
        args += ["--probes", str(runs["probes"])]
    if command != ["refutations", "measure"]:
        args += ["--output", str(tmp_path / "o")]
    if command[0] not in ("plot", "refutations") or command[1] == "find":
        args.append("--no-progress")
    code = main(args)
    _one_line_error(code, capsys)
    assert not (tmp_path / "o").exists()


def test_plot_lens_of_a_truncated_summary_is_one_line(runs, tmp_path, capsys) -> None:
    copy = tmp_path / "lens"
    copy.mkdir()
    for name, data in _files(runs["lens"]).items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(data)
    summary = copy / "summary.json"
    summary.write_bytes(summary.read_bytes()[:200])
    error = _one_line_error(main(["plot", "lens", str(copy), "--out", str(tmp_path / "f")]), capsys)
    assert f"{summary}: not valid JSON" in error


def test_plot_refuses_an_existing_figure_without_overwrite(runs, tmp_path, capsys) -> None:
    figures = tmp_path / "figures"
    plot = ["plot", "lens", str(runs["lens"]), "--output", str(figures)]
    assert main(plot) == 0
    capsys.readouterr()
    stamp = (figures / "lens_layers.png").stat().st_mtime_ns
    error = _one_line_error(main(plot), capsys)
    assert "lens_layers" in error and "--overwrite" in error
    assert (figures / "lens_layers.png").stat().st_mtime_ns == stamp
    assert main([*plot, "--overwrite"]) == 0


def test_out_of_range_settings_are_refused_before_any_work(networks, filtered, tmp_path, capsys):
    net = str(networks["resnet"])
    cases = [
        (["lens", "train", "--net", net, "--held-out", "1.5"], "--held-out"),
        (["lens", "train", "--net", net, "--held-out", "0"], "--held-out"),
        (["lens", "train", "--net", net, "--epochs", "0"], "--epochs"),
        (["refutations", "find", str(filtered), "--depths", "2"], "--depths"),
        (["refutations", "find", str(filtered), "--depths", "1", "1"], "--depths"),
        (["steer", str(filtered), "--probes", str(tmp_path), "--scales", "-1"], "--scales"),
        (["future-board", str(tmp_path / "s.h5"), "--epochs", "0"], "--epochs"),
        (["lens", "run", str(filtered), "--chunk-size", "0"], "--chunk-size"),
    ]
    for args, option in cases:
        error = _one_line_error(main([*args, "--output", str(tmp_path / "o")]), capsys)
        assert option in error, error
        assert not (tmp_path / "o").exists()


def test_steer_refuses_probes_of_another_network(filtered, tmp_path, capsys) -> None:
    probes = Path(__file__).resolve().parents[2] / "probes" / "maia-1900-move3-target"
    steer = ["steer", str(filtered), "--probes", str(probes), "--net", "lab-t6-128"]
    error = _one_line_error(main([*steer, "--output", str(tmp_path / "o")]), capsys)
    assert str(probes) in error and "maia-1900" in error
    assert not (tmp_path / "o").exists()


def test_future_board_hooks_take_globs(runs, tmp_path, capsys) -> None:
    board = ["future-board", str(runs["store"]), "--horizons", "0", "1", "--seeds", "0"]
    board += ["--epochs", "1", "--no-square-concepts", "--no-board-concepts", "--no-progress"]
    out = tmp_path / "glob"
    assert main([*board, "--hooks", "blocks.*.hook_resid_post", "--output", str(out)]) == 0
    hooks = [r["hook"] for r in json.loads((out / "results.json").read_text())["results"]]
    assert hooks and all(h.startswith("blocks.") and h.endswith("hook_resid_post") for h in hooks)
    capsys.readouterr()
    code = main([*board, "--hooks", "nothing.*", "--output", str(tmp_path / "none")])
    assert "nothing.*" in _one_line_error(code, capsys)


def test_future_board_reports_a_probe_that_collapsed_to_one_class(
    runs, tmp_path, capsys, monkeypatch
) -> None:
    """A probe predicting one class everywhere scores arrivals 0.000: it is reported as
    degenerate, not as an accuracy."""
    from leelalab.probing import concepts

    real = concepts._square_predictions

    def constant(probe, store, hook, rows):
        predicted, order = real(probe, store, hook, rows)
        return np.zeros_like(predicted), order

    monkeypatch.setattr(concepts, "_square_predictions", constant)
    board = ["future-board", str(runs["store"]), "--horizons", "0", "1", "--seeds", "0"]
    board += ["--epochs", "1", "--no-square-concepts", "--no-board-concepts", "--no-progress"]
    assert main([*board, "--output", str(tmp_path / "fb")]) == 0
    out = capsys.readouterr().out
    assert "degenerate: predicts one class" in out and "0.000" not in out
    results = json.loads((tmp_path / "fb" / "results.json").read_text())
    entry = results["results"][0]["targets"]["board_ply1"]
    assert entry["degenerate_seeds"] == 1
    # The real probes of the same run are not flagged.
    real_run = json.loads((runs["future-board"] / "results.json").read_text())
    flags = [r["targets"]["board_ply1"]["degenerate_seeds"] for r in real_run["results"]]
    assert flags == [0] * len(flags)


def test_lens_run_is_byte_identical_across_processes(networks, filtered, tmp_path) -> None:
    """Two runs with the same settings in fresh interpreters (other hash seeds) write the
    same bytes."""
    import os
    import subprocess
    import sys

    outputs = []
    for hash_seed in ("1", "2"):
        output = tmp_path / f"run{hash_seed}"
        code = (
            "import sys; from leelalab.cli import main; "
            f"sys.exit(main(['lens', 'run', {str(filtered)!r}, '--net', "
            f"{str(networks['resnet'])!r}, '--output', {str(output)!r}, '--no-progress']))"
        )
        environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
        environment["PYTHONPATH"] = os.pathsep.join(sys.path)
        done = subprocess.run(
            [sys.executable, "-c", code], env=environment, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        outputs.append(output)
    for name in ("lens.h5", "summary.json"):
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
