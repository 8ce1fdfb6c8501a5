#!/usr/bin/env bash
# Set up everything fxmaps needs on a fresh machine: a virtual environment in .venv with
# fxmaps and its dev extras, and Graphviz's `dot` binary (Debian's graphviz package).
# Re-running it is cheap: pip runs again only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "fxmaps setup: creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
if [ ! -f .venv/.fxmaps-installed ] || [ pyproject.toml -nt .venv/.fxmaps-installed ]; then
    echo "fxmaps setup: installing fxmaps and its dependencies (torch is large; first run takes minutes)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet --progress-bar off -e ".[dev]"
    touch .venv/.fxmaps-installed
fi

if ! command -v dot >/dev/null 2>&1; then
    echo "fxmaps setup: installing Graphviz (dot) with apt-get"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    if ! { command -v apt-get >/dev/null 2>&1 \
            && $sudo apt-get update -qq && $sudo apt-get install -y -qq graphviz >/dev/null; }; then
        echo "fxmaps setup: could not install Graphviz; graph rendering needs its dot binary:" \
             "apt-get install graphviz, or see https://graphviz.org/download/" >&2
    fi
fi
