"""CFKD: compositional contrastive distillation (Chen et al., "Distilling Audio-Visual Knowledge
by Compositional Contrastive Learning", CVPR 2021), as CCL's code (`yanbeic/CCL`, training.py's
image–video loop `train_i_epoch`, loss/nce_loss.py, loss/jsd_loss.py) computes it."""

from __future__ import annotations

import torch

from ikd.losses import cross_entropy, multi_positive_contrast, symmetric_kl
from ikd.method_params import CFKDParams
from ikd.methods.base import Method, accuracy, global_batch


class CFKD(Method):
    """CCL's two objectives, with v the student's embedding, t the teacher's, m = t + f(t, v) the
    composed one (`Composer`, CCL's `generate_prediction`), N(a, b) CCL's multi-positive NCE with
    anchors a against targets b (`multi_positive_contrast`, T = `cfkd.temperature`, CCL's 0.1 for
    images) and J CCL's `JSDLoss(weight=0.5)` (`symmetric_kl`: ½[KL(p‖q) + KL(q‖p)]):

        L_student  = CE(y^s) + [N(v, m) + N(m, v)] + [N(v, t) + N(t, v)] + J(y^s, f_p(m))
                   = loss_cls_v + loss_vm + loss_vi + loss_jsd_i      (CCL's total_loss_v)
        L_composer = CE(f_p(m)) + [N(v, m) + N(m, v)] + [N(m, t) + N(t, m)] + J(y^s, f_p(m))
                   = loss_cls_i + loss_vm + loss_mi + loss_jsd_i      (CCL's total_loss_i)

    CCL steps the student's optimizer with ∂L_student and the composer's with ∂L_composer. Here
    one optimizer minimises L_student + L_composer with stop-gradients that give each part the
    same gradient (base.Net, composer="both"): L_student is computed on the composer with its
    parameters frozen, so it reaches the student through the composer (as in CCL, where v enters
    the composer undetached) but moves only the student; L_composer is computed on the composer
    fed a detached v, so it moves only the composer and f_p. The teacher is frozen. (CCL's last
    commit, "fit to pytorch 1.7", moved the composer's `step()` after the student's backward,
    so its composer also accumulates ∂L_student; we follow the two objectives CCL was written
    with. DESIGN.md §5 said the composer learns from "its own contrast terms": this is which.)

    Under DDP every N contrasts this rank's anchors with the global batch's targets, gathered
    with their gradient. No identity-wise terms. Logged: `fused_acc`, the composer's training
    accuracy.
    """

    Params = CFKDParams
    version = 2  # bump when the loss changes: runs of older code get another hash
    composer = "both"

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        labels = batch["identity"]
        everyone = global_batch(labels)
        teacher = batch["teacher_embedding"].detach()

        def pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            """N(a, b) + N(b, a): each rank's anchors against the global batch's targets."""
            t = self.params.temperature
            return multi_positive_contrast(
                a, global_batch(b), labels, t, target_labels=everyone
            ) + multi_positive_contrast(b, global_batch(a), labels, t, target_labels=everyone)

        v, v_fixed = out["student_embedding"], out["student_embedding"].detach()
        m_student, m_composer = out["student_fused_embedding"], out["fused_embedding"]
        ce = cross_entropy(out["student_logits"], labels)
        composer_ce = cross_entropy(out["fused_logits"], labels)
        # The student's objective (composer frozen) and the composer's (student detached).
        vm_student, vm_composer = pair(v, m_student), pair(v_fixed, m_composer)
        vi, mi = pair(v, teacher), pair(m_composer, teacher)
        agreement_student = symmetric_kl(out["student_logits"], out["student_fused_logits"])
        agreement_composer = symmetric_kl(out["student_logits"].detach(), out["fused_logits"])
        student = ce + vm_student + vi + agreement_student
        composer = composer_ce + vm_composer + mi + agreement_composer
        return {
            "loss": student + composer,
            "loss/student": student,
            "loss/composer": composer,
            "loss/ce": ce,
            "loss/composer_ce": composer_ce,
            "loss/vm": vm_student,
            "loss/vi": vi,
            "loss/mi": mi,
            "loss/agreement": agreement_student,
            "fused_acc": accuracy(out["fused_logits"], labels),
        }
