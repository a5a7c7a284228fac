"""The options of the ReLU branch and bound (:mod:`verifriend.verify.bab`): one typed
settings object, each field's help and limits in its ``metadata`` (:mod:`verifriend.options`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from verifriend.errors import UserError
from verifriend.options import OptionError
from verifriend.verify.branching import BRANCHING


@dataclass(frozen=True)
class BabConfig:
    """Knobs of the ReLU branch and bound (defaults tuned on MNIST FC nets, 2 CPU cores);
    each field's ``help`` and limits live in its ``metadata`` (:mod:`verifriend.options`)."""

    batch: int = field(default=256, metadata={
        "help": "most domains split per step (children: twice as many); the step size "
                "starts at 8 and doubles while the time per domain holds", "min": 1})
    iterations: int = field(default=10, metadata={
        "help": "beta-CROWN optimization steps per batch", "min": 0})
    lr_alpha: float = field(default=0.1, metadata={
        "help": "beta-CROWN's learning rate of the alphas (relaxation slopes)",
        "min": 0, "min_open": True})
    lr_beta: float = field(default=0.05, metadata={
        "help": "beta-CROWN's learning rate of the betas (split multipliers)",
        "min": 0, "min_open": True})
    branching: str = field(default="babsr", metadata={
        "help": "branching heuristic: babsr (BaBSR scores), fsb (filtered smart branching) "
                "or acs (active constraint scores of the multi-neuron rows; needs mnc)",
        "choices": BRANCHING})
    fsb_candidates: int = field(default=3, metadata={
        "help": "neurons per domain whose split fsb bounds before choosing one", "min": 1})
    max_domains: int = field(default=2_000_000, metadata={
        "help": "give up (unknown) after bounding this many domains", "min": 1})
    exact_unstable: int = field(default=8, metadata={
        "help": "a domain with at most this many unstable ReLUs goes to an exact MILP "
                "instead of being split (a first limit, adapted to the MILPs' times)",
        "min": 0})
    recompute_intermediate: bool = field(default=False, metadata={
        "help": "children get new CROWN bounds for the layers after their split (else they "
                "keep the parent's, clamped by the split)"})
    cab: bool = field(default=False, metadata={
        "help": "cost adjusted branching (MN-BaB): divide each neuron's score by the cost of "
                "recomputing the layers after it (needs recompute_intermediate)"})
    mnc: bool | None = field(default=None, metadata={
        "help": "multi-neuron constraints (MN-BaB): convex hulls of groups of ReLUs, built "
                "once at the root, with multipliers optimized in every domain; null: where "
                "they pay, on networks of at least 2,000 ReLUs with at least 300 unstable "
                "after alpha-CROWN"})
    mnc_k: int = field(default=3, metadata={
        "help": "ReLUs per multi-neuron group", "min": 2, "max": 3})
    mnc_area: float = field(default=0.0, metadata={
        "help": "leave out unstable ReLUs whose triangle area -l*u is below this", "min": 0})
    # 100 / 100: on ResNet6-A (eps 1/255, 2 CPU cores) the rows take 8 s (4,800 rows),
    # 200 / 200 twice that, the module's 200 / 500 about a minute
    mnc_neurons: int = field(default=100, metadata={
        "help": "unstable ReLUs per layer, at most, in multi-neuron groups (largest area "
                "first)", "min": 1})
    mnc_groups: int = field(default=100, metadata={
        "help": "multi-neuron groups per layer, at most", "min": 1})
    mnc_rows: int = field(default=12, metadata={
        "help": "hull rows kept per group (those cutting deepest into the triangles)",
        "min": 1})
    mnc_iterations: int = field(default=20, metadata={
        "help": "optimization steps of alphas and gammas at the root once the rows are "
                "built", "min": 0})
    lr_gamma: float = field(default=0.01, metadata={
        "help": "learning rate of the gammas (multi-neuron multipliers)",
        "min": 0, "min_open": True})

    def __post_init__(self) -> None:
        from verifriend.options import check_fields

        check_fields(self)
        if self.cab and not self.recompute_intermediate:
            raise OptionError("cab", "needs recompute_intermediate: without it every split "
                              "costs the same")
        if self.branching == "acs" and self.mnc is False:
            raise OptionError("branching", "acs needs mnc: it reads the multi-neuron "
                              "constraints' multipliers")

    def mnc_settings(self):
        """The multi-neuron rows' settings (:class:`verifriend.bounds.multineuron.MncSettings`)."""
        from verifriend.bounds.multineuron import MncSettings

        return MncSettings(k=self.mnc_k, area=self.mnc_area, neurons=self.mnc_neurons,
                           groups=self.mnc_groups, rows=self.mnc_rows)

    def check(self) -> None:
        if self.branching not in BRANCHING:
            raise UserError(
                f"unknown branching '{self.branching}'; choose one of {', '.join(BRANCHING)}."
            )
        if self.batch < 1 or self.iterations < 0:
            raise UserError("batch must be >= 1 and iterations >= 0.")
