"""The five methods of paper Table 3, chosen by name from one literal dict (DESIGN.md §5)."""

from __future__ import annotations

from ikd.config import Config
from ikd.methods.base import Method, params_from
from ikd.methods.baseline import Baseline
from ikd.methods.cfkd import CFKD
from ikd.methods.identitykd import IdentityKD
from ikd.methods.mkd import MKD
from ikd.methods.vanilla_kd import VanillaKD

METHODS: dict[str, type[Method]] = {
    "baseline": Baseline,
    "vanilla_kd": VanillaKD,
    "cfkd": CFKD,
    "mkd": MKD,
    "identitykd": IdentityKD,
}


def build_method(config: Config, num_identities: int) -> Method:
    """The config's method (`train.method`) with its `Params` from `distill` and its student."""
    cls = METHODS[config.train.method]
    return cls(params_from(cls.Params, config.distill), config.train.student, num_identities)
