#!/bin/sh
# Install steps of the CPU inference worker image: the Dockerfile runs exactly this, and so does
# tests/test_worker_image.py in a clean venv (no Docker engine on the build machines).
# The torch-free core plus prefect-dask; the shipped models come inside the package.
# Usage: docker/install.sh VENV_DIR [SRC_DIR]
set -eu
VENV=${1:?usage: install.sh VENV_DIR [SRC_DIR]}
SRC=${2:-$(cd "$(dirname "$0")/.." && pwd)}
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$SRC[dask]"
# The image must stay torch-free: fail the build if anything pulled torch in.
"$VENV/bin/python" -c "import importlib.util, sys; sys.exit('torch got installed' if importlib.util.find_spec('torch') else 0)"
