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
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models.evaluation import evaluate
from leelalab.puzzles.refutations import StockfishError, find_stockfish
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
    assert "policy KL tuned" in capsys.readouterr().out
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
    except StockfishError:
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
