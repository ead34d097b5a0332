"""IdentityKD (Shan et al., ACM MM Asia 2024, §3): compositional contrast + identity-wise KD +
fairness-aware weight averaging, with the readings of DESIGN.md §5."""

from __future__ import annotations

import torch

from ikd.losses import composed_contrast, cross_entropy, identity_wise_kd
from ikd.method_params import IdentityKDParams
from ikd.methods.base import IdentityWise, Method, accuracy, global_batch
from ikd.models.students import Student


class IdentityKD(Method):
    """L = δ1·L_cs + δ2·L_KD + CE(f_p(p), y)   (eq. 15, plus the composer's objective).

    - p = p^t + f_st(p^t, p^s) (eq. 6), with p^s detached into the composer (base.Net); the
      composer and f_p learn only from CE(f_p(p), y) ("fine-tune F_p with the subject
      classification objective"), weight 1, so the composer cannot collapse onto p^s.
    - L_cs (eq. 11) contrasts this rank's p^s with the global batch's p^t and p.detach() (the
      fused embedding is a target).
    - L_KD (eq. 14): the student's CE mixed with the hinge max(0, KL_i − m_i) at weight β_i, KL_i
      = T²·KL(softmax(f_p(p)/T) ‖ softmax(y^s/T)) at CFA's scale (T = `kd_temperature` = 1),
      f_p(p) detached; m and β per identity, updated by `end_epoch` (eqs. 12–13); β = 0 before
      `kd_start_epoch`.
    - Evaluation uses CFA's fairness-aware weight average of the student (`fawa`, on by default
      here) once an epoch has entered it; until then, the live student.

    Ablations are settings: δ1 = 0 drops L_cs; β0 = 0 drops the KD part of eq. 14 and keeps the
    student's CE at full weight; `fawa=false` evaluates the live student. Eq. 14 carries the
    student's CE, so δ2 = 0 removes CE as well (the student then learns from L_cs alone): it is
    not a "no KD" switch.

    Logged besides the terms: `hinge_active` (the fraction of samples with KL_i > m_i — Fig. 4's
    λ1 acts only through it) and `fused_acc` (the composer's training accuracy: how far the KD
    target carries identity rather than label smoothing).
    """

    Params = IdentityKDParams  # bump its `version` when the loss changes
    composer_mode = "own"

    def __init__(self, params: IdentityKDParams, num_identities: int, student: Student) -> None:
        super().__init__(params, num_identities, student)
        self.identity_wise = IdentityWise.from_params(num_identities, params)

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        p, labels = self.params, batch["identity"]
        cs, st, sp = composed_contrast(
            out["student_embedding"],
            global_batch(batch["teacher_embedding"].detach()),
            global_batch(out["fused_embedding"].detach()),
            labels,
            gamma=p.gamma,
            tau=p.tau,
            contrast=p.contrast,
            target_labels=global_batch(labels),
        )
        margin, beta = self.identity_wise.weights()
        kd, ce, kl, active = identity_wise_kd(
            out["student_logits"],
            out["fused_logits"].detach(),
            labels,
            margin=margin,
            beta=beta,
            temperature=p.kd_temperature,
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
            "hinge_active": active,
            "fused_acc": accuracy(out["fused_logits"], labels),
        }

    def end_epoch(
        self, epoch: int, train_accuracy: torch.Tensor, val_accuracy: torch.Tensor
    ) -> None:
        self.identity_wise.update(epoch, train_accuracy)
        super().end_epoch(epoch, train_accuracy, val_accuracy)
