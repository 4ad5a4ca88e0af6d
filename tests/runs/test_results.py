"""Result files: HDF5 round trips, resumable chunks, settings checks, and the life cycle of
output directories (overwrite, resume by hashes, nothing left behind by an early failure)."""

from __future__ import annotations

import numpy as np
import pytest

from leelalab.runs.results import (
    ChunkedRun,
    ChunkPlan,
    ResultsError,
    RunDirectory,
    read_h5,
    run_in_chunks,
    same_settings,
    settings_difference,
    write_h5_atomically,
)


def test_h5_round_trip_with_strings(tmp_path) -> None:
    path = tmp_path / "r.h5"
    write_h5_atomically(path, {"ids": ["a", "bé"], "x": np.arange(6.0).reshape(2, 3)}, {"k": 1})
    arrays, attrs = read_h5(path)
    assert list(arrays["ids"]) == ["a", "bé"]
    np.testing.assert_array_equal(arrays["x"], np.arange(6.0).reshape(2, 3))
    assert attrs["k"] == 1
    assert not (tmp_path / "r.h5.tmp").exists()
    with pytest.raises(ResultsError, match="no such results file"):
        read_h5(tmp_path / "missing.h5")
    (tmp_path / "bad.h5").write_text("nope")
    with pytest.raises(ResultsError, match="not a readable HDF5"):
        read_h5(tmp_path / "bad.h5")


def test_settings_compare_hashes_not_paths() -> None:
    base = {
        "network": "/a/net.pb.gz",
        "network_sha256": "x",
        "dataset": "/d",
        "dataset_sha256": "d",
        "layers": [1],
        "strong": {"source": "maia-1900", "sha256": "s", "history": "lc0"},
    }
    moved = {
        **base,
        "network": "/elsewhere/net.pb.gz",
        "dataset": "/e",
        "strong": {"source": "/site-packages/maia-1900.pb.gz", "sha256": "s", "history": "lc0"},
    }
    assert same_settings(base, moved)
    assert not same_settings(base, {**base, "network_sha256": "y"})
    assert not same_settings(base, {**base, "layers": [2]})
    assert not same_settings(base, {**base, "strong": {**base["strong"], "sha256": "t"}})
    assert settings_difference(base, {**base, "layers": (2,), "dataset": "/f"}) == ["layers"]
    # A path without a hash beside it is all there is to compare.
    assert not same_settings({"network": "a", "network_sha256": None}, {"network": "b"})
    assert same_settings({"layers": (1, 2)}, {"layers": [1, 2]})  # as read back from JSON
    # `analyze search` records {"path", "sha256"} per network: the hash decides there too.
    search = {"networks": {"weak": {"path": "/old/site-packages/w.pb.gz", "sha256": "w"}}}
    assert same_settings(search, {"networks": {"weak": {"path": "weak-maia-1900", "sha256": "w"}}})
    # An anomaly task's student reference lives in the task folder: a copied task resumes.
    student = {"reference": "/old/task/student.pb.gz", "reference_sha256": "r"}
    assert same_settings(student, {**student, "reference": "/new/task/student.pb.gz"})
    assert not same_settings(student, {**student, "reference_sha256": "q"})
    assert not same_settings(search, {"networks": {"weak": {"path": "/x", "sha256": "v"}}})


def test_run_in_chunks_resumes_and_merges_in_order(tmp_path) -> None:
    items = list(range(10))
    seen: list[list[int]] = []

    def compute(chunk: list[int]) -> dict[str, np.ndarray]:
        seen.append(chunk)
        if len(seen) == 3 and not (tmp_path / "stop").exists():
            (tmp_path / "stop").touch()
            raise KeyboardInterrupt
        return {"value": np.array(chunk) * 2, "ids": [f"p{i}" for i in chunk]}

    plan = ChunkPlan("out.h5", attrs={"format": "test"}, chunk_size=3)
    with pytest.raises(KeyboardInterrupt):
        run_in_chunks(items, tmp_path / "run", {"a": 1}, compute, plan, progress=False)
    path = run_in_chunks(items, tmp_path / "run", {"a": 1}, compute, plan, progress=False)
    assert seen == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [6, 7, 8], [9]]  # done chunks not redone
    arrays, attrs = read_h5(path)
    np.testing.assert_array_equal(arrays["value"], np.arange(10) * 2)
    assert list(arrays["ids"]) == [f"p{i}" for i in range(10)] and attrs["format"] == "test"
    with pytest.raises(ResultsError, match="other settings"):
        ChunkedRun(tmp_path / "run", {"a": 2, "chunk_size": 3})


OPTIONS = dict(plan=ChunkPlan("out.h5", attrs={"format": "test"}, chunk_size=2), progress=False)


def _doubling(calls: list[list[int]], fail_at: int | None = None):
    def compute(chunk: list[int]) -> dict[str, np.ndarray]:
        calls.append(chunk)
        if fail_at is not None and len(calls) == fail_at:
            raise RuntimeError("boom")
        return {"value": np.array(chunk) * 2}

    return compute


