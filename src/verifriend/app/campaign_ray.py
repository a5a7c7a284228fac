"""A campaign's properties on Ray workers (``--ray``): Ray schedules, this module streams.

Each property is one Ray task running
:func:`~verifriend.app.campaign_property.property_row`, the function the single-process
campaign runs, so the verdicts are the same. The driver (the `verifriend` process) keeps a
few tasks per worker in flight, takes each result as it finishes (``ray.wait``) and hands it
to the campaign, which appends it to the results file: the driver is the file's only
writer, and each property has one task, hence one line. A worker that dies mid-property
(killed, out of memory, its node lost) is a system failure: Ray runs the task again
elsewhere (up to :data:`MAX_RETRIES` times); a property whose workers die every time is not
written, and the campaign ends with one sentence naming it (a rerun resumes and retries it).
Killing the driver loses the properties in flight only.

A worker loads the model and the test images once per process (:data:`_WORKER_PROBLEMS`),
from the same path the driver read (Ray nodes share the file system, or hold the model and
data at the same paths; the model's sha256 is checked against the campaign's), and verifies
with one thread (the workers share the cores).

Ray is optional (``pip install 'verifriend[ray]'``); nothing here imports it before use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from verifriend.app.campaign_property import (
    CampaignProblem,
    file_sha256,
    load_problem,
    property_row,
)
from verifriend.app.settings import CampaignSettings
from verifriend.errors import UserError

RAY_MISSING = "--ray needs Ray: pip install 'verifriend[ray]'"
MAX_RETRIES = 3  # runs of a task after its worker died
IN_FLIGHT_PER_WORKER = 2  # tasks handed to Ray per worker slot: one running, one queued
_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def import_ray():
    """The ``ray`` module; one sentence (UserError) when it is not installed."""
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str, device: str = "cpu") -> Iterator[Any]:
    """Connected to Ray for the block; yields the ``ray`` module.

    ``address`` "local": a new Ray instance on this machine with one worker slot per core
    (per GPU with ``device`` "cuda"), shut down after the block; "auto": the cluster already
    running on this machine (``RAY_ADDRESS`` or the latest one started), else a local one;
    anything else: the address of a running cluster (``host:port`` or ``ray://host:port``).
    A connection this process already has (``ray.is_initialized()``) is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    _init(ray, address, device)
    try:
        yield ray
    finally:
        ray.shutdown()


def _init(ray, address: str, device: str) -> None:
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False,
             "runtime_env": {"env_vars": dict(_THREADS)}}
    if address == "auto":
        try:
            ray.init(address="auto", **quiet)
            return
        except ConnectionError:
            address = "local"  # no cluster running here: start one
    try:
        if address == "local":
            import torch

            gpus = torch.cuda.device_count() if device == "cuda" else 0
            ray.init(address="local", num_cpus=len(os.sched_getaffinity(0)), num_gpus=gpus,
                     include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
        raise UserError(f"Cannot start or reach Ray at '{address}': {why}.") from None


def worker_slots(ray, device: str = "cpu") -> int:
    """Tasks the cluster runs at once: its CPUs, or its GPUs with ``device`` "cuda" (one
    sentence when it has none: the tasks would wait for ever)."""
    kind = "GPU" if device == "cuda" else "CPU"
    slots = int(ray.cluster_resources().get(kind, 0))
    if slots < 1:
        raise UserError(f"The Ray cluster has no {kind}s for the workers"
                        f"{' (--device cuda)' if kind == 'GPU' else ''}.")
    return slots


def task_resources(device: str = "cpu") -> dict:
    """One worker slot: a core, or a GPU (and a core) with ``device`` "cuda"."""
    return {"num_cpus": 1, "num_gpus": 1 if device == "cuda" else 0}


def stream_tasks(ray, task, args: list[tuple], on_result: Callable[[tuple, Any], None], *,
                 in_flight: int) -> list[tuple]:
    """Run ``task.remote(*a)`` for each ``a`` of ``args``, at most ``in_flight`` at a time,
    and call ``on_result(a, result)`` in the order they finish. A task's own exception ends
    the run (a UserError raised in a worker is raised here as one); tasks still running
    then, or when this is interrupted, are cancelled. Returns the ``args`` whose workers
    died on every try (Ray retries a task whose worker died ``max_retries`` times)."""
    from ray.exceptions import RayError, RayTaskError

    todo = list(reversed(args))
    pending: dict = {}
    lost = []
    try:
        while todo or pending:
            while todo and len(pending) < in_flight:
                a = todo.pop()
                pending[task.remote(*a)] = a
            ready, _ = ray.wait(list(pending), num_returns=1)
            a = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except RayTaskError as e:
                if isinstance(e.cause, UserError):
                    raise UserError(str(e.cause)) from None
                raise e.as_instanceof_cause() from None
            except RayError:  # the worker, its node or the object died, retries spent
                lost.append(a)
                continue
            on_result(a, result)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return lost


def decide_on_ray(settings: CampaignSettings, key: dict, todo: list[int],
                  record: Callable[[dict], None], verify: Callable) -> None:
    """Decide the properties ``todo`` (test indices) on Ray workers; ``record(row)`` each
    result line as it comes (in the driver). ``key`` is the campaign's settings key (model
    path and sha256, data set); ``verify`` is sent to the workers."""
    # the workers' working directory is not ours: absolute paths
    s = dataclasses.replace(
        settings, model=Path(key["model"]), dataset=key["dataset"],
        data_dir=None if settings.data_dir is None else str(Path(settings.data_dir).resolve()))
    with ray_session(s.ray, s.device) as ray:
        task = ray.remote(_decide_task).options(max_retries=MAX_RETRIES,
                                                **task_resources(s.device))
        s_ref = ray.put(s)
        lost = stream_tasks(ray, task, [(s_ref, key["model_sha256"], i, verify) for i in todo],
                            lambda a, row: record(row),
                            in_flight=IN_FLIGHT_PER_WORKER * worker_slots(ray, s.device))
    if lost:
        ids = ", ".join(str(a[2]) for a in lost)
        raise UserError(f"The Ray workers died on every one of {MAX_RETRIES + 1} tries of "
                        f"test index {ids}; the other results are in the file (run the same "
                        "command again to retry).")


# The model and test images of the campaign a Ray worker process is deciding, by (model
# sha256, data set, data folder, device): a worker loads them on its first property and
# keeps them for the next ones (one campaign at a time).
_WORKER_PROBLEMS: dict[tuple, CampaignProblem] = {}


def _worker_problem(s: CampaignSettings, sha256: str) -> CampaignProblem:
    k = (sha256, s.dataset, s.data_dir, s.device)
    if k not in _WORKER_PROBLEMS:
        import socket

        model = Path(s.model)
        if not model.is_file() or file_sha256(model) != sha256:
            raise UserError(f"The Ray worker on {socket.gethostname()} does not find the "
                            f"campaign's model at {model} (missing or another file); Ray nodes "
                            "need the model and data at the paths the driver reads.")
        _WORKER_PROBLEMS.clear()
        _WORKER_PROBLEMS[k] = load_problem(s)
    return _WORKER_PROBLEMS[k]


def _decide_task(s: CampaignSettings, sha256: str, index: int, verify: Callable) -> dict:
    """A Ray task: the result line of property ``index``, as the single-process run makes it."""
    import torch

    for name, value in _THREADS.items():
        os.environ.setdefault(name, value)
    torch.set_num_threads(1)
    return property_row(_worker_problem(s, sha256), s, index, verify)
