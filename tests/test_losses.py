"""Tests of `ikd.losses`: golden values against plain-Python references, and properties.

The references below are written from each docstring's formula with `math` loops over Python
lists, independently of the torch implementation, and compared in float64.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ikd import losses

REL = 1e-9

# A fixed batch: B = 4, identities [0, 0, 1, 2], N = 3 classes, E = 4.
LABELS = [0, 0, 1, 2]
STUDENT_LOGITS = [[1.2, -0.3, 0.5], [0.1, 0.8, -1.1], [-0.7, 2.0, 0.3], [0.4, -0.2, 1.5]]
TARGET_LOGITS = [[2.0, 0.1, -0.5], [0.9, 0.3, -0.4], [-0.2, 1.1, 0.6], [0.0, -1.3, 2.2]]
ANCHOR = [
    [0.3, -1.2, 0.8, 0.5],
    [1.1, 0.4, -0.6, 0.2],
    [-0.9, 0.7, 0.1, 1.3],
    [0.5, 0.5, -1.4, -0.3],
]
TARGET = [
    [0.6, -0.8, 1.0, 0.1],
    [0.9, -0.2, 0.3, 0.7],
    [-1.0, 0.4, -0.2, 0.9],
    [0.2, 1.1, -0.9, 0.4],
]
FUSED = [
    [0.4, -1.0, 0.7, 0.6],
    [1.2, 0.1, 0.2, -0.3],
    [-0.5, 0.9, 0.3, 1.0],
    [0.8, 0.2, -1.1, 0.1],
]
TEMPERATURE = 2.0
TAU = 0.5
COSINE_MARGIN = 0.1
# Per identity: with these, the hinge is active for samples 0 and 2 and inactive for 1 and 3.
KD_MARGIN = [0.2, 0.1, 0.5]
KD_BETA = [1.5, 0.5, 2.0]


def t(values, dtype=torch.float64) -> torch.Tensor:
    """A float64 tensor from nested lists."""
    return torch.tensor(values, dtype=dtype)


def labels_tensor(values=LABELS) -> torch.Tensor:
    """An int64 label tensor."""
    return torch.tensor(values, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# Plain-Python references, one per docstring formula.
# ---------------------------------------------------------------------------------------------


def ref_log_softmax(row: list[float]) -> list[float]:
    """log softmax of one row, shifted by its max."""
    top = max(row)
    log_total = math.log(sum(math.exp(x - top) for x in row))
    return [x - top - log_total for x in row]


def ref_softmax(row: list[float]) -> list[float]:
    """softmax of one row."""
    return [math.exp(x) for x in ref_log_softmax(row)]


def ref_kl(p: list[float], q: list[float]) -> float:
    """KL(p ‖ q) = Σ p log(p / q) for two probability vectors."""
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True) if pi > 0)


def ref_cosine(u: list[float], v: list[float]) -> float:
    """cos(u, v)."""
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def ref_cross_entropy(logits, labels) -> list[float]:
    """−log softmax(z)_y per sample."""
    return [-ref_log_softmax(z)[y] for z, y in zip(logits, labels, strict=True)]


def ref_hinton_kd(student, target, temperature) -> list[float]:
    """T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) per sample."""
    out = []
    for zs, zt in zip(student, target, strict=True):
        p = ref_softmax([x / temperature for x in zt])
        q = ref_softmax([x / temperature for x in zs])
        out.append(temperature**2 * ref_kl(p, q))
    return out


def ref_log_p(anchor, target, tau) -> list[list[float]]:
    """log p_ij = log softmax_j(cos(a_i, t_j)/τ)."""
    return [ref_log_softmax([ref_cosine(a, tj) / tau for tj in target]) for a in anchor]


def ref_info_nce(anchor, target, tau) -> list[float]:
    """−log p_ii per anchor."""
    log_p = ref_log_p(anchor, target, tau)
    return [-log_p[i][i] for i in range(len(anchor))]


def ref_multi_positive(anchor, target, labels, tau) -> list[float]:
    """−mean_pos log p_ij − mean_neg log(1 − p_ij) per anchor (0 for no negative)."""
    log_p = ref_log_p(anchor, target, tau)
    out = []
    for i, yi in enumerate(labels):
        pos = [j for j, yj in enumerate(labels) if yj == yi]
        neg = [j for j, yj in enumerate(labels) if yj != yi]
        pull = -sum(log_p[i][j] for j in pos) / len(pos)
        push = -sum(math.log(1 - math.exp(log_p[i][j])) for j in neg) / len(neg) if neg else 0.0
        out.append(pull + push)
    return out


def ref_kl_contrast(anchor, target, labels, tau) -> list[float]:
    """Σ_{j pos} (1/B_p)(log(1/B_p) − log p_ij) per anchor."""
    log_p = ref_log_p(anchor, target, tau)
    out = []
    for i, yi in enumerate(labels):
        pos = [j for j, yj in enumerate(labels) if yj == yi]
        out.append(sum((math.log(1 / len(pos)) - log_p[i][j]) / len(pos) for j in pos))
    return out


def ref_symmetric_kl(logits_a, logits_b) -> list[float]:
    """CCL's JSDLoss(weight=0.5) per sample: ½·Σ_c [p_c log(p_c/q_c) + q_c log(q_c/p_c)]."""
    out = []
    for za, zb in zip(logits_a, logits_b, strict=True):
        p, q = ref_softmax(za), ref_softmax(zb)
        both = sum(
            pi * math.log(pi / qi) + qi * math.log(qi / pi) for pi, qi in zip(p, q, strict=True)
        )
        out.append(0.5 * both)
    return out


