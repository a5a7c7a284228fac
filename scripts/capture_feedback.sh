#!/usr/bin/env bash
# Run the commands of tests/test_terminal_feedback.py in tmux (160x50) and write what their
# terminals showed to docs/terminal_feedback.txt (or to the file given as $1).
set -eu
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/docs/terminal_feedback.txt}")
mkdir -p "$(dirname "$OUT")"
cd "$ROOT"
VERIFRIEND_FEEDBACK_OUT=$OUT .venv/bin/python -m pytest -q -p no:cacheprovider \
    tests/test_terminal_feedback.py
echo "wrote $OUT"
