#!/usr/bin/env bash
# Set up everything fxmaps needs on a fresh machine: a virtual environment in .venv with
# fxmaps and its dev extras, Graphviz's `dot` binary (Debian's graphviz package) and, for the
# report's tests in a real browser, Debian's chromium and chromium-driver packages.
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

# System packages, each installed only when its program is missing (so re-runs do nothing):
# Graphviz's `dot` draws graphs; Debian's chromium and chromium-driver let selenium drive the
# HTML report in headless Chromium (tests/test_report_browser.py, and the screenshot in
# tests/test_report.py; without them those tests skip). A failed install prints a note and
# setup goes on.
missing=()
command -v dot >/dev/null 2>&1 || missing+=("graphviz")
command -v chromium >/dev/null 2>&1 || missing+=("chromium")
command -v chromedriver >/dev/null 2>&1 || missing+=("chromium-driver")
if [ ${#missing[@]} -gt 0 ]; then
    echo "fxmaps setup: installing ${missing[*]} with apt-get"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    updated=false
    if command -v apt-get >/dev/null 2>&1 && $sudo apt-get update -qq; then updated=true; fi
    for package in "${missing[@]}"; do
        if $updated && $sudo env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq "$package" >/dev/null; then
            continue
        fi
        case $package in
            graphviz) echo "fxmaps setup: could not install Graphviz; graph rendering needs its" \
                           "dot binary: apt-get install graphviz, or see" \
                           "https://graphviz.org/download/" >&2 ;;
            chromium|chromium-driver)
                      echo "fxmaps setup: could not install $package; the report's browser" \
                           "tests will skip: apt-get install chromium chromium-driver" >&2 ;;
        esac
    done
fi