def ref_margin_embedding(student, teacher, labels, margin) -> list[float]:
    """mean_pos (1 − c_ij) + mean_neg max(0, c_ij − m) per anchor (0 for no negative)."""
    out = []
    for i, yi in enumerate(labels):
        cos = [ref_cosine(student[i], tj) for tj in teacher]
        pos = [j for j, yj in enumerate(labels) if yj == yi]
        neg = [j for j, yj in enumerate(labels) if yj != yi]
        pull = sum(1 - cos[j] for j in pos) / len(pos)
        push = sum(max(0.0, cos[j] - margin) for j in neg) / len(neg) if neg else 0.0
        out.append(pull + push)
    return out


def ref_identity_wise_kd(student, target, labels, margin, beta, temperature):
    """(mean of [CE + β·max(0, KL − m)]/(1 + β), mean CE, mean KL)."""
    ce = ref_cross_entropy(student, labels)
    kl = ref_hinton_kd(student, target, temperature)
    per_sample = [
        (c + beta[y] * max(0.0, k - margin[y])) / (1 + beta[y])
        for c, k, y in zip(ce, kl, labels, strict=True)
    ]
    active = [k > margin[y] for k, y in zip(kl, labels, strict=True)]
    return mean(per_sample), mean(ce), mean(kl), mean(active)


def mean(values: list[float]) -> float:
    """Arithmetic mean of a list."""
    return sum(values) / len(values)


# ---------------------------------------------------------------------------------------------
# Golden values.
# ---------------------------------------------------------------------------------------------

# (ikd call taking `reduction`, reference per-sample values).
GOLDEN = {
    "cross_entropy": (
        lambda r: losses.cross_entropy(t(STUDENT_LOGITS), labels_tensor(), reduction=r),
        lambda: ref_cross_entropy(STUDENT_LOGITS, LABELS),
    ),
    "hinton_kd": (
        lambda r: losses.hinton_kd(t(STUDENT_LOGITS), t(TARGET_LOGITS), TEMPERATURE, reduction=r),
        lambda: ref_hinton_kd(STUDENT_LOGITS, TARGET_LOGITS, TEMPERATURE),
    ),
    "info_nce": (
        lambda r: losses.info_nce(t(ANCHOR), t(TARGET), TAU, reduction=r),
        lambda: ref_info_nce(ANCHOR, TARGET, TAU),
    ),
    "multi_positive_contrast": (
        lambda r: losses.multi_positive_contrast(
            t(ANCHOR), t(TARGET), labels_tensor(), TAU, reduction=r
        ),
        lambda: ref_multi_positive(ANCHOR, TARGET, LABELS, TAU),
    ),
    "kl_contrast": (
        lambda r: losses.kl_contrast(t(ANCHOR), t(TARGET), labels_tensor(), TAU, reduction=r),
        lambda: ref_kl_contrast(ANCHOR, TARGET, LABELS, TAU),
    ),
    "symmetric_kl": (
        lambda r: losses.symmetric_kl(t(STUDENT_LOGITS), t(TARGET_LOGITS), reduction=r),
        lambda: ref_symmetric_kl(STUDENT_LOGITS, TARGET_LOGITS),
    ),
    "margin_embedding_loss": (
        lambda r: losses.margin_embedding_loss(
            t(ANCHOR), t(TARGET), labels_tensor(), COSINE_MARGIN, reduction=r
        ),
        lambda: ref_margin_embedding(ANCHOR, TARGET, LABELS, COSINE_MARGIN),
    ),
}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_each_loss_matches_its_docstring_formula_per_sample_and_on_average(name):
    call, reference = GOLDEN[name]
    expected = reference()
    per_sample = call("none")
    assert per_sample.shape == (len(LABELS),)
    assert per_sample.dtype == torch.float64
    assert per_sample.tolist() == pytest.approx(expected, rel=REL)
    assert call("mean").item() == pytest.approx(mean(expected), rel=REL)


