"""IdentityKD (Shan et al., ACM MM Asia 2024, §3): compositional contrast + identity-wise KD +
fairness-aware weight averaging, with the readings of DESIGN.md §5."""

from __future__ import annotations

import math

import torch

from ikd.losses import composed_contrast, cross_entropy, identity_wise_kd
from ikd.method_params import IdentityKDParams
from ikd.methods.base import IdentityWise, Method, WeightAverage
from ikd.models.students import Student


class IdentityKD(Method):
    """L = δ1·L_cs + δ2·L_KD + CE(f_p(p), y)   (eq. 15, plus the composer's objective).

    - p = p^t + f_st(p^t, p^s) (eq. 6), with p^s detached into the composer (base.Net); the
      composer and f_p learn only from CE(f_p(p), y) ("fine-tune F_p with the subject
      classification objective"), weight 1, so the composer cannot collapse onto p^s.
    - L_cs (eq. 11) contrasts p^s with p^t and with p.detach(): the fused embedding is a target.
    - L_KD (eq. 14) with KL(softmax(f_p(p)/T) ‖ softmax(y^s/T))·T², f_p(p) detached, per-identity
      hinge margin m and weight β updated by `end_epoch` (eqs. 12–13).
    - Evaluation uses CFA's fairness-aware weight average of the student once an epoch has
      entered it; until then, the live student.
    """

    Params = IdentityKDParams
    version = 1  # bump when the loss changes: runs of older code get another hash
    composer = True

    def __init__(self, params: IdentityKDParams, num_identities: int, student: Student) -> None:
        super().__init__(params, num_identities, student)
        self.identity_wise = IdentityWise.from_params(num_identities, params)
        self.average = WeightAverage(self.net.student, params.fawa_decay, params.fawa_threshold)

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        p, labels = self.params, batch["identity"]
        cs, st, sp = composed_contrast(
            out["student_embedding"],
            batch["teacher_embedding"].detach(),
            out["fused_embedding"].detach(),
            labels,
            gamma=p.gamma,
            tau=p.tau,
            contrast=p.contrast,
        )
        kd, ce, kl = identity_wise_kd(
            out["student_logits"],
            out["fused_logits"].detach(),
            labels,
            margin=self.identity_wise.margin,
            beta=self.identity_wise.beta,
            temperature=p.temperature,
        )
        composer_ce = cross_entropy(out["fused_logits"], labels)
        return {
            "loss": p.delta1 * cs + p.delta2 * kd + composer_ce,
            "loss/cs": cs,
            "loss/st": st,
            "loss/sp": sp,
            "loss/kd": kd,
            "loss/ce": ce,
            "loss/kl": kl,
            "loss/composer_ce": composer_ce,
        }

    def evaluated_student(self) -> Student:
        return self.average.student if self.average.epochs > 0 else self.net.student

    def end_epoch(
        self, epoch: int, train_accuracy: torch.Tensor, val_accuracy: torch.Tensor
    ) -> None:
        self.identity_wise.update(epoch, train_accuracy)
        present = val_accuracy[~torch.isnan(val_accuracy)]  # identities with val samples
        self.average.update(self.net.student, float(present.min()) if len(present) else math.nan)
