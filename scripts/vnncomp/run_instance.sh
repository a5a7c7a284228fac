#!/usr/bin/env bash
# VNN-COMP harness: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
#
# Runs `verifriend vnncomp ONNX VNNLIB --timeout TIMEOUT --out RESULTS_FILE`
# (vnncomp2021/2022 `vnncomp_scripts` convention): the result file holds sat (with the
# counterexample), unsat, timeout or unknown; the timeout counts the verifier's start-up.
# The verifier is $VERIFRIEND if set, else the repository's .venv/bin/verifriend, else
# `verifriend` on PATH. Its pid goes to the file prepare_instance.sh reads to kill a stray
# run ($VERIFRIEND_VNNCOMP_PIDFILE, default ${TMPDIR:-/tmp}/verifriend-vnncomp.$(id -u).pid).
set -u

if [ "$#" -ne 6 ]; then
    echo "usage: $0 v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT" >&2
    exit 1
fi
VERSION=$1
CATEGORY=$2
ONNX=$3
VNNLIB=$4
RESULTS_FILE=$5
TIMEOUT=$6
if [ "$VERSION" != "v1" ]; then
    echo "$0: expected the version string v1, got '$VERSION'" >&2
    exit 1
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "${VERIFRIEND:-}" ]; then
    VF=$VERIFRIEND
elif [ -x "$HERE/../../.venv/bin/verifriend" ]; then
    VF=$HERE/../../.venv/bin/verifriend
elif command -v verifriend >/dev/null 2>&1; then
    VF=$(command -v verifriend)
else
    echo "$0: no verifriend executable (set VERIFRIEND, or install it into the repository's .venv)" >&2
    exit 1
fi

PIDFILE=${VERIFRIEND_VNNCOMP_PIDFILE:-${TMPDIR:-/tmp}/verifriend-vnncomp.$(id -u).pid}
echo $$ > "$PIDFILE" 2>/dev/null || true
echo "verifriend: $CATEGORY $(basename "$ONNX") $(basename "$VNNLIB"), timeout $TIMEOUT s" >&2
# exec: the verifier keeps this script's pid, the one written above
exec "$VF" vnncomp "$ONNX" "$VNNLIB" --timeout "$TIMEOUT" --out "$RESULTS_FILE"
