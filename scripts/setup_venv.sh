#!/usr/bin/env bash
# Create ./.venv (if missing) and install dante-nnunet with its test extras into it.
# pip takes torch from what nnunetv2 asks for (unpinned; see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
# the install is editable: code changes need no reinstall, only a changed pyproject.toml does
STAMP=.venv/.dante_nnunet_installed
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] && .venv/bin/python -c "import dante_nnunet, nnunetv2, pytest" 2>/dev/null; then
    echo "[setup] .venv is up to date with pyproject.toml (delete $STAMP to reinstall)"
    exit 0
fi
echo "[setup] installing dante-nnunet (editable) and its dependencies"
# filter pip's noise about absent local index folders; with pipefail a failing pip still fails the script
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | { grep -v "is neither a file nor a directory" || true; }
.venv/bin/python -c "import dante_nnunet, nnunetv2, torch; print('[setup] torch', torch.__version__)"
echo "$WANT" > "$STAMP"
