"""Vanilla KD (Hinton et al. 2015) from the teacher's logits, optionally identity-wise (Fig. 4)."""

from __future__ import annotations

import torch

from ikd.losses import cross_entropy, hinton_kd, identity_wise_kd
from ikd.method_params import VanillaKDParams
from ikd.methods.base import IdentityWise, Method
from ikd.models.students import Student


class VanillaKD(Method):
    """L = CE + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), z_t the frozen teacher classifier's
    logits on the paired face, at Hinton's T = 4 with T² (RepDistiller's `DistillKL`).

    With `identity_wise`, L = eq. 14 with those logits as target, on CFA's scale (T =
    `kd_temperature` = 1, T² = 1), per-identity m and β (eqs. 12–13), β = 0 before
    `kd_start_epoch`; `hinge_active` logs the fraction of samples whose hinge is active."""

    Params = VanillaKDParams  # bump its `version` when the loss changes

    def __init__(self, params: VanillaKDParams, num_identities: int, student: Student) -> None:
        super().__init__(params, num_identities, student)
        self.identity_wise = IdentityWise.from_params(num_identities, params)

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        p = self.params
        logits, labels = out["student_logits"], batch["identity"]
        target = batch["teacher_logits"].detach()
        if p.identity_wise:
            margin, beta = self.identity_wise.weights()
            loss, ce, kl, active = identity_wise_kd(
                logits, target, labels, margin=margin, beta=beta, temperature=p.kd_temperature
            )
            return {"loss": loss, "loss/ce": ce, "loss/kl": kl, "hinge_active": active}
        ce = cross_entropy(logits, labels)
        kl = hinton_kd(logits, target, p.temperature)
        return {"loss": ce + p.alpha * kl, "loss/ce": ce, "loss/kl": kl}

    def end_epoch(
        self, epoch: int, train_accuracy: torch.Tensor, val_accuracy: torch.Tensor
    ) -> None:
        if self.params.identity_wise:
            self.identity_wise.update(epoch, train_accuracy)
        super().end_epoch(epoch, train_accuracy, val_accuracy)
