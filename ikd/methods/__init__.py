"""The five methods of paper Table 3, chosen by name from one literal dict (DESIGN.md §5)."""

from __future__ import annotations

from ikd.config import Config
from ikd.methods.base import Method
from ikd.methods.baseline import Baseline
from ikd.methods.cfkd import CFKD
from ikd.methods.identitykd import IdentityKD
from ikd.methods.mkd import MKD
from ikd.methods.vanilla_kd import VanillaKD
from ikd.models.students import Student

METHODS: dict[str, type[Method]] = {
    "baseline": Baseline,
    "vanilla_kd": VanillaKD,
    "cfkd": CFKD,
    "mkd": MKD,
    "identitykd": IdentityKD,
}


def build_method(config: Config, num_identities: int, student: Student | None = None) -> Method:
    """The config's method (`train.method`) with its section as `Params`, training `student`
    (default: `train.student` built from its name)."""
    if student is None:
        student = Student.from_name(config.train.student, num_identities)
    return METHODS[config.train.method](config.method_params(), num_identities, student)
