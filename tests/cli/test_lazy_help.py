"""Help screens stay fast: no command's ``--help`` imports torch, h5py or sklearn (the
library code each command runs is imported inside its run function only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import leelalab

HEAVY = ("torch", "h5py", "sklearn")

# One subprocess walks the whole argparse tree (a fresh interpreter per command would take
# minutes); it prints the commands whose help pulled in a heavy module.
_WALK = textwrap.dedent(
    """
    import argparse, contextlib, io, json, sys

    from leelalab.cli.main import build_parser, main

    def paths(parser, prefix=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield prefix + (name,)
                    yield from paths(sub, prefix + (name,))

    heavy = HEAVY
    report = {"commands": 0, "offenders": []}
    for path in [()] + list(paths(build_parser())):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main([*path, "--help"])
            except SystemExit:
                pass
        report["commands"] += 1
        loaded = [name for name in heavy if name in sys.modules]
        if loaded:
            report["offenders"].append([" ".join(path), loaded])
            break
    print(json.dumps(report))
    """
)


def test_help_of_every_command_imports_no_heavy_library() -> None:
    code = f"HEAVY = {HEAVY!r}\n" + _WALK
    # The child imports the same leelalab as this test (a worktree, not the installed copy).
    root = str(Path(leelalab.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["offenders"] == [], report
    assert report["commands"] > 40, report  # the walk really visited the tree
