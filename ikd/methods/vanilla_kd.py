"""Vanilla KD (Hinton et al. 2015) from the teacher's logits, optionally identity-wise (Fig. 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ikd.losses import cross_entropy, hinton_kd, identity_wise_kd
from ikd.methods.base import IdentityWise, Method


@dataclass(frozen=True)
class VanillaKDParams:
    alpha: float = 1.0  # α: weight of T²·KL (plain form)
    temperature: float = 4.0  # T
    identity_wise: bool = False  # eq. 14's per-identity margin and β instead of α (Fig. 4)
    lambda1: float = 0.5  # λ1, eq. 12 (identity-wise only)
    lambda2: float = 0.4  # λ2, eq. 13 (identity-wise only)
    margin0: float = 8 / 255  # m0
    beta0: float = 6.0  # β0
    warmup_epochs: int = 5


class VanillaKD(Method):
    """L = CE + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), z_t the frozen teacher classifier's
    logits on the paired face. With `identity_wise`, L = eq. 14 with those logits as target."""

    Params = VanillaKDParams

    def __init__(self, params: VanillaKDParams, student: str, num_identities: int) -> None:
        super().__init__(params, student, num_identities)
        self.identity_wise = IdentityWise.from_params(num_identities, params)

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        p = self.params
        logits, labels = out["student_logits"], batch["identity"]
        target = batch["teacher_logits"].detach()
        if p.identity_wise:
            loss, ce, kl = identity_wise_kd(
                logits,
                target,
                labels,
                margin=self.identity_wise.margin,
                beta=self.identity_wise.beta,
                temperature=p.temperature,
            )
            return {"loss": loss, "loss/ce": ce, "loss/kl": kl, "loss/kd": loss}
        ce = cross_entropy(logits, labels)
        kl = hinton_kd(logits, target, p.temperature)
        return {"loss": ce + p.alpha * kl, "loss/ce": ce, "loss/kl": kl}

    def end_epoch(
        self, epoch: int, train_accuracy: torch.Tensor, val_accuracy: torch.Tensor
    ) -> None:
        if self.params.identity_wise:
            self.identity_wise.update(epoch, train_accuracy)
