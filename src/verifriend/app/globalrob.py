"""The `global` job: per output of a model, certified bounds of its largest change under any
input perturbation of size delta in the domain (GROCKET), beside PGD's lower bound.

Per output: joint PGD over pairs (a lower bound, and the floor below which branch and
bound drops leaves), then branch and bound over difference signs from alpha-CROWN on the
input-aware difference network, until the per-output timeout. The input-free (the
paper's) and input-aware CROWN bounds are computed once for all outputs. ``certified`` is
the smallest of the sound bounds; it is never below the attack's value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from verifriend.app.loaded import load_model_file
from verifriend.app.settings import GlobalSettings
from verifriend.deadline import Deadline
from verifriend.device import torch_device
from verifriend.errors import DataNotFoundError, UserError
from verifriend.globalrob.attack import joint_pgd
from verifriend.globalrob.bab import GlobalBabSettings, global_bab
from verifriend.globalrob.difference import GlobalProblem, crown_certificate

Show = Callable[[str, dict], None]


def _attack_starts(settings: GlobalSettings, loaded) -> tuple[torch.Tensor | None, str | None]:
    """The first ``attack_starts`` test images of the data set, in the model's input shape,
    or None (with the reason) when the data set is not on this machine."""
    if settings.attack_starts == 0:
        return None, None
    from verifriend.data.datasets import load_dataset

    try:
        ds = load_dataset(loaded.dataset, settings.data_dir)
    except DataNotFoundError:
        return None, f"data set '{loaded.dataset}' not found: random starts only"
    return loaded.inputs(ds.x_test[: settings.attack_starts].float()), ds.name


def run_global(settings: GlobalSettings, show: Show | None = None) -> dict:
    """``{"model", "delta", "domain", "attack_data", "outputs": [...]}``, one entry per
    output: ``attack_lower``, ``input_free``, ``input_aware``, ``bab``, ``certified``,
    ``ratio`` (certified / attack), ``time_s``, ``domains``, ``exhausted``, ``trace``."""
    show = show or (lambda kind, event: None)
    device = torch_device(settings.device)
    loaded = load_model_file(settings.model, settings.dataset)
    n = loaded.graph.num_outputs
    outputs = list(settings.outputs) if settings.outputs is not None else list(range(n))
    bad = [j for j in outputs if j >= n]
    if bad:
        raise UserError(f"--outputs names output {bad[0]}, but {settings.model} has outputs "
                        f"0..{n - 1}.")
    starts, data_note = _attack_starts(settings, loaded)
    show("stage", {"text": "bounding the difference network (input-free and input-aware)"})
    t0 = time.monotonic()
    free = GlobalProblem.build(loaded.graph, settings.delta, settings.domain, input_aware=False,
                               device=device)
    aware = GlobalProblem.build(loaded.graph, settings.delta, settings.domain, device=device)
    free_ub = crown_certificate(free, outputs).cpu()
    aware_ub = crown_certificate(aware, outputs).cpu()
    shared_s = time.monotonic() - t0
    gen = torch.Generator().manual_seed(settings.seed)
    graph = loaded.graph.to(device=device)
    bab_settings = GlobalBabSettings(batch=settings.batch)
    rows = []
    for i, j in enumerate(outputs):
        start = time.monotonic()
        deadline = Deadline.after(settings.timeout)
        show("start", {"output": j, "timeout": settings.timeout})
        attack = joint_pgd(graph, j, settings.delta, settings.domain, starts,
                           settings.random_starts, settings.attack_steps, generator=gen,
                           deadline=deadline.earlier(0.25 * settings.timeout))
        crown_best = min(float(free_ub[i]), float(aware_ub[i]))
        show("attack", {"output": j, "attack_lower": attack.value, "crown": crown_best})

        def improved(t: float, bound: float, domains: int, j=j, start=start,
                     crown_best=crown_best) -> None:
            show("improve", {"output": j, "time_s": time.monotonic() - start,
                             "bound": min(bound, crown_best), "domains": domains})

        offset = time.monotonic() - start
        res = global_bab(free if settings.input_free else aware, j, floor=attack.value,
                         deadline=deadline, settings=bab_settings, on_improve=improved)
        certified = min(crown_best, res.bound)
        if certified < attack.value - 1e-9 * (1 + abs(attack.value)):
            raise RuntimeError(f"unsound bound on output {j}: certified {certified} is below "
                               f"the attack's {attack.value}")
        row = {
            "output": j, "attack_lower": attack.value, "input_free": float(free_ub[i]),
            "input_aware": float(aware_ub[i]), "alpha_root": res.root, "bab": res.bound,
            "certified": certified,
            "ratio": certified / attack.value if attack.value > 0 else math.inf,
            "time_s": time.monotonic() - start, "domains": res.domains,
            "exhausted": res.exhausted,
            # seconds since the output's start (the attack included), bound, domains; the
            # first point is CROWN's bound, known when the attack ends
            "trace": [[offset, crown_best, 0]]
            + [[offset + t, min(b, crown_best), d] for t, b, d in res.trace],
        }
        rows.append(row)
        show("done", row)
    return {"model": str(settings.model), "delta": settings.delta,
            "domain": list(settings.domain), "relaxation": "input-free" if settings.input_free
            else "input-aware", "attack_data": data_note, "shared_bounds_s": shared_s,
            "device": str(device), "outputs": rows}