@pytest.mark.parametrize("name", list(GOLDEN))
def test_an_unknown_reduction_is_refused(name):
    call, _ = GOLDEN[name]
    with pytest.raises(ValueError, match="reduction"):
        call("median")


def test_hand_computed_values_of_small_cases():
    # CE of uniform logits over 3 classes: log 3.
    ce = losses.cross_entropy(t([[0.0, 0.0, 0.0]]), labels_tensor([2]))
    assert ce.item() == pytest.approx(1.0986122886681098, rel=REL)
    # Student uniform, target softmax [3/4, 1/4], T = 1: ¾·log(3/2) + ¼·log(1/2).
    kd = losses.hinton_kd(t([[0.0, 0.0]]), t([[math.log(3.0), 0.0]]), 1.0)
    assert kd.item() == pytest.approx(0.13081203594113697, rel=REL)
    # P = [¾, ¼], Q = [¼, ¾]: KL(P ‖ Q) = KL(Q ‖ P) = ½ log 3, and CCL's "JSD" is their mean
    # (a true Jensen–Shannon divergence would be 0.1308…).
    agreement = losses.symmetric_kl(t([[math.log(3.0), 0.0]]), t([[0.0, math.log(3.0)]]))
    assert agreement.item() == pytest.approx(0.5 * math.log(3.0), rel=REL)
    # Orthogonal anchors equal to their targets, τ = 1: p_ii = e/(e + 1), −log p_ii = log(1 + 1/e).
    eye = t([[1.0, 0.0], [0.0, 1.0]])
    assert losses.info_nce(eye, eye, 1.0).item() == pytest.approx(0.31326168751822286, rel=REL)
    # Two identities: −log p_ii − log(1 − p_ij) with p_ij = 1 − p_ii, twice log(1 + 1/e).
    mpc = losses.multi_positive_contrast(eye, eye, labels_tensor([0, 1]), 1.0)
    assert mpc.item() == pytest.approx(0.6265233750364457, rel=REL)
    # One identity: KL([½, ½] ‖ [e/(e+1), 1/(e+1)]).
    klc = losses.kl_contrast(eye, eye, labels_tensor([0, 0]), 1.0)
    assert klc.item() == pytest.approx(0.12011450695827752, rel=REL)
    # Student [1, 1] against teachers [1, 0] (other identity) and [0, 1] (own), m = ½:
    # (1 − 1/√2) + (1/√2 − ½) = ½ for sample 1; sample 0 sits on its teacher with cos 0 to the other.
    margin = losses.margin_embedding_loss(
        t([[1.0, 0.0], [1.0, 1.0]]), eye, labels_tensor([0, 1]), 0.5, reduction="none"
    )
    assert margin.tolist() == pytest.approx([0.0, 0.5], rel=REL, abs=1e-15)


@pytest.mark.parametrize("contrast", ["nce", "kl"])
def test_composed_contrast_mixes_student_teacher_and_student_fused_by_gamma(contrast):
    gamma = 0.8
    reference = {"nce": ref_multi_positive, "kl": ref_kl_contrast}[contrast]
    expected_st = mean(reference(ANCHOR, TARGET, LABELS, TAU))
    expected_sp = mean(reference(ANCHOR, FUSED, LABELS, TAU))
    total, student_teacher, student_fused = losses.composed_contrast(
        t(ANCHOR), t(TARGET), t(FUSED), labels_tensor(), gamma=gamma, tau=TAU, contrast=contrast
    )
    assert student_teacher.item() == pytest.approx(expected_st, rel=REL)
    assert student_fused.item() == pytest.approx(expected_sp, rel=REL)
    expected = gamma * expected_st + (1 - gamma) * expected_sp
    assert total.item() == pytest.approx(expected, rel=REL)


