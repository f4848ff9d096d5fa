#!/usr/bin/env bash
# The main job on the embedded default: a 4-channel BraTS-like phantom -> nnUNetv2_plan_and_preprocess ->
# nnUNetv2_train -tr DANTETrainer_demo -> nnUNetv2_predict on limited-only scans -> dante_nnunet export
# -> plugin-free nnUNetv2_predict -> Dice. CPU, about 4.5 minutes. Sets up ./.venv first.
# Usage: bash scripts/demo.sh [WORKDIR]   (default ./demo_output; must be new or empty)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/dante_nnunet demo --workdir "${1:-demo_output}"
