"""Baseline: the gait student trained with cross-entropy alone (paper Table 3's first row)."""

from __future__ import annotations

import torch

from ikd.losses import cross_entropy
from ikd.method_params import BaselineParams
from ikd.methods.base import Method


class Baseline(Method):
    Params = BaselineParams  # bump its `version` when the loss changes

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        ce = cross_entropy(out["student_logits"], batch["identity"])
        return {"loss": ce, "loss/ce": ce}
