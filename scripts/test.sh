#!/usr/bin/env bash
# The test suite: unit tests of every equation, networks, trainer classes, and one end-to-end run
# of the real nnUNetv2_* commands on the CPU. Sets up ./.venv first. The fast lane (unit tests only, under
# 3 minutes): bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q --durations=15 tests "$@"