def test_identity_wise_kd_matches_eq_14_with_a_hinge_on_the_margin():
    kl = ref_hinton_kd(STUDENT_LOGITS, TARGET_LOGITS, TEMPERATURE)
    active = [k > KD_MARGIN[y] for k, y in zip(kl, LABELS, strict=True)]
    assert active == [True, False, True, False], "the fixture should exercise both hinge sides"
    expected = ref_identity_wise_kd(
        STUDENT_LOGITS, TARGET_LOGITS, LABELS, KD_MARGIN, KD_BETA, TEMPERATURE
    )
    got = losses.identity_wise_kd(
        t(STUDENT_LOGITS),
        t(TARGET_LOGITS),
        labels_tensor(),
        margin=t(KD_MARGIN),
        beta=t(KD_BETA),
        temperature=TEMPERATURE,
    )
    assert [value.item() for value in got] == pytest.approx(list(expected), rel=REL)
    assert got[3].item() == 0.5  # the hinge-active fraction


# Anchors: the first two samples; targets: the whole batch (what a rank sees under DDP).
AGAINST_THE_BATCH = {
    "multi_positive_contrast": (losses.multi_positive_contrast, ref_multi_positive, TAU),
    "kl_contrast": (losses.kl_contrast, ref_kl_contrast, TAU),
    "margin_embedding_loss": (losses.margin_embedding_loss, ref_margin_embedding, COSINE_MARGIN),
}


@pytest.mark.parametrize("name", list(AGAINST_THE_BATCH))
def test_anchors_contrast_against_a_larger_target_batch_with_its_own_labels(name):
    loss, reference, scale = AGAINST_THE_BATCH[name]
    got = loss(
        t(ANCHOR)[:2],
        t(TARGET),
        labels_tensor()[:2],
        scale,
        reduction="none",
        target_labels=labels_tensor(),
    )
    assert got.tolist() == pytest.approx(reference(ANCHOR, TARGET, LABELS, scale)[:2], rel=REL)


# ---------------------------------------------------------------------------------------------
# Properties.
# ---------------------------------------------------------------------------------------------


