#!/usr/bin/env bash
# VNN-COMP harness: prepare_instance.sh v1 CATEGORY ONNX VNNLIB
#
# Called before every instance (vnncomp2021/2022 `vnncomp_scripts` convention). Kills a
# verifier that an earlier run_instance.sh left running (the harness may have given up on
# it), checks that the network and the spec exist, and exits 0 when the instance is ready,
# nonzero otherwise. Only the process recorded by run_instance.sh is killed (its pid file:
# $VERIFRIEND_VNNCOMP_PIDFILE, default ${TMPDIR:-/tmp}/verifriend-vnncomp.$(id -u).pid), never
# other users' or other tools' processes.
set -u

if [ "$#" -ne 4 ]; then
    echo "usage: $0 v1 CATEGORY ONNX VNNLIB" >&2
    exit 1
fi
VERSION=$1
CATEGORY=$2
ONNX=$3
VNNLIB=$4
if [ "$VERSION" != "v1" ]; then
    echo "$0: expected the version string v1, got '$VERSION'" >&2
    exit 1
fi

PIDFILE=${VERIFRIEND_VNNCOMP_PIDFILE:-${TMPDIR:-/tmp}/verifriend-vnncomp.$(id -u).pid}
if [ -f "$PIDFILE" ]; then
    PID=$(cat "$PIDFILE" 2>/dev/null)
    # only if that pid is still a verifriend vnncomp (not a process that reused the number)
    if [ -n "$PID" ] && ps -o args= -p "$PID" 2>/dev/null | grep -q "vnncomp"; then
        kill -9 "$PID" 2>/dev/null
    fi
    rm -f "$PIDFILE"
fi

for f in "$ONNX" "$VNNLIB"; do
    if [ ! -f "$f" ]; then
        echo "$0: $f does not exist (category $CATEGORY)" >&2
        exit 1
    fi
done
exit 0
