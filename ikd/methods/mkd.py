"""MKD: margin-based cross-modal embedding distillation (after Jin et al., AAAI 2023) — a
reconstruction, as no code is public (DESIGN.md §5; the formula is `losses.margin_embedding_loss`)."""

from __future__ import annotations

import torch

from ikd.losses import cross_entropy, margin_embedding_loss
from ikd.method_params import MKDParams
from ikd.methods.base import Method, global_batch


class MKD(Method):
    """L = CE(y^s) + α·L_margin(p^s, p^t): the student's 512-d embedding is pulled onto its
    identity's (frozen) face embeddings and pushed below a cosine margin from the others' — this
    rank's students against the global batch's faces."""

    Params = MKDParams  # bump its `version` when the loss changes

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        labels = batch["identity"]
        ce = cross_entropy(out["student_logits"], labels)
        margin = margin_embedding_loss(
            out["student_embedding"],
            global_batch(batch["teacher_embedding"].detach()),
            labels,
            self.params.margin,
            target_labels=global_batch(labels),
        )
        return {"loss": ce + self.params.alpha * margin, "loss/ce": ce, "loss/margin": margin}