def clustered_batch(seed: int, batch: int, identities: int, width: int, spread: float):
    """Labels, identity-clustered unit targets (centre + `spread` noise) and random anchors."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(batch) % identities
    centres = torch.randn(identities, width, generator=generator, dtype=torch.float64)
    centres = centres / centres.norm(dim=1, keepdim=True)
    noise = torch.randn(batch, width, generator=generator, dtype=torch.float64)
    targets = centres[labels] + spread * noise / math.sqrt(width)
    targets = targets / targets.norm(dim=1, keepdim=True)
    anchors = torch.randn(batch, width, generator=generator, dtype=torch.float64)
    return labels, targets, anchors / anchors.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("name", ["info_nce", "multi_positive_contrast"])
def test_contrast_falls_as_the_anchor_moves_toward_its_positives(name):
    labels, targets, anchors = clustered_batch(seed=0, batch=8, identities=4, width=16, spread=0.1)
    values = []
    for alpha in torch.linspace(0, 1, 11).tolist():
        moved = (1 - alpha) * anchors + alpha * targets
        if name == "info_nce":
            values.append(losses.info_nce(moved, targets, 0.2).item())
        else:
            values.append(losses.multi_positive_contrast(moved, targets, labels, 0.2).item())
    steps = [b - a for a, b in itertools.pairwise(values)]
    assert all(step < 0 for step in steps), f"{name} along the path: {values}"
    assert values[-1] < 0.5 * values[0], f"{name} along the path: {values}"


def kd_inputs():
    """Student logits (with grad), target logits and labels of the fixed batch."""
    return t(STUDENT_LOGITS).requires_grad_(), t(TARGET_LOGITS), labels_tensor()


def test_identity_wise_kd_is_plain_cross_entropy_when_beta_is_zero():
    student, target, labels = kd_inputs()
    total, ce, _, _ = losses.identity_wise_kd(
        student,
        target,
        labels,
        margin=t(KD_MARGIN),
        beta=torch.zeros(3, dtype=torch.float64),
        temperature=TEMPERATURE,
    )
    assert total.item() == pytest.approx(losses.cross_entropy(student, labels).item(), rel=REL)
    assert total.item() == pytest.approx(ce.item(), rel=REL)


def test_a_kl_below_the_margin_passes_only_the_cross_entropy_gradient():
    beta = t(KD_BETA)
    student, target, labels = kd_inputs()
    total, _, kl, _ = losses.identity_wise_kd(
        student, target, labels, margin=t([1e3] * 3), beta=beta, temperature=TEMPERATURE
    )
    assert kl.item() < 1e3
    (grad,) = torch.autograd.grad(total, student)

    plain = t(STUDENT_LOGITS).requires_grad_()
    ce = losses.cross_entropy(plain, labels, reduction="none")
    (ce_grad,) = torch.autograd.grad((ce / (1 + beta[labels])).mean(), plain)
    assert grad.flatten().tolist() == pytest.approx(ce_grad.flatten().tolist(), rel=REL, abs=1e-15)

    # Above the margin the KL term does move the student, so the two gradients differ.
    student, target, labels = kd_inputs()
    total, _, _, _ = losses.identity_wise_kd(
        student, target, labels, margin=t([0.0] * 3), beta=beta, temperature=TEMPERATURE
    )
    (grad_active,) = torch.autograd.grad(total, student)
    assert (grad_active - ce_grad).abs().max().item() > 1e-3


def test_symmetric_kl_is_symmetric_zero_on_equal_inputs_and_unbounded():
    generator = torch.Generator().manual_seed(1)
    a = 3 * torch.randn(16, 5, generator=generator, dtype=torch.float64)
    b = 3 * torch.randn(16, 5, generator=generator, dtype=torch.float64)
    forward = losses.symmetric_kl(a, b, reduction="none")
    backward = losses.symmetric_kl(b, a, reduction="none")
    assert forward.tolist() == pytest.approx(backward.tolist(), rel=REL)
    assert losses.symmetric_kl(a, a, reduction="none").abs().max().item() < 1e-15
    assert (forward >= 0).all()
    # Unlike a Jensen–Shannon divergence (≤ log 2), it grows without bound as supports separate.
    far = losses.symmetric_kl(t([[40.0, -40.0]]), t([[-40.0, 40.0]])).item()
    assert far == pytest.approx(80.0, rel=1e-9)


def test_hinton_kd_is_zero_for_equal_logits_and_scales_as_t_squared_kl():
    student, target = t(STUDENT_LOGITS), t(TARGET_LOGITS)
    for temperature in (0.5, 1.0, 4.0):
        same = losses.hinton_kd(target, target, temperature, reduction="none")
        assert same.abs().max().item() < 1e-15
        kl = [
            ref_kl(
                ref_softmax([x / temperature for x in zt]),
                ref_softmax([x / temperature for x in zs]),
            )
            for zs, zt in zip(STUDENT_LOGITS, TARGET_LOGITS, strict=True)
        ]
        got = losses.hinton_kd(student, target, temperature, reduction="none")
        assert got.tolist() == pytest.approx([temperature**2 * k for k in kl], rel=REL)
        # Logits scaled by T at temperature T give T² times the T = 1 value.
        rescaled = losses.hinton_kd(student * temperature, target * temperature, temperature)
        at_one = losses.hinton_kd(student, target, 1.0)
        assert rescaled.item() == pytest.approx(temperature**2 * at_one.item(), rel=REL)


def finite_contrast_and_grad(anchor, target, labels, tau):
    """The multi-positive contrast and its gradient w.r.t. the anchor."""
    anchor = anchor.clone().requires_grad_()
    loss = losses.multi_positive_contrast(anchor, target, labels, tau)
    (grad,) = torch.autograd.grad(loss, anchor)
    return loss, grad


def test_multi_positive_contrast_is_finite_with_a_single_identity_in_the_batch():
    labels, targets, anchors = clustered_batch(seed=2, batch=6, identities=1, width=8, spread=0.5)
    loss, grad = finite_contrast_and_grad(anchors, targets, labels, 0.1)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # With no negative only the positives' term remains.
    expected = ref_multi_positive(anchors.tolist(), targets.tolist(), labels.tolist(), 0.1)
    assert loss.item() == pytest.approx(mean(expected), rel=REL)


def test_multi_positive_contrast_is_finite_when_one_probability_is_almost_one():
    eye = torch.eye(3, dtype=torch.float64)
    # Aligned anchors, τ = 1e-3: p_ii ≈ 1 on the positive and the loss ≈ 0.
    loss, grad = finite_contrast_and_grad(eye, eye, labels_tensor([0, 1, 2]), 1e-3)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert 0 <= loss.item() < 1e-12
    # Each anchor aligned with a *negative's* target: p ≈ 1 on a negative, log(1 − p) → −∞
    # unless guarded.
    swapped = eye[[1, 2, 0]]
    loss, grad = finite_contrast_and_grad(swapped, eye, labels_tensor([0, 1, 2]), 1e-3)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert loss.item() > 100


def test_kl_contrast_is_non_negative_and_zero_only_at_the_uniform_positive_target():
    for seed in range(5):
        labels, targets, anchors = clustered_batch(seed, batch=12, identities=3, width=8, spread=1)
        for tau in (0.05, 0.5, 5.0):
            values = losses.kl_contrast(anchors, targets, labels, tau, reduction="none")
            assert (values >= 0).all(), f"seed {seed}, τ {tau}: {values.tolist()}"
    # One identity and identical targets: softmax is uniform over the batch, the target exactly.
    labels = labels_tensor([0, 0, 0, 0])
    same = t([[0.3, -0.4, 1.2]] * 4)
    anchors = t(ANCHOR)[:, :3]
    exact = losses.kl_contrast(anchors, same, labels, 0.5, reduction="none")
    assert exact.abs().max().item() < 1e-15
    # The same labels with distinct targets: the softmax is no longer uniform, so KL > 0.
    distinct = losses.kl_contrast(anchors, t(TARGET)[:, :3], labels, 0.5, reduction="none")
    assert (distinct > 1e-3).all(), distinct.tolist()
    # With negatives and finite τ some mass leaks onto them: KL > 0, and → 0 as τ → 0.
    eye = torch.eye(3, dtype=torch.float64)
    leaky = losses.kl_contrast(eye, eye, labels_tensor([0, 1, 2]), 1.0)
    assert leaky.item() == pytest.approx(math.log(1 + 2 / math.e), rel=REL)
    sharp = losses.kl_contrast(eye, eye, labels_tensor([0, 1, 2]), 1e-3)
    assert 0 <= sharp.item() < 1e-12


# ---------------------------------------------------------------------------------------------
# How flat L_cs is at the paper's τ = 5 (DESIGN.md §5).
# ---------------------------------------------------------------------------------------------


def composed_loss_and_grad_norm(student, teacher, fused, labels, tau):
    """L_cs (γ = 0.8, NCE form) and the norm of its gradient w.r.t. the student embedding."""
    student = student.clone().requires_grad_()
    total, _, _ = losses.composed_contrast(student, teacher, fused, labels, gamma=0.8, tau=tau)
    (grad,) = torch.autograd.grad(total, student)
    return total.item(), grad.norm().item()


def test_composed_contrast_is_almost_flat_at_the_papers_tau_of_five():
    """At τ = 5, cos/τ lies in [−0.2, 0.2]: perfect alignment barely lowers L_cs below chance.

    Measured (seed 0): τ = 5 moves L_cs 3.497 → 3.326 (4.9 %), τ = 0.1 moves it 3.580 → 1.388
    (61 %); the gradient norm at the random point is ~50× smaller at τ = 5.
    """
    batch, identities, width = 32, 8, 512
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(batch) % identities
    # Random 512-d identity centres are nearly orthogonal; samples scatter slightly around them.
    centres = torch.randn(identities, width, generator=generator, dtype=torch.float64)
    teacher = centres[labels] + 0.1 * torch.randn(
        batch, width, generator=generator, dtype=torch.float64
    )
    fused = teacher + 0.1 * torch.randn(batch, width, generator=generator, dtype=torch.float64)
    aligned = teacher.clone()
    random = torch.randn(batch, width, generator=generator, dtype=torch.float64)

    measured = {}
    for tau in (5.0, 0.1):
        loss_aligned, _ = composed_loss_and_grad_norm(aligned, teacher, fused, labels, tau)
        loss_random, grad_random = composed_loss_and_grad_norm(random, teacher, fused, labels, tau)
        change = (loss_random - loss_aligned) / loss_random
        measured[tau] = (loss_aligned, loss_random, change, grad_random)
    report = ", ".join(
        f"τ={tau}: L_cs aligned {a:.4f} random {r:.4f} relative change {c:.3%} "
        f"|∇ at random| {g:.3e}"
        for tau, (a, r, c, g) in measured.items()
    )
    assert 0 < measured[5.0][2] < 0.06, report
    assert measured[0.1][2] > 0.5, report
    assert measured[5.0][3] < measured[0.1][3] / 20, report