def test_a_run_that_fails_before_its_first_chunk_leaves_nothing(tmp_path) -> None:
    output = tmp_path / "new" / "nested" / "run"
    with pytest.raises(RuntimeError, match="boom"):
        run_in_chunks([1, 2, 3], output, {"a": 1}, _doubling([], fail_at=1), **OPTIONS)
    assert list(tmp_path.iterdir()) == []  # the folders it made are gone too
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError):
        run_in_chunks([1, 2, 3], empty, {"a": 1}, _doubling([], fail_at=1), **OPTIONS)
    assert empty.is_dir() and list(empty.iterdir()) == []  # there before: kept, empty


def test_other_settings_are_refused_and_overwrite_replaces(tmp_path) -> None:
    output = tmp_path / "run"
    with pytest.raises(RuntimeError):
        run_in_chunks([1, 2, 3, 4, 5], output, {"a": 1}, _doubling([], fail_at=2), **OPTIONS)
    assert [p.name for p in (output / "chunks").iterdir()] == ["00000.h5"]  # kept: resumable
    with pytest.raises(ResultsError, match=r"other settings \(differing: a\); pass --overwrite"):
        run_in_chunks([1, 2, 3, 4, 5], output, {"a": 2}, _doubling([]), **OPTIONS)
    calls: list[list[int]] = []
    path = run_in_chunks(
        [1, 2, 3, 4, 5], output, {"a": 2}, _doubling(calls), overwrite=True, **OPTIONS
    )
    assert calls == [[1, 2], [3, 4], [5]]  # the old chunk was not reused
    assert read_h5(path)[0]["value"].tolist() == [2, 4, 6, 8, 10]
    assert '"a": 2' in (output / "settings.json").read_text()


def test_a_complete_run_is_returned_without_recomputing(tmp_path) -> None:
    output = tmp_path / "run"
    path = run_in_chunks([1, 2, 3], output, {"a": 1}, _doubling([]), **OPTIONS)
    record = (output / "run.json").read_text()
    calls: list[list[int]] = []
    assert run_in_chunks([1, 2, 3], output, {"a": 1}, _doubling(calls), **OPTIONS) == path
    assert calls == [] and (output / "run.json").read_text() == record


def test_directories_that_are_not_runs_are_never_replaced(tmp_path) -> None:
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(ResultsError, match="not a leelalab output directory"):
            run_in_chunks([1], foreign, {}, _doubling([]), overwrite=overwrite, **OPTIONS)
    assert (foreign / "chapter1.tex").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ResultsError, match="is not a directory"):
        RunDirectory(tmp_path / "file", {})
    # Results of an older leelalab (run.json, no settings.json): only with overwrite.
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text("{}")
    with pytest.raises(ResultsError, match="without a settings.json.*--overwrite"):
        RunDirectory(old, {})
    with RunDirectory(old, {"b": 1}, overwrite=True):
        pass
    assert sorted(p.name for p in old.iterdir()) == ["settings.json"]


def test_chunked_run_without_with_creates_its_directory_on_first_write(tmp_path) -> None:
    run = ChunkedRun(tmp_path / "run", {"a": 1})
    assert not (tmp_path / "run").exists()  # inspecting creates nothing
    run.write_chunk(0, {"x": np.arange(3)})
    assert run.done(0) and (tmp_path / "run" / "settings.json").is_file()
    assert ChunkedRun(tmp_path / "run", {"a": 1}).resuming


def test_discarding_a_work_folder_removes_only_what_leelalab_wrote(tmp_path) -> None:
    work = tmp_path / "out.h5.parts"
    with RunDirectory(work, {"seed": 0}) as run:
        (work / "part-00000.h5").write_bytes(b"part")
        (work / "chunks").mkdir()
        (work / "chunks" / "00000.jsonl").write_text("{}\n")
    run.discard()
    assert not work.exists()
    run.discard()  # gone already: nothing to do
    # A user's file put into the work folder survives it, and keeps the folder.
    with RunDirectory(work, {"seed": 0}) as run:
        (work / "part-00000.h5").write_bytes(b"part")
        (work / "notes.txt").write_text("mine")
    run.discard()
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]


def test_resuming_and_keeping_a_run_are_told(tmp_path, caplog) -> None:
    output = tmp_path / "run"
    with pytest.raises(RuntimeError):
        run_in_chunks([1, 2, 3, 4, 5], output, {"a": 1}, _doubling([], fail_at=2), **OPTIONS)
    with caplog.at_level("INFO", logger="leelalab"):
        run_in_chunks([1, 2, 3, 4, 5], output, {"a": 1}, _doubling([]), **OPTIONS)
        assert f"resuming {output}: 1 of 3 chunks done" in caplog.text
        caplog.clear()
        run_in_chunks([1, 2, 3, 4, 5], output, {"a": 1}, _doubling([]), **OPTIONS)
        assert "complete with these settings: kept" in caplog.text


def test_the_command_line_shows_the_library_notes_on_stderr(capsys) -> None:
    import logging

    from leelalab.cli.main import _show_notes

    _show_notes()
    logging.getLogger("leelalab.runs").info("resuming %s: %d of %d chunks done", "x", 1, 3)
    assert capsys.readouterr().err == "leelalab: resuming x: 1 of 3 chunks done\n"
