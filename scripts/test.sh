#!/usr/bin/env bash
# The test suite: unit tests of every equation, networks, trainer classes, and end-to-end runs of the
# real nnUNetv2_* commands on the CPU. Sets up ./.venv first. Runs on DANTE_TEST_WORKERS pytest-xdist
# workers (default 2; 0 runs in this process), a test file per worker. The fast lane (unit tests only,
# under 3 minutes): bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q --durations=15 -n "${DANTE_TEST_WORKERS:-2}" --dist loadfile tests "$@"
