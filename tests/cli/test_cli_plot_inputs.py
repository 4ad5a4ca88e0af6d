"""``leelalab plot …`` reads its inputs as loaded results before drawing: a folder of another
kind, a folder without the file a figure needs, or a truncated file is one line naming the
file, and the figure folder is not made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="needs the viz extra")

from leelalab.cli.main import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ANOMALY_RUN = REPO / "anomaly" / "maia-1900-backdoor"
"""A committed anomaly run: results.json without scores.h5 (not committed)."""


def _one_line_error(code: int, capsys: pytest.CaptureFixture[str]) -> str:
    error = capsys.readouterr().err
    assert code != 0, error
    assert len(error.strip().splitlines()) == 1, error
    assert "Traceback" not in error and "internal error" not in error, error
    return error


def _scores(path: Path, *, positions: int = 20, drop: str | None = None) -> None:
    import h5py
    import numpy as np

    labels = np.arange(positions) % 2 == 0
    with h5py.File(path, "w") as handle:
        if drop != "labels":
            handle["labels"] = labels
        if drop != "scores":
            handle["scores/mahalanobis/aggregate:mean"] = np.linspace(0, 1, positions)


def test_plot_anomaly_of_a_results_only_folder_names_the_missing_scores(tmp_path, capsys):
    out = tmp_path / "figures"
    code = main(["plot", "anomaly", str(ANOMALY_RUN), "--output", str(out)])
    error = _one_line_error(code, capsys)
    assert f"{ANOMALY_RUN / 'scores.h5'}: no such scores file" in error
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truncated", "labels", "scores", "not hdf5"])
def test_plot_anomaly_of_damaged_scores_is_one_line(damage, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ANOMALY_RUN / "results.json", run / "results.json")
    scores = run / "scores.h5"
    if damage == "not hdf5":
        scores.write_text("not an HDF5 file\n")
    else:
        _scores(scores, drop=damage if damage in ("labels", "scores") else None)
    if damage == "truncated":
        scores.write_bytes(scores.read_bytes()[: scores.stat().st_size // 2])
    out = tmp_path / "figures"
    error = _one_line_error(main(["plot", "anomaly", str(run), "--output", str(out)]), capsys)
    assert str(scores) in error
    assert not out.exists()


@pytest.mark.parametrize("kind", ["empty", "lens", "future-board"])
def test_plot_anomaly_of_another_kind_of_folder_is_one_line(kind, tmp_path, capsys):
    run = tmp_path / kind
    run.mkdir()
    if kind == "lens":
        (run / "summary.json").write_text(json.dumps({"format": "leelalab.lens/1"}))
    if kind == "future-board":
        (run / "results.json").write_text(json.dumps({"format": "leelalab.future-board/1"}))
    out = tmp_path / "figures"
    error = _one_line_error(main(["plot", "anomaly", str(run), "--output", str(out)]), capsys)
    assert str(run / "results.json") in error
    assert not out.exists()


def test_plot_anomaly_draws_a_run_with_its_scores(tmp_path, capsys):
    run = tmp_path / "maia-1900-backdoor"
    run.mkdir()
    shutil.copy(ANOMALY_RUN / "results.json", run / "results.json")
    _scores(run / "scores.h5")
    out = tmp_path / "figures"
    assert main(["plot", "anomaly", str(run), "--output", str(out)]) == 0
    names = sorted(path.name for path in out.iterdir())
    assert names == [
        f"anomaly_{figure}{suffix}"
        for figure in ("auroc_backdoor_maia-1900-backdoor", "coverage_risk",
                       "histograms_backdoor_maia-1900-backdoor")
        for suffix in (".pdf", ".png")
    ]  # fmt: skip
    # Drawn figures are not replaced without --overwrite; a user's file beside them stays.
    (out / "notes.txt").write_text("mine")
    before = (out / "anomaly_coverage_risk.png").read_bytes()
    capsys.readouterr()
    error = _one_line_error(main(["plot", "anomaly", str(run), "--output", str(out)]), capsys)
    assert "pass --overwrite" in error
    assert (out / "anomaly_coverage_risk.png").read_bytes() == before
    assert main(["plot", "anomaly", str(run), "--output", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"


def _foreign_folder(folder: Path) -> Path:
    """A leelalab output of another kind: a lens run's summary and record."""
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"format": "leelalab.lens/1"}))
    (folder / "results.json").write_text(json.dumps({"format": "leelalab.future-board/1"}))
    (folder / "run.json").write_text(json.dumps({"format": "leelalab.run/1", "command": "lens"}))
    (folder / "settings.json").write_text(json.dumps({"stratum": "paper"}))
    return folder


@pytest.mark.parametrize("option", ["--search", "--stratum-search", "--dataset"])
def test_plot_analyses_of_another_kind_of_folder_is_one_line(option, tmp_path, capsys):
    wrong = _foreign_folder(tmp_path / "lens")
    out = tmp_path / "figures"
    code = main(["plot", "analyses", option, str(wrong), "--output", str(out)])
    assert str(wrong) in _one_line_error(code, capsys)
    assert not out.exists()


def test_plot_training_of_another_commands_record_is_one_line(tmp_path, capsys):
    network = tmp_path / "net.pb.gz"
    network.write_bytes(b"weights")
    record = tmp_path / "net.pb.gz.run.json"
    record.write_text(json.dumps({"format": "leelalab.run/1", "command": "puzzles filter"}))
    out = tmp_path / "figures" / "training.pdf"
    code = main(["plot", "training", str(network), "--output", str(out)])
    assert str(record) in _one_line_error(code, capsys)
    assert not out.parent.exists()


@pytest.mark.parametrize("damage", ["foreign", "truncated", "empty"])
def test_plot_patching_of_another_kind_of_folder_is_one_line(damage, tmp_path, capsys):
    run = tmp_path / "run"
    if damage == "foreign":
        _foreign_folder(run)
    else:
        run.mkdir()
    if damage == "truncated":
        (run / "patching.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    out = tmp_path / "figures"
    code = main(["plot", "patching", str(run), "--output", str(out)])
    error = _one_line_error(code, capsys)
    assert str(run / "patching.h5" if damage == "truncated" else run) in error
    assert not out.exists()


def test_plot_probes_of_another_kind_of_folder_is_one_line(tmp_path, capsys):
    wrong = _foreign_folder(tmp_path / "lens")
    out = tmp_path / "figures"
    code = main(["plot", "probes", str(wrong), "--output", str(out)])
    assert str(wrong / "results.json") in _one_line_error(code, capsys)
    assert not out.exists()
