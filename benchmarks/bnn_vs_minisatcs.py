"""verifriend's native BNN solver against EEV's MiniSatCS on the same queries.

MiniSatCS (Jia & Rinard, "Efficient Exact Verification of Binarized Neural Networks", NeurIPS
2020; github.com/jia-kai/minisatcs) is MiniSat 2.2 with reified cardinality constraints
`dst <-> sum(lits) <= bound` propagated natively. It is never a dependency of verifriend and
nothing of it is committed: this script compiles the sources found at $MINISATCS_SRC (a
checkout) with g++ into a temporary directory, together with a small C++ shim of its own
(`_SHIM` below: an extern "C" API over `Minisat::Solver`), and loads the result with ctypes.
Without $MINISATCS_SRC it prints how to get the sources and exits 0.

The queries are `verifriend bnn bench`'s: the bench networks are trained into (or loaded
from) --models-dir with `bnn_bench.prepare_nets`, each suite is encoded once
(`verifriend.bnn.encode.encode`), and every correctly classified test image gives one query
(`bnn_bench._queries`: the input box as assumptions on the thermometer bits, the label).

Per query, alternating solver by solver in this one process, CPU time of this thread
(`time.thread_time`; every solver runs in the calling thread) for load and solve apart:
- native (default, as `verifriend bnn verify` runs it): one solver loaded per suite (its load
  counted once), each query solved under assumptions;
- native-fresh: a new native solver per query, the box added as unit clauses, solved without
  assumptions (the setting MiniSatCS gets);
- minisatcs, the way EEV runs it (eevbnn's binding of minisatcs): a new `Minisat::Solver` per
  query, phase saving off (`phase_saving = 0`), random polarity (`rnd_pol = true`), the box as
  unit clauses, `solve()` without assumptions (its level-0 `simplify()` and dead-variable
  removal run inside solve as in EEV; MiniSatCS's SimpSolver has no cardinality constraints,
  and EEV does not use it).
Every `sat` of any solver is replayed on the network in exact integer arithmetic
(`verifriend.bnn.verify.replays`); verdicts must agree wherever two solvers decided.

    MINISATCS_SRC=/path/to/minisatcs python benchmarks/bnn_vs_minisatcs.py \
        [--sets digits-0.05,digits-0.1,mnist-quick,conv-small-0.3,mnist-mlp] [--queries 100] \
        [--timeout 10] [--models-dir runs/bnn-bench] [--json]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLONE_URL = "https://github.com/jia-kai/minisatcs"

# set name -> (bench net, eps)
SETS: dict[str, tuple[str, float]] = {
    "digits-0.05": ("digits", 0.05),
    "digits-0.1": ("digits", 0.1),
    "mnist-quick": ("mnist-quick", 0.1),
    "conv-small-0.3": ("conv-small-0.3", 0.3),
    "mnist-mlp": ("mnist-mlp", 0.1),
}

_SHIM = r"""
#include "minisat/core/Solver.h"
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

using namespace Minisat;

namespace {
struct Handle {
    Solver s;
    bool ok = true;
};
inline Lit lit_of(int l) { return mkLit(std::abs(l) - 1, l < 0); }
void ensure_vars(Handle* h, int v) { while (h->s.nVars() < v) h->s.newVar(); }
}  // namespace

