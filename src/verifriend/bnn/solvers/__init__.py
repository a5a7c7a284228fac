"""Solver backends for BNN queries, chosen by name (see `make_backend`).

Every backend is imported lazily by its factory, so this registry imports without the optional
solver packages (python-sat, ortools, z3-solver, exact) and without the native extension.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from verifriend.bnn.solvers.base import Backend, SolveResult
from verifriend.errors import UserError

# the module each backend needs importable; `available_backends` checks these
_REQUIRES: dict[str, str] = {}


def _pysat_cnf(encoding: str, solver: str) -> Callable[[], Backend]:
    def factory() -> Backend:
        from verifriend.bnn.solvers.pysat_backend import PySATCNFBackend

        return PySATCNFBackend(encoding, solver)

    return factory


def _pysat_native(solver: str) -> Callable[[], Backend]:
    def factory() -> Backend:
        from verifriend.bnn.solvers.pysat_backend import PySATNativeCardBackend

        return PySATNativeCardBackend(solver)

    return factory


def _native() -> Backend:
    from verifriend.bnn.solvers.native import NativeBackend

    return NativeBackend()


def _native_eev() -> Backend:
    from verifriend.bnn.solvers.native import NativeEEVBackend

    return NativeEEVBackend()


def _cpsat() -> Backend:
    from verifriend.bnn.solvers.cpsat import CpSatBackend

    return CpSatBackend()


def _z3() -> Backend:
    from verifriend.bnn.solvers.z3_backend import Z3Backend

    return Z3Backend()


def _exact() -> Backend:
    from verifriend.bnn.solvers.exact_backend import ExactBackend

    return ExactBackend()


def _brute() -> Backend:
    from verifriend.bnn.solvers.brute import BruteForceBackend

    return BruteForceBackend()


BACKENDS: dict[str, Callable[[], Backend]] = {"native": _native}
_REQUIRES["native"] = "verifriend.bnn.solvers.native"
BACKENDS["native-eev"] = _native_eev
_REQUIRES["native-eev"] = "verifriend.bnn.solvers.native"
for _enc in ("seqcounter", "totalizer", "sortnetwrk", "cardnetwrk"):
    for _sat in ("minisat22", "cadical153"):
        BACKENDS[f"pysat-{_enc}-{_sat}"] = _pysat_cnf(_enc, _sat)
        _REQUIRES[f"pysat-{_enc}-{_sat}"] = "pysat.solvers"
for _sat in ("gluecard4", "minicard"):
    BACKENDS[f"pysat-{_sat}"] = _pysat_native(_sat)
    _REQUIRES[f"pysat-{_sat}"] = "pysat.solvers"
BACKENDS["cpsat"] = _cpsat
_REQUIRES["cpsat"] = "ortools.sat.python.cp_model"
BACKENDS["z3"] = _z3
_REQUIRES["z3"] = "z3"
BACKENDS["exact"] = _exact
_REQUIRES["exact"] = "exact"
BACKENDS["brute"] = _brute
_REQUIRES["brute"] = "numpy"


def _import_error(module: str) -> str | None:
    """None when the module imports, else why not."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError) as exc:  # missing package, or an extension that fails to load
        return f"{type(exc).__name__}: {exc}"
    return None


def available_backends() -> list[str]:
    """The registered names whose solver package (or native module) imports here."""
    return [name for name in BACKENDS if _import_error(_REQUIRES[name]) is None]


def make_backend(name: str) -> Backend:
    """A fresh backend by name; UserError for an unknown name or a solver that is not installed."""
    factory = BACKENDS.get(name)
    if factory is None:
        raise UserError(f"unknown solver backend {name!r}; valid names: {', '.join(BACKENDS)}")
    error = _import_error(_REQUIRES[name])
    if error is not None:
        raise UserError(
            f"solver backend {name!r} is not available here ({error}); "
            f"available: {', '.join(available_backends())}"
        )
    return factory()


__all__ = ["BACKENDS", "Backend", "SolveResult", "available_backends", "make_backend"]
