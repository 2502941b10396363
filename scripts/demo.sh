#!/usr/bin/env bash
# Install the package in a venv and retarget the built-in sample motion to the G1, then evaluate it.
# The README's first command.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/pip install -q --disable-pip-version-check -e ".[all]"
mkdir -p out
.venv/bin/humanoid-retarget sample -o out/sample_walk.bvh
.venv/bin/humanoid-retarget retarget out/sample_walk.bvh -o out/sample_walk.npz
.venv/bin/humanoid-retarget eval out/sample_walk.npz --human out/sample_walk.bvh
.venv/bin/humanoid-retarget export out/sample_walk.npz --format csv -o out/sample_walk.csv
echo "wrote out/sample_walk.npz (motion, format 1) and out/sample_walk.csv (36-column G1 CSV)"