extern "C" {
void* mcs_new(int num_vars, int phase_saving, int rnd_pol) {
    auto* h = new Handle();
    h->s.verbosity = 0;
    h->s.phase_saving = phase_saving;
    h->s.rnd_pol = rnd_pol != 0;
    ensure_vars(h, num_vars);
    return h;
}
void mcs_delete(void* p) { delete static_cast<Handle*>(p); }
// clauses: each as its literals then 0
int mcs_add_clauses(void* p, const int32_t* buf, int64_t n) {
    auto* h = static_cast<Handle*>(p);
    vec<Lit> ps;
    for (int64_t i = 0; i < n; ++i) {
        if (buf[i] == 0) {
            if (h->ok) h->ok = h->s.addClause_(ps);
            ps.clear();
        } else {
            ensure_vars(h, std::abs(buf[i]));
            ps.push(lit_of(buf[i]));
        }
    }
    return h->ok;
}
// cards dst <-> sum(lits) >= bound, each as: dst, bound, k, lit_1 .. lit_k
int mcs_add_geqs(void* p, const int32_t* buf, int64_t n) {
    auto* h = static_cast<Handle*>(p);
    vec<Lit> ps;
    for (int64_t i = 0; i < n;) {
        int dst = buf[i], bound = buf[i + 1], k = buf[i + 2];
        i += 3;
        ensure_vars(h, std::abs(dst));
        ps.clear();
        for (int j = 0; j < k; ++j, ++i) {
            ensure_vars(h, std::abs(buf[i]));
            ps.push(lit_of(buf[i]));
        }
        if (h->ok) h->ok = h->s.addGeqAssign_(ps, bound, lit_of(dst));
    }
    return h->ok;
}
// 1 sat, 0 unsat, -1 unknown (time limit, wall clock; <= 0: none)
int mcs_solve(void* p, double timeout) {
    auto* h = static_cast<Handle*>(p);
    if (!h->ok) return 0;
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::thread timer;
    if (timeout > 0) {
        timer = std::thread([&] {
            std::unique_lock<std::mutex> lk(m);
            if (!cv.wait_for(lk, std::chrono::duration<double>(timeout), [&] { return done; }))
                h->s.interrupt();
        });
    }
    h->s.clearInterrupt();
    h->s.budgetOff();
    vec<Lit> none;
    lbool r = h->s.solveLimited(none);
    if (timer.joinable()) {
        { std::lock_guard<std::mutex> lk(m); done = true; }
        cv.notify_one();
        timer.join();
    }
    if (r == l_True) return 1;
    if (r == l_False) return 0;
    return -1;
}
int mcs_model(void* p, int32_t* out, int n) {
    auto* h = static_cast<Handle*>(p);
    int m = h->s.model.size();
    for (int i = 0; i < n; ++i)
        out[i] = (i < m && h->s.model[i] == l_True) ? (i + 1) : -(i + 1);
    return m;
}
// 0 conflicts, 1 propagations, 2 decisions, 3 restarts
uint64_t mcs_stat(void* p, int which) {
    auto& s = static_cast<Handle*>(p)->s;
    switch (which) {
        case 0: return s.conflicts;
        case 1: return s.propagations;
        case 2: return s.decisions;
        case 3: return s.starts;
    }
    return 0;
}
}
"""

_SOURCES = ("minisat/core/Solver.cc", "minisat/utils/Options.cc", "minisat/utils/System.cc")


def _instructions() -> str:
    return (
        "bnn_vs_minisatcs: set MINISATCS_SRC to a checkout of MiniSatCS (EEV's solver) to run "
        "this benchmark:\n"
        f"    git clone {CLONE_URL} /tmp/minisatcs\n"
        "    MINISATCS_SRC=/tmp/minisatcs python benchmarks/bnn_vs_minisatcs.py\n"
        "It compiles the sources with g++ into a temporary directory (nothing is installed).")


def build_minisatcs(src: Path, out_dir: Path, log=print) -> Path:
    """Compile MiniSatCS's core solver and the shim into out_dir/libmcs.so."""
    src = Path(src)
    missing = [s for s in _SOURCES if not (src / s).is_file()]
    if missing:
        raise SystemExit(f"MINISATCS_SRC={src}: not a MiniSatCS checkout (missing "
                         f"{', '.join(missing)}); get it with: git clone {CLONE_URL}")
    shim = out_dir / "mcs_shim.cpp"
    shim.write_text(_SHIM)
    lib = out_dir / "libmcs.so"
    cxx = os.environ.get("CXX", "g++")
    cmd = [cxx, "-O3", "-DNDEBUG", "-std=c++17", "-fPIC", "-shared", "-w",
           # newer libstdc++ no longer pulls <optional> in for Solver.h
           "-include", "optional", "-include", "cstdint", "-I", str(src),
           "-o", str(lib), str(shim), *(str(src / s) for s in _SOURCES), "-lpthread"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    log(f"built MiniSatCS from {src} in {time.perf_counter() - t0:.1f} s")
    return lib


class MiniSatCS:
    """ctypes view of the shim."""

    def __init__(self, lib_path: Path) -> None:
        lib = ctypes.CDLL(str(lib_path))
        vp, i32p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32)
        lib.mcs_new.restype = vp
        lib.mcs_new.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.mcs_delete.argtypes = [vp]
        for f in (lib.mcs_add_clauses, lib.mcs_add_geqs):
            f.restype = ctypes.c_int
            f.argtypes = [vp, i32p, ctypes.c_int64]
        lib.mcs_solve.restype = ctypes.c_int
        lib.mcs_solve.argtypes = [vp, ctypes.c_double]
        lib.mcs_model.restype = ctypes.c_int
        lib.mcs_model.argtypes = [vp, i32p, ctypes.c_int]
        lib.mcs_stat.restype = ctypes.c_uint64
        lib.mcs_stat.argtypes = [vp, ctypes.c_int]
        self.lib = lib

    @staticmethod
    def flatten(formula) -> tuple[np.ndarray, np.ndarray]:
        """The formula's clauses (0-terminated) and cards (dst, bound, k, lits) as int32."""
        cl: list[int] = []
        for c in formula.clauses:
            cl.extend(c)
            cl.append(0)
        cd: list[int] = []
        for y, lits, bound in formula.cards:
            cd += [y, bound, len(lits), *lits]
        return np.asarray(cl, dtype=np.int32), np.asarray(cd, dtype=np.int32)

    def run(self, num_vars: int, flat: tuple[np.ndarray, np.ndarray], units: list[int],
            timeout: float) -> dict:
        """EEV's way: a new solver, phase saving off, random polarity, the box as units."""
        lib = self.lib
        i32p = ctypes.POINTER(ctypes.c_int32)
        t0 = time.thread_time()
        h = lib.mcs_new(num_vars, 0, 1)
        cl, cd = flat
        lib.mcs_add_clauses(h, cl.ctypes.data_as(i32p), len(cl))
        lib.mcs_add_geqs(h, cd.ctypes.data_as(i32p), len(cd))
        u = np.asarray([x for a in units for x in (a, 0)], dtype=np.int32)
        lib.mcs_add_clauses(h, u.ctypes.data_as(i32p), len(u))
        t1 = time.thread_time()
        r = lib.mcs_solve(h, float(timeout))
        t2 = time.thread_time()
        out = {"status": {1: "sat", 0: "unsat"}.get(r, "unknown"), "load_s": t1 - t0,
               "solve_s": t2 - t1, "conflicts": int(lib.mcs_stat(h, 0)),
               "propagations": int(lib.mcs_stat(h, 1)), "decisions": int(lib.mcs_stat(h, 2)),
               "model": None}
        if r == 1:
            m = np.zeros(num_vars, dtype=np.int32)
            lib.mcs_model(h, m.ctypes.data_as(i32p), num_vars)
            out["model"] = m.tolist()
        lib.mcs_delete(h)
        return out


