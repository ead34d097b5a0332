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

    Logged as `loss/student`, `loss/composer`, `loss/ce`, `loss/composer_ce`,
    `loss/student_composed` (loss_vm), `loss/student_teacher` (loss_vi), `loss/composed_teacher`
    (loss_mi), `loss/agreement` (J), and `fused_acc`, the composer's training accuracy.

    Who learns from what. CCL's code release (commit 5c18684, 2021-04-25) steps the student's SGD
    optimizer on ∂L_student and the composer's on ∂L_composer, v entering the composer undetached.
    Here one optimizer minimises L_student + L_composer with stop-gradients that give each part
    the same gradient (base.Net, composer mode "both"): L_student is computed on the composer
    with its parameters frozen, so it reaches the student through the composer as in CCL but
    moves only the student; L_composer is computed on the composer fed a detached v, so it moves
    only the composer and f_p. The teacher is frozen. This departs from CCL's last commit
    (b590483, 2021-07-07, "fit to pytorch 1.7"), which moved the composer's `step()` after the
    student's backward — torch ≥ 1.5 refuses a backward through weights a step has changed in
    place — and so lets the composer also accumulate ∂L_student: a side effect of where its
    `zero_grad` sits, not a change of method, and we keep the two objectives the code was
    released with. One residual difference from that release: its student's backward ran through
    the composer's weights after their step; ours uses them before it. (DESIGN.md §5's "the
    composer learns from CE(composed) and its own contrast terms" is L_composer.)

    Under DDP every N contrasts this rank's anchors with the global batch's targets, gathered
    once each with their gradient. No identity-wise terms.
    """

    Params = CFKDParams  # bump its `version` when the loss changes
    composer_mode = "both"

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        labels, temperature = batch["identity"], self.params.temperature
        all_labels = global_batch(labels)
        # this rank's anchors and the global batch's targets: (mine, everyone's)
        student = (out["student_embedding"], global_batch(out["student_embedding"]))
        student_detached = (student[0].detach(), student[1].detach())
        teacher_embedding = batch["teacher_embedding"].detach()
        teacher = (teacher_embedding, global_batch(teacher_embedding))
        # m on the frozen composer (the student's objective), m on the detached v (the composer's)
        composed_for_student = (
            out["student_fused_embedding"],
            global_batch(out["student_fused_embedding"]),
        )
        composed = (out["fused_embedding"], global_batch(out["fused_embedding"]))

        def both_ways(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> torch.Tensor:
            """N(a, b) + N(b, a)."""
            return multi_positive_contrast(
                a[0], b[1], labels, temperature, target_labels=all_labels
            ) + multi_positive_contrast(b[0], a[1], labels, temperature, target_labels=all_labels)

        ce = cross_entropy(out["student_logits"], labels)
        composer_ce = cross_entropy(out["fused_logits"], labels)
        student_composed = both_ways(student, composed_for_student)
        student_teacher = both_ways(student, teacher)
        agreement = symmetric_kl(out["student_logits"], out["student_fused_logits"])
        student_loss = ce + student_composed + student_teacher + agreement
        composer_loss = (
            composer_ce
            + both_ways(student_detached, composed)  # loss_vm, reaching only the composer
            + (composed_teacher := both_ways(composed, teacher))
            + symmetric_kl(out["student_logits"].detach(), out["fused_logits"])
        )
        return {
            "loss": student_loss + composer_loss,
            "loss/student": student_loss,
            "loss/composer": composer_loss,
            "loss/ce": ce,
            "loss/composer_ce": composer_ce,
            "loss/student_composed": student_composed,
            "loss/student_teacher": student_teacher,
            "loss/composed_teacher": composed_teacher,
            "loss/agreement": agreement,
            "fused_acc": accuracy(out["fused_logits"], labels),
        }
