"""Baseline: the gait student trained with cross-entropy alone (paper Table 3's first row)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ikd.losses import cross_entropy
from ikd.methods.base import Method


@dataclass(frozen=True)
class BaselineParams:
    """No hyperparameters beyond the optimiser's."""


class Baseline(Method):
    Params = BaselineParams

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        ce = cross_entropy(out["student_logits"], batch["identity"])
        return {"loss": ce, "loss/ce": ce}