def _native_result(backend, r, load_s: float, solve_s: float) -> dict:
    return {"status": r.status, "load_s": load_s, "solve_s": solve_s,
            "conflicts": int(r.stats.get("conflicts", 0)),
            "propagations": int(r.stats.get("propagations", 0)),
            "decisions": int(r.stats.get("decisions", 0)), "model": r.model}


def native_fresh(formula, units: list[int], timeout: float) -> dict:
    """A new native solver per query with the box as unit clauses, solved without assumptions."""
    from verifriend.bnn.solvers.native import NativeBackend

    t0 = time.thread_time()
    b = NativeBackend()
    b.load(formula)
    b.solver.add_clauses([[int(a)] for a in units])
    t1 = time.thread_time()
    r = b.solve([], timeout)
    t2 = time.thread_time()
    b.close()
    return _native_result(b, r, t1 - t0, t2 - t1)


def run_set(name: str, suite, mcs: MiniSatCS, queries_max: int, timeout: float,
            log=print, verbose: bool = False) -> dict:
    from verifriend.app.bnn_bench import _queries
    from verifriend.bnn.encode import encode
    from verifriend.bnn.solvers.native import NativeBackend
    from verifriend.bnn.verify import replays

    enc = encode(suite.net)
    f = enc.formula
    queries = _queries(enc, suite)[:queries_max]
    flat = mcs.flatten(f)  # the formula as flat arrays, built once per suite (not timed)
    t0 = time.thread_time()
    reused = NativeBackend()
    reused.load(f)
    reused_load = time.thread_time() - t0
    solvers = ("native", "native-fresh", "minisatcs")
    rows: dict[str, list[dict]] = {s: [] for s in solvers}
    bad = {s: 0 for s in solvers}
    for qi, (i, assume) in enumerate(queries):
        # the order of the three solvers rotates query by query
        order = solvers[qi % 3:] + solvers[:qi % 3]
        for s in order:
            if s == "native":
                t1 = time.thread_time()
                r = reused.solve(assume, timeout)
                res = _native_result(reused, r, reused_load if qi == 0 else 0.0,
                                     time.thread_time() - t1)
            elif s == "native-fresh":
                res = native_fresh(f, assume, timeout)
            else:
                res = mcs.run(f.num_vars, flat, assume, timeout)
            if res["status"] == "sat" and not replays(
                    enc, res["model"], suite.images[i], int(suite.labels[i]), suite.eps):
                bad[s] += 1
            res.pop("model")
            rows[s].append(res)
        if verbose:
            log(f"{name} query {qi + 1}/{len(queries)} (image {i}): " + ", ".join(
                f"{s} {rows[s][-1]['status']} {rows[s][-1]['load_s'] + rows[s][-1]['solve_s']:.3f} s "
                f"{rows[s][-1]['conflicts']} conflicts" for s in solvers))
    reused.close()
    per_query = zip(*(rows[s] for s in solvers), strict=True)
    agree = not any(bad.values()) and all(
        len({r["status"] for r in q if r["status"] != "unknown"}) <= 1 for q in per_query)
    out: dict = {"name": name, "queries": len(queries), "eps": suite.eps,
                 "vars": f.num_vars, "clauses": len(f.clauses), "cards": len(f.cards)}
    for s in solvers:
        key = s.replace("-", "_")
        rs = rows[s]
        load = sum(r["load_s"] for r in rs)
        solve = sum(r["solve_s"] for r in rs)
        conf = sum(r["conflicts"] for r in rs)
        out[f"{key}_s"] = load + solve
        out[f"{key}_load_s"] = load
        out[f"{key}_solve_s"] = solve
        out[f"{key}_unknown"] = sum(r["status"] == "unknown" for r in rs)
        out[f"{key}_sat"] = sum(r["status"] == "sat" for r in rs)
        out[f"{key}_conflicts"] = conf
        out[f"{key}_propagations"] = sum(r["propagations"] for r in rs)
        out[f"{key}_decisions"] = sum(r["decisions"] for r in rs)
        out[f"{key}_bad_models"] = bad[s]
        out[f"{key}_us_per_conflict"] = 1e6 * solve / conf if conf else None
    out["native_mode"] = "reused solver, assumptions (load counted once)"
    out["ratio_native_minisatcs"] = (out["native_s"] / out["minisatcs_s"]
                                     if out["minisatcs_s"] > 0 else None)
    out["ratio_native_fresh_minisatcs"] = (out["native_fresh_s"] / out["minisatcs_s"]
                                           if out["minisatcs_s"] > 0 else None)
    out["agree"] = agree
    log(f"{name}: {len(queries)} queries, native {out['native_s']:.3f} s, native-fresh "
        f"{out['native_fresh_s']:.3f} s, minisatcs {out['minisatcs_s']:.3f} s, agree {agree}")
    return out


