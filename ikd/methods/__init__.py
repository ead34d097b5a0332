"""The five methods of paper Table 3, chosen by name from one literal dict (DESIGN.md §5)."""

from __future__ import annotations

import torch

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
    (default: `train.student` built from its name).

    Its convolutions hold their weights channels-last (NHWC), as the batches hold spectrograms
    (`ikd.train.data.Samples`): on the 2-core CPU an Adam step of a batch of 128 at 32² takes
    0.48× the time for mobilenet and 0.37× for efficientnet (their depthwise convolutions), and
    the same for resnet18 and vgg16 (1.04×, 1.00×; `bench_train.py layouts`, 2026-11-26)."""
    if student is None:
        student = Student.from_name(config.train.student, num_identities)
    method = METHODS[config.train.method](config.method_params(), num_identities, student)
    return method.to(memory_format=torch.channels_last)
