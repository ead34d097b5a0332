"""CFKD: compositional contrastive distillation (Chen et al., "Distilling Audio-Visual Knowledge
by Compositional Contrastive Learning", CVPR 2021; code `yanbeic/CCL`)."""

from __future__ import annotations

import torch

from ikd.losses import cross_entropy, jensen_shannon, multi_positive_contrast
from ikd.method_params import CFKDParams
from ikd.methods.base import Method


class CFKD(Method):
    """The composer (CCL's, as IdentityKD's eq. 6) fuses the teacher embedding with the student's;
    the student and the composed embedding contrast each other over the batch (multi-positive NCE,
    both directions), their predictions agree through JSD, and both are trained with CE:

        L = CE(y^s) + CE(f_p(p)) + L_con(p^s → p) + L_con(p → p^s) + JSD(y^s, f_p(p))

    The student's embedding enters the composer detached (base.Net), so the student learns from
    CE(y^s), the contrasts and JSD, the composer from CE(f_p(p)), the contrasts and JSD. No
    identity-wise terms.
    """

    Params = CFKDParams
    version = 1  # bump when the loss changes: runs of older code get another hash
    composer = True

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        labels, t = batch["identity"], self.params.temperature
        student, fused = out["student_embedding"], out["fused_embedding"]
        ce = cross_entropy(out["student_logits"], labels)
        composer_ce = cross_entropy(out["fused_logits"], labels)
        contrast = multi_positive_contrast(student, fused, labels, t) + multi_positive_contrast(
            fused, student, labels, t
        )
        jsd = jensen_shannon(out["student_logits"], out["fused_logits"])
        return {
            "loss": ce + composer_ce + contrast + jsd,
            "loss/ce": ce,
            "loss/composer_ce": composer_ce,
            "loss/contrast": contrast,
            "loss/jsd": jsd,
        }