def format_table(sets: list[dict]) -> str:
    head = (f"{'set':<15} {'q':>4} {'native s':>9} {'fresh s':>9} {'mcs s':>9} "
            f"{'unk n/f/m':>10} {'nat/mcs':>8} {'fr/mcs':>7} {'agree':>5}  "
            f"{'conf/q n/f/m':>22}  {'us/conf n/f/m':>20}  {'load s n/f/m':>20}")
    lines = [head]

    def us(v):
        return "-" if v is None else f"{v:.1f}"

    for s in sets:
        q = max(s["queries"], 1)
        r1, r2 = s["ratio_native_minisatcs"], s["ratio_native_fresh_minisatcs"]
        lines.append(
            f"{s['name']:<15} {s['queries']:4d} {s['native_s']:9.3f} {s['native_fresh_s']:9.3f} "
            f"{s['minisatcs_s']:9.3f} "
            f"{s['native_unknown']:>3}/{s['native_fresh_unknown']}/{s['minisatcs_unknown']:<3} "
            f"{'-' if r1 is None else f'{r1:.2f}':>8} {'-' if r2 is None else f'{r2:.2f}':>7} "
            f"{s['agree']!s:>5}  "
            f"{s['native_conflicts'] / q:7.1f}/{s['native_fresh_conflicts'] / q:6.1f}/"
            f"{s['minisatcs_conflicts'] / q:7.1f}  "
            f"{us(s['native_us_per_conflict']):>6}/{us(s['native_fresh_us_per_conflict']):>6}/"
            f"{us(s['minisatcs_us_per_conflict']):>6}  "
            f"{s['native_load_s']:6.3f}/{s['native_fresh_load_s']:6.3f}/"
            f"{s['minisatcs_load_s']:6.3f}")
    lines.append("seconds: CPU time, load + solve (native: one reused solver, load once; fresh: "
                 "native, new solver per query with units; mcs: MiniSatCS as EEV runs it); "
                 "us/conf: solve CPU per conflict")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(SETS),
                   help=f"comma-separated, from {', '.join(SETS)}")
    p.add_argument("--queries", type=int, default=100, help="queries per set (default 100)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per query (default 10)")
    p.add_argument("--models-dir", type=Path, default=Path("runs/bnn-bench"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true",
                   help="print the JSON summary on stdout (the table goes to stderr)")
    p.add_argument("--verbose", action="store_true", help="a line per query (stderr with --json)")
    a = p.parse_args(argv)

    src = os.environ.get("MINISATCS_SRC")
    if not src:
        print(_instructions())
        return 0
    names = [s.strip() for s in a.sets.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        p.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if a.json else sys.stdout, flush=True)

    from verifriend.app.bnn_bench import BENCH_NETS, prepare_nets, suites_for

    tmp = Path(tempfile.mkdtemp(prefix="minisatcs-"))
    try:
        mcs = MiniSatCS(build_minisatcs(Path(src), tmp, log=log))
        nets = list(dict.fromkeys(SETS[n][0] for n in names))
        paths = dict(prepare_nets(nets, a.models_dir, data_dir=a.data_dir, workers=1, log=log))
        results = []
        for n in names:
            net, eps = SETS[n]
            # one more image than a set's queries per wrong guess is cheap: take 2x and cut
            images = max(BENCH_NETS[net].images, 2 * a.queries)
            (suite,) = suites_for([(net, paths[net])], [eps], images, data_dir=a.data_dir)
            results.append(run_set(n, suite, mcs, a.queries, a.timeout, log=log,
                                   verbose=a.verbose))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        log(format_table(results))
        print(json.dumps({"sets": results}, default=float))
    else:
        print(format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
