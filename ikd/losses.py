"""Loss functions of the five methods: pure functions of explicit tensors.

Shapes: B batch, N identities, E embedding width. `labels` are (B,) int64 identities. Every
function returns the batch mean unless `reduction="none"` gives the (B,) per-sample values.
Equation numbers refer to the IdentityKD paper (Shan et al., ACM MM Asia 2024) unless another
paper is named.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """L_CE = −log softmax(z)_y: the subject classification objective (eq. 14's L_CE)."""
    return _reduce(F.cross_entropy(logits, labels, reduction="none"), reduction)


def hinton_kd(
    student_logits: torch.Tensor,
    target_logits: torch.Tensor,
    temperature: float,
    reduction: str = "mean",
) -> torch.Tensor:
    """T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) (Hinton, Vinyals & Dean 2015, "Distilling the
    Knowledge in a Neural Network", eq. 2 with the T² gradient scale of §2).

    Args:
        student_logits: z_s (B, N), receives the gradient.
        target_logits: z_t (B, N), the target (teacher, or IdentityKD's fused logits f_p(p));
            callers detach it.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_target = F.log_softmax(target_logits / temperature, dim=1)
    per_sample = (log_target.exp() * (log_target - log_student)).sum(dim=1)
    return _reduce(per_sample * temperature**2, reduction)


def similarities(anchor: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sim(a_i, t_j): cosine similarity of every anchor with every target, (B, E) × (B, E) → (B, B)."""
    return F.normalize(anchor, dim=1) @ F.normalize(target, dim=1).T


def info_nce(
    anchor: torch.Tensor, target: torch.Tensor, tau: float, reduction: str = "mean"
) -> torch.Tensor:
    """InfoNCE (eq. 7; van den Oord et al. 2018): −log p_ii with
    p_ij = exp(sim(a_i, t_j)/τ) / Σ_k exp(sim(a_i, t_k)/τ).

    The positive of anchor i is target i (the same sample's other modality). Eq. 8 has the same
    form against the fused embeddings; its printed denominator, summing the diagonal pairs
    sim(p_j^s, p_j), is read as a typo for this one (DESIGN.md §5).
    """
    logits = similarities(anchor, target) / tau
    return _reduce(-torch.diagonal(F.log_softmax(logits, dim=1)), reduction)


def _log1mexp(log_p: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(x)) for x ≤ 0, accurate for x near 0 and very negative x alike.

    x is clamped to ≤ −1e-7, so −log(1 − p) is capped at ≈ 16.1 and carries no gradient once a
    negative's probability exceeds 1 − 1e-7 (the positives' term still pulls the anchor away).
    """
    log_p = log_p.clamp(max=-1e-7)
    return torch.where(
        log_p > -0.6931471805599453, torch.log(-torch.expm1(log_p)), torch.log1p(-log_p.exp())
    )


def same_identity(labels: torch.Tensor, target_labels: torch.Tensor | None) -> torch.Tensor:
    """The positive mask [y_i = y_j] (B, T) of anchors' labels against targets' (default: the
    anchors' own, T = B)."""
    target_labels = labels if target_labels is None else target_labels
    return labels[:, None] == target_labels[None, :]


def _batch_log_probabilities(
    anchor: torch.Tensor,
    target: torch.Tensor,
    labels: torch.Tensor,
    target_labels: torch.Tensor | None,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p_ij = log softmax_j(sim(a_i, t_j)/τ) (B, T), and the positive mask (B, T)."""
    log_p = F.log_softmax(similarities(anchor, target) / tau, dim=1)
    return log_p, same_identity(labels, target_labels).to(log_p.dtype)


def multi_positive_contrast(
    anchor: torch.Tensor,
    target: torch.Tensor,
    labels: torch.Tensor,
    tau: float,
    reduction: str = "mean",
    target_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """The multi-positive contrast of eqs. 9–10, for anchor i:

        L_i = −(1/B_p) Σ_{j: y_j = y_i} log p_ij − (1/B_n) Σ_{j: y_j ≠ y_i} log(1 − p_ij),
        p_ij = softmax_j(sim(a_i, t_j)/τ)    (eq. 7's probabilities over the batch)

    B_p, B_n: positives (same identity, target i included) and negatives of anchor i among the
    targets. With no negative the second term is 0. Eq. 9 is anchor = p^s, target = p^t; eq. 10
    anchor = p^s, target = p (fused). CFKD uses the same form (CCL's `NCELoss`: Chen et al. CVPR
    2021) in both directions.

    The targets may be more than the anchors: under DDP the anchors are this rank's samples and
    the targets the global batch (`target` (T, E) with `target_labels` (T,); default: the anchors'
    own batch and labels).
    """
    log_p, positive = _batch_log_probabilities(anchor, target, labels, target_labels, tau)
    negative = 1 - positive
    positives = -(log_p * positive).sum(dim=1) / positive.sum(dim=1)
    negatives = -(_log1mexp(log_p) * negative).sum(dim=1) / negative.sum(dim=1).clamp(min=1)
    return _reduce(positives + negatives, reduction)


def kl_contrast(
    anchor: torch.Tensor,
    target: torch.Tensor,
    labels: torch.Tensor,
    tau: float,
    reduction: str = "mean",
    target_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Table 5's KL variant of eqs. 9–10: KL(q_i ‖ p_i) with q_ij = 1/B_p on anchor i's positives
    (0 elsewhere) and p_ij = softmax_j(sim(a_i, t_j)/τ), i.e.
    L_i = Σ_{j: y_j = y_i} (1/B_p)·(log(1/B_p) − log p_ij). Targets as in
    `multi_positive_contrast`."""
    log_p, positive = _batch_log_probabilities(anchor, target, labels, target_labels, tau)
    count = positive.sum(dim=1)
    per_sample = -(log_p * positive).sum(dim=1) / count - torch.log(count)
    return _reduce(per_sample, reduction)


CONTRASTS = {"nce": multi_positive_contrast, "kl": kl_contrast}


def composed_contrast(
    student_embedding: torch.Tensor,
    teacher_embedding: torch.Tensor,
    fused_embedding: torch.Tensor,
    labels: torch.Tensor,
    *,
    gamma: float,
    tau: float,
    contrast: str = "nce",
    target_labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_cs = (γ/B) Σ_i L_st(p_i^s, p_i^t) + ((1−γ)/B) Σ_i L_sp(p_i^s, p_i)   (eq. 11).

    L_st and L_sp are eqs. 9 and 10 (`contrast="nce"`) or their KL variant (`"kl"`, Table 5).
    Callers detach the fused embedding p: it is a target for the student (DESIGN.md §5). The
    teacher and fused embeddings may be the global batch (`target_labels`, as in
    `multi_positive_contrast`).

    Returns:
        (L_cs, L_st, L_sp), each a scalar mean over the anchors.
    """
    loss = CONTRASTS[contrast]
    student_teacher = loss(
        student_embedding, teacher_embedding, labels, tau, target_labels=target_labels
    )
    student_fused = loss(
        student_embedding, fused_embedding, labels, tau, target_labels=target_labels
    )
    return gamma * student_teacher + (1 - gamma) * student_fused, student_teacher, student_fused


def identity_wise_kd(
    student_logits: torch.Tensor,
    target_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: torch.Tensor,
    beta: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Identity-wise KD (eq. 14), after CFA (Wei et al. CVPR 2023, eqs. 8–9):

        L_KD = (1/B) Σ_i [L_CE(y_i^s, y_i) + β_{y_i}·max(0, KL_i − m_{y_i})] / (1 + β_{y_i}),
        KL_i = T²·KL(softmax(z_t,i/T) ‖ softmax(z_s,i/T))

    Eq. 14's constant "− m_i" would have no gradient, so the margin is a hinge (DESIGN.md §5);
    dividing by 1 + β is CFA's (1 − b)·CE + b·KL with b = β/(1 + β). CFA (after TRADES) weighs a
    KL at T = 1, no T² factor, against CE with β: the scale eq. 14 takes β and m from, hence the
    default T = 1 of `kd_temperature` (ikd/method_params.py). With β = 0, L_KD = mean CE.

    Args:
        student_logits: z_s = y^s (B, N).
        target_logits: z_t (B, N): IdentityKD's fused logits f_p(p), or the teacher's; detached.
        margin: m (N,) per identity (eq. 12).
        beta: β (N,) per identity (eq. 13).

    Returns:
        (L_KD, mean CE, mean KL, the fraction of samples whose hinge is active: KL_i > m_{y_i})
        — the last three unweighted, for logging.
    """
    ce = cross_entropy(student_logits, labels, reduction="none")
    kl = hinton_kd(student_logits, target_logits, temperature, reduction="none")
    m, b = margin[labels], beta[labels]
    per_sample = (ce + b * torch.relu(kl - m)) / (1 + b)
    active = (kl > m).to(kl.dtype).mean()
    return per_sample.mean(), ce.mean(), kl.mean(), active


def symmetric_kl(
    logits_a: torch.Tensor, logits_b: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """½[KL(P ‖ Q) + KL(Q ‖ P)], P = softmax(a), Q = softmax(b) at temperature 1: CFKD's
    agreement between the student's and the composed predictions.

    This is what CCL's `JSDLoss(weight=0.5)` computes (Chen et al. CVPR 2021, `yanbeic/CCL`
    loss/jsd_loss.py: `p·log(p/q) + q·log(q/p)`, summed over classes, batch mean, × 0.5) — a
    symmetrised KL (half Jeffreys' divergence), not the Jensen–Shannon divergence its name says.
    CCL adds 1e-10 inside the log; here log-softmax keeps it exact.
    """
    log_p, log_q = F.log_softmax(logits_a, dim=1), F.log_softmax(logits_b, dim=1)
    per_sample = 0.5 * ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=1)
    return _reduce(per_sample, reduction)


def margin_embedding_loss(
    student_embedding: torch.Tensor,
    teacher_embedding: torch.Tensor,
    labels: torch.Tensor,
    margin: float,
    reduction: str = "mean",
    target_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """MKD's cross-modal embedding distillation — **a reconstruction**: Jin et al. (AAAI 2023)
    publish no code, so this follows DESIGN.md §5's reading of their margin-based loss. With
    c_ij = cos(p_i^s, p_j^t) over the batch:

        L_i = (1/B_p) Σ_{j: y_j = y_i} (1 − c_ij) + (1/B_n) Σ_{j: y_j ≠ y_i} max(0, c_ij − m)

    pulling the student embedding onto its identity's teacher embeddings and pushing other
    identities' below the cosine margin m (0 when the batch has no negative). The teacher
    embeddings may be the global batch (`target_labels`, as in `multi_positive_contrast`).
    """
    cosine = similarities(student_embedding, teacher_embedding)
    positive = same_identity(labels, target_labels).to(cosine.dtype)
    negative = 1 - positive
    pull = ((1 - cosine) * positive).sum(dim=1) / positive.sum(dim=1)
    push = (torch.relu(cosine - margin) * negative).sum(dim=1) / negative.sum(dim=1).clamp(min=1)
    return _reduce(pull + push, reduction)
