"""The one run record, reader and format scheme (leelalab.runs.records)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leelalab.runs.records import (
    LEGACY_FORMATS,
    RUN_RECORD_FORMAT,
    RecordError,
    canonical_format,
    format_name,
    read_json,
    read_result,
    read_run_record,
    read_safetensors,
    write_run_record,
)
from leelalab.runs.results import RunDirectory, write_h5_atomically


def test_format_names_follow_one_scheme() -> None:
    assert format_name("residual-patching", 2) == "leelalab.residual-patching/2"
    for bad in ("Residual", "residual_patching", "a.b", ""):
        with pytest.raises(ValueError):
            format_name(bad)
    with pytest.raises(ValueError):
        format_name("lens", 0)


def test_legacy_names_read_as_their_current_name() -> None:
    for old, new in LEGACY_FORMATS.items():
        assert canonical_format(old) == new
        assert canonical_format(new) == new
    assert canonical_format("leelalab.lens") is None
    assert canonical_format(3) is None


def test_run_record_of_a_directory_lists_its_outputs(tmp_path: Path) -> None:
    (tmp_path / "results.h5").write_bytes(b"x")
    (tmp_path / "chunks").mkdir()
    (tmp_path / "chunks" / "00000.h5").write_bytes(b"y")
    path = write_run_record(
        tmp_path, {"seed": 3}, seconds=1.234, inputs={"data": tmp_path / "results.h5"}
    )
    record = json.loads(path.read_text())
    assert path == tmp_path / "run.json"
    assert record["format"] == RUN_RECORD_FORMAT
    assert record["seed"] == 3 and record["seconds"] == 1.23
    assert set(record["versions"]) >= {"leelalab", "torch", "python"}
    assert record["outputs"] == ["chunks/00000.h5", "results.h5"]
    assert len(record["inputs"]["data"]["sha256"]) == 64
    assert read_run_record(tmp_path)["seed"] == 3


def test_run_record_of_a_file_sits_beside_it(tmp_path: Path) -> None:
    network = tmp_path / "net.pb.gz"
    network.write_bytes(b"n")
    path = write_run_record(network, {"epochs": 2}, seconds=0.5)
    assert path == tmp_path / "net.pb.gz.run.json"
    assert "outputs" not in json.loads(path.read_text())


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such results file"),
        ('{"format": "leelalab.lens/1", "layers": [1, 2', "truncated"),
        ("[1, 2]", "not a JSON object"),
        (
            '{"format": "leelalab.steering/1"}',
            "a leelalab.steering/1 file, expected leelalab.lens/1",
        ),
        ('{"layers": []}', "not a leelalab file of this kind"),
        ('{"format": "leelalab.lens/7"}', "this leelalab reads leelalab.lens/1"),
        (b"\xff\xfe\x00", "unreadable"),
    ],
)
def test_bad_json_results_are_one_line_naming_the_file(
    tmp_path: Path, content: str | bytes | None, fragment: str
) -> None:
    path = tmp_path / "summary.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(RecordError) as caught:
        read_json(
            path,
            expect_format="leelalab.lens/1",
            hint="run `leelalab lens run` first",
            what="results file",
        )
    message = str(caught.value)
    assert str(path) in message and fragment in message and "\n" not in message


def test_legacy_format_name_in_an_h5_file_is_read(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "results.h5"
    write_h5_atomically(path, {"x": np.arange(3)}, {"format": "leelalab.patching.residual/1"})
    arrays, attrs = read_result(path, "leelalab.residual-patching/1")
    assert arrays["x"].tolist() == [0, 1, 2]
    with pytest.raises(RecordError, match="expected leelalab.lens/1"):
        read_result(path, "leelalab.lens/1")
    (tmp_path / "cut.h5").write_bytes(path.read_bytes()[:100])
    with pytest.raises(RecordError, match="cut.h5"):
        read_result(tmp_path / "cut.h5", "leelalab.residual-patching/1")


def _finished_run(path: Path, settings: dict[str, object]) -> None:
    with RunDirectory(path, settings) as run:
        (path / "results.h5").write_bytes(b"r")
        (path / "figure.png").write_bytes(b"p")
        run.write_record()


def test_overwrite_keeps_a_users_files(tmp_path: Path) -> None:
    output = tmp_path / "out"
    _finished_run(output, {"seed": 1})
    (output / "notes.txt").write_text("my notes")
    (output / "mine.json").write_text("{}")  # a leelalab-looking name the run did not write
    with RunDirectory(output, {"seed": 2}, overwrite=True) as run:
        assert not (output / "results.h5").exists() and not (output / "figure.png").exists()
        (output / "results.h5").write_bytes(b"new")
        run.write_record()
    assert (output / "notes.txt").read_text() == "my notes"
    assert (output / "mine.json").read_text() == "{}"
    record = json.loads((output / "run.json").read_text())
    assert record["seed"] == 2 and record["outputs"] == ["results.h5", "settings.json"]
    # And again: the user's files are still not counted as the run's.
    with RunDirectory(output, {"seed": 3}, overwrite=True) as run:
        run.write_record()
    assert (output / "notes.txt").is_file() and (output / "mine.json").is_file()


def test_a_run_that_fails_early_leaves_a_users_files(tmp_path: Path) -> None:
    output = tmp_path / "out"
    _finished_run(output, {"seed": 1})
    (output / "notes.txt").write_text("my notes")
    with pytest.raises(RuntimeError), RunDirectory(output, {"seed": 2}, overwrite=True):
        raise RuntimeError("input turned out bad")
    assert (output / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in output.iterdir()) == ["notes.txt"]


def test_overwrite_refuses_a_folder_that_is_not_a_leelalab_output(tmp_path: Path) -> None:
    output = tmp_path / "thesis"
    output.mkdir()
    (output / "chapter1.tex").write_text("text")
    with pytest.raises(RecordError, match="not a leelalab output directory"):
        RunDirectory(output, {"seed": 1}, overwrite=True)
    assert (output / "chapter1.tex").read_text() == "text"


def test_older_records_without_outputs_remove_only_leelalab_files(tmp_path: Path) -> None:
    output = tmp_path / "old"
    output.mkdir()
    (output / "run.json").write_text('{"seed": 1}')
    (output / "results.h5").write_bytes(b"r")
    (output / "notes.txt").write_text("keep")
    with RunDirectory(output, {"seed": 2}, overwrite=True) as run:
        run.write_record()
    assert (output / "notes.txt").read_text() == "keep"
    assert not (output / "results.h5").exists()


def test_a_field_may_be_called_settings(tmp_path: Path) -> None:
    path = write_run_record(tmp_path, {"seed": 1}, settings={"kind": "ood"})
    assert json.loads(path.read_text())["settings"] == {"kind": "ood"}


def test_an_h5_file_with_groups_is_one_line(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "acts.h5"
    with h5py.File(path, "w") as handle:
        handle.create_group("block0")
    with pytest.raises(RecordError, match="holds a group 'block0'"):
        read_result(path, "leelalab.lens/1")


def test_amending_a_record_lists_added_files_and_keeps_the_rest(tmp_path: Path) -> None:
    from leelalab.runs.records import amend_run_record

    (tmp_path / "dataset.jsonl").write_text("{}\n")
    write_run_record(tmp_path, {"seed": 1}, seconds=2.0)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "corruptions.jsonl").write_text("{}\n")
    amend_run_record(tmp_path, add_outputs=["corruptions.jsonl"], corruption={"kept": 3})
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["outputs"] == ["corruptions.jsonl", "dataset.jsonl"]
    assert record["corruption"] == {"kept": 3} and record["seconds"] == 2.0


def test_a_json_file_cut_inside_a_string_is_called_truncated(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text('{"format": "leelalab.lens/1", "name": "abc')
    with pytest.raises(RecordError, match="truncated"):
        read_json(path)


@pytest.mark.parametrize("framework", ["pt", "np"])
def test_safetensors_are_read_or_refused_in_one_line(framework, tmp_path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "w.safetensors"
    save_file({"weight": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(path))
    tensors = read_safetensors(path, framework=framework)
    assert list(tensors) == ["weight"] and tuple(tensors["weight"].shape) == (2, 3)
    assert float(tensors["weight"][1, 2]) == 5.0
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(RecordError, match=r"w\.safetensors: not a readable safetensors.*; hint"):
        read_safetensors(path, framework=framework, hint="hint")
    path.write_text('{"format": "leelalab.other/1"}\n')
    with pytest.raises(RecordError, match=r"w\.safetensors: not a readable"):
        read_safetensors(path, framework=framework)
    with pytest.raises(RecordError, match=r"missing\.safetensors: no such file"):
        read_safetensors(tmp_path / "missing.safetensors", framework=framework)


def test_every_format_name_in_the_package_follows_the_scheme() -> None:
    import re

    package = Path(__file__).resolve().parents[2] / "leelalab"
    written = set()
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        written |= set(re.findall(r'"(leelalab\.[A-Za-z0-9_.-]+/[0-9]+)"', text))
        for kind, version in re.findall(r'format_name\("([^"]+)"(?:, ([0-9]+))?\)', text):
            written.add(format_name(kind, int(version or 1)))
    assert len(written) >= 20
    for name in written:
        assert name in LEGACY_FORMATS or canonical_format(name) == name, name


def test_the_record_format_stays_and_a_results_format_is_recorded_beside_it(tmp_path: Path) -> None:
    path = write_run_record(tmp_path, {"format": "leelalab.themes/1"}, format="leelalab.themes/1")
    record = json.loads(path.read_text())
    assert record["format"] == RUN_RECORD_FORMAT
    assert record["results_format"] == "leelalab.themes/1"
