"""Every Python example in the README runs, in order, against the current package.

Examples that name files a user would bring (``net.pb.gz``, a T82 download) get small
synthetic stand-ins written by our own writer; examples that continue an earlier one share
its namespace, as a reader's session would.
"""

from __future__ import annotations

import re
from pathlib import Path

import chess
import numpy as np
import pytest
import torch

from leelalab.lc0 import encoding
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def block(containing: str) -> str:
    matches = [code for code in python_blocks() if containing in code]
    assert len(matches) == 1, f"expected one README example containing {containing!r}"
    return matches[0]


def test_the_readme_has_the_examples_this_test_runs() -> None:
    assert len(python_blocks()) == 8


def test_quick_start_and_lower_level_pieces(maia_path: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    save_weights(random_resnet_weights(blocks=1, filters=8, seed=3), "net.pb.gz")
    namespace: dict = {}
    exec(block('leelalab.load_network("maia-1900")'), namespace)
    # The README prints maia-1900's reply distribution after 1. e4; check it is still true.
    top = namespace["evaluation"].top_moves(3)
    assert [move for move, _ in top] == ["c7c5", "e7e5", "e7e6"]
    assert [round(probability, 3) for _, probability in top] == [0.304, 0.263, 0.135]
    exec(block('load_weights("net.pb.gz")'), namespace)
    assert namespace["output"].policy_logits.shape == (1, 1858)


def test_loading_a_real_transformer_example(tmp_path, monkeypatch) -> None:
    import leelalab

    monkeypatch.chdir(tmp_path)
    weights = random_transformer_weights(layers=2, d_model=16, heads=2, multihead=True, seed=1)
    save_weights(weights, "768x15x24h-t82-swa-7464000.pb.gz")
    namespace: dict = {"leelalab": leelalab}
    exec(block("768x15x24h-t82"), namespace)
    assert namespace["net"].policy_head_name == "optimistic"


def test_shipped_transformer_example() -> None:
    namespace: dict = {}
    exec(block('load_network("lab-t6-128")'), namespace)
    net, board = namespace["net"], namespace["board"]
    # The README shows the shipped transformer's replies to 1. e4; check they still hold.
    top = net.evaluate(board)[0].top_moves(3)
    assert [move for move, _ in top] == ["e7e5", "c7c5", "e7e6"]
    assert [round(probability, 3) for _, probability in top] == [0.275, 0.257, 0.111]
    pattern = namespace["cache"]["blocks.1.attn.hook_pattern"]
    assert pattern.shape == (1, 8, 64, 64)
    # Post-softmax attention: every query's row over the keys is a distribution.
    torch.testing.assert_close(pattern.sum(-1), torch.ones(1, 8, 64))


def test_patching_and_square_frames_example(tmp_path) -> None:
    import leelalab

    path = tmp_path / "net.pb.gz"
    save_weights(random_transformer_weights(layers=10, d_model=32, heads=16, seed=2), path)
    net = leelalab.load_network(path)
    board = chess.Board("r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3")
    corrupted = board.copy()
    corrupted.remove_piece_at(chess.C6)
    clean_planes = torch.from_numpy(encoding.encode_boards([board], input_format=1))
    corrupted_planes = torch.from_numpy(encoding.encode_boards([corrupted], input_format=1))
    namespace = {
        "chess": chess,
        "net": net,
        "board": board,
        "clean_planes": clean_planes,
        "corrupted_planes": corrupted_planes,
        "target_squares": [chess.E5],
        "q": chess.F3,
        "k": chess.E5,
        "heatmap_model": np.arange(64.0),
    }
    exec(block("replace_at_squares"), namespace)
    assert torch.isfinite(namespace["patched"].policy_logits).all()
    assert sorted(namespace["heatmap_real"].tolist()) == list(range(64))


def test_hook_points_example(tmp_path) -> None:
    import leelalab

    path = tmp_path / "net.pb.gz"
    save_weights(random_resnet_weights(blocks=4, filters=8, seed=4), path)
    net = leelalab.load_network(path)
    planes = torch.from_numpy(encoding.encode_boards([chess.Board()], input_format=1))
    namespace = {"net": net, "planes": planes}
    exec(block("def zero_e4"), namespace)
    assert namespace["cache"]["blocks.3.hook_resid_post"].shape == (1, 64, 8)


@pytest.mark.parametrize("code", python_blocks())
def test_every_example_compiles(code: str) -> None:
    compile(code, "README.md", "exec")


def test_logit_and_tuned_lens_example(maia_path: Path) -> None:
    namespace: dict = {}
    exec(block("lens_outputs(net, planes)"), namespace)
    assert namespace["tuned"].policy_logits.shape == namespace["out"].policy_logits.shape


def test_the_experiment_contract_example(tmp_path, monkeypatch) -> None:
    from leelalab.analyses.themes import ThemeResults
    from leelalab.cli.main import main

    monkeypatch.chdir(tmp_path)
    save_weights(random_resnet_weights(blocks=1, filters=8, seed=3), "net.pb.gz")
    loose = ["--hard", "1", "--correct", "0", "--forcing", "0", "--limit", "60"]
    filter_args = ["puzzles", "filter", "--net", "net.pb.gz", "--weak", "net.pb.gz"]
    assert main([*filter_args, *loose, "--output", "runs/sample", "--no-progress"]) == 0
    namespace: dict = {}
    exec(block("ThemeSettings(min_puzzles=5"), namespace)
    again = namespace["again"]
    assert isinstance(again, ThemeResults)
    assert [a.network for a in again.analyses] == ["strong", "weak"]
    assert again.analyses[0].n == namespace["results"].analyses[0].n > 0
    record = (tmp_path / "runs" / "themes" / "run.json").read_text()
    assert '"outputs"' in record and "themes.json" in record
    from leelalab.runs.experiment import SettingsError

    with pytest.raises(SettingsError, match="--min-puzzles must be at least 1"):
        namespace["ThemeSettings"](min_puzzles=0)
