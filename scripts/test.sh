#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine (system packages, a venv with the
# package and all extras) and run the tests. The README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup-system.sh
python3 -m venv .venv
# torch is pinned to the CPU build (2.13.0); install it first so no other package pulls a CUDA build.
.venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/pip install -q --disable-pip-version-check -e ".[all,dev]"
exec .venv/bin/python -m pytest -q "$@"
