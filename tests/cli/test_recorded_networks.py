"""Commands that reopen the networks a filter run recorded survive a reinstall of leelalab:
an absolute path into an earlier install's site-packages is gone after `pip install -e`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from leelalab.cli import main
from leelalab.inference.networks import resolve_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from positions import PUZZLES_CSV


def _filter(tmp_path: Path, weak: Path) -> Path:
    output = tmp_path / "run"
    args = ["puzzles", "filter", "--strong", "maia-1900", "--weak", str(weak), "--limit", "20"]
    assert main([*args, "--input", str(PUZZLES_CSV), "--output", str(output), "--no-progress"]) == 0
    return output


def test_corrupt_finds_a_bundled_network_whose_recorded_path_is_gone(tmp_path, capsys) -> None:
    # An earlier install's copy of weak-maia-1900, recorded by path, then removed.
    old_install = Path(shutil.copy(resolve_network("weak-maia-1900"), tmp_path / "weak.pb.gz"))
    run = _filter(tmp_path, old_install)
    settings = json.loads((run / "settings.json").read_text())
    assert settings["strong"]["source"] == "maia-1900"  # bundled: by name
    assert settings["weak"]["source"] == str(old_install)
    old_install.unlink()
    capsys.readouterr()
    assert main(["puzzles", "corrupt", str(run), "--no-progress"]) == 0
    assert "selected puzzles have a corruption" in capsys.readouterr().out
    corruption = json.loads((run / "run.json").read_text())["corruption"]["settings"]
    assert corruption["weak"]["source"] == "weak-maia-1900"


def test_corrupt_says_in_one_line_when_a_recorded_network_is_gone(tmp_path, capsys) -> None:
    weak = save_weights(random_resnet_weights(blocks=1, filters=8, seed=5), tmp_path / "w.pb.gz")
    run = _filter(tmp_path, weak)
    weak.unlink()
    capsys.readouterr()
    assert main(["puzzles", "corrupt", str(run), "--no-progress"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("leelalab: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(run / "settings.json") in lines[0] and "the weak network" in lines[0]
    assert "no longer exists" in lines[0] and "pass --weak" in lines[0]
    assert not (run / "corruptions.jsonl").exists()
