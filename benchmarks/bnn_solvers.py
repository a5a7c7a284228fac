"""The same BNN verification queries on every solver backend, side by side, with ratios.

    python benchmarks/bnn_solvers.py --quick [--json]
    python benchmarks/bnn_solvers.py [--nets digits,conv-small] [--timeout 2] [--json]
    python benchmarks/bnn_solvers.py MODEL.pt --eps 0.1 --images 100 --backends native,cpsat

The same command as `verifriend bnn bench` (see its --help; the work is in
`verifriend.app.bnn_bench`): every backend loads one encoding per network and answers one query per
correctly classified test image under assumptions; solve times, ratios to the native solver,
and the native solver against itself on a fresh load per query (native-fresh).
"""

import sys

from verifriend.cli import app

if __name__ == "__main__":
    app(["bnn", "bench", *sys.argv[1:]], prog_name="bnn_solvers.py")
