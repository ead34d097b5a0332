"""Contract tests of `ikd.methods` and `ikd.models.students` (DESIGN.md §5, "Contract for every
method"): named loss terms, who receives gradient from what, gait-only prediction, per-identity
state across epochs, fairness-aware weight averaging, checkpoints and config validation.

Every method is built the way training builds it — `load_config("smoke", ...)` then
`build_method(config, num_identities=4, student)` — training a tiny stand-in student (one conv
layer with BatchNorm, then the students' shared 512-d projection and classifier) on a batch of
eight 32×32 spectrograms with two samples per identity. Section 8 tests the real students.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from stand_ins import tiny_backbone
from torch import nn

from ikd import losses
from ikd.config import STUDENTS as STUDENT_NAMES
from ikd.config import load_config
from ikd.errors import ConfigError, UserError
from ikd.method_params import PARAMS
from ikd.methods import METHODS, build_method
from ikd.methods.base import Method
from ikd.models.students import STUDENTS, Student

N = 4  # identities
LABELS = [0, 0, 1, 1, 2, 2, 3, 3]  # repeated: every anchor has a positive besides itself
B = len(LABELS)
SIZE = 32

Terms = dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Case:
    """A method as a table row: its overrides, the unweighted terms it logs (besides `loss`), the
    statistics it logs, how its terms combine at `WEIGHTS` (name → expected value), and which
    state it carries."""

    method: str
    overrides: tuple[str, ...]
    terms: frozenset[str]
    combine: Callable[[Terms], Terms]
    stats: frozenset[str] = frozenset()
    composer_mode: str = "none"  # a composer (eq. 6 / CCL), and who learns through it (base.Net)
    identity_wise: bool = False  # eqs. 12–14's per-identity margins and β
    averaged: bool = False  # FAWA on by default: evaluates a weight average of the student


# Non-default weights, so the combination checks see every weight act.
WEIGHTS = (
    "vanilla_kd.alpha=0.5",
    "mkd.alpha=0.5",
    "identitykd.delta1=0.3",
    "identitykd.delta2=2.0",
    "identitykd.gamma=0.7",
    # A margin every sample's KL clears at initialisation (KL ≈ 0.006–0.009 here), so the
    # combination of eq. 14's means below holds.
    "identitykd.margin0=0.002",
    "vanilla_kd.margin0=0.002",
)
IDENTITYKD_TERMS = frozenset({"cs", "st", "sp", "kd", "ce", "kl", "composer_ce"})
M0, BETA0 = 0.002, 6.0  # every identity's m and β before any update (WEIGHTS)


def _eq14(t: Terms) -> torch.Tensor:
    """Eq. 14 from its means, valid while every identity has β0 and every hinge is active."""
    return (t["ce"] + BETA0 * (t["kl"] - M0)) / (1 + BETA0)


def _identitykd(t: Terms) -> Terms:
    return {
        "loss": 0.3 * t["cs"] + 2.0 * t["kd"] + t["composer_ce"],
        "cs": 0.7 * t["st"] + 0.3 * t["sp"],
        "kd": _eq14(t),
        "hinge_active": torch.tensor(1.0),
    }


def _cfkd(t: Terms) -> Terms:
    return {
        "loss": t["student"] + t["composer"],
        "student": t["ce"] + t["student_composed"] + t["student_teacher"] + t["agreement"],
        # CCL's loss_vm and JSD are the same numbers in both objectives (only the gradient differs)
        "composer": t["composer_ce"]
        + t["student_composed"]
        + t["composed_teacher"]
        + t["agreement"],
    }


IDENTITYKD_CASE = Case(
    "identitykd",
    (),
    IDENTITYKD_TERMS,
    _identitykd,
    stats=frozenset({"hinge_active", "fused_acc"}),
    composer_mode="own",
    identity_wise=True,
    averaged=True,
)
CFKD_TERMS = frozenset(
    {
        "student",
        "composer",
        "ce",
        "composer_ce",
        "student_composed",
        "student_teacher",
        "composed_teacher",
        "agreement",
    }
)

# Every method under its own name, plus the two variants the paper's tables use.
CASES: dict[str, Case] = {
    "baseline": Case("baseline", (), frozenset({"ce"}), lambda t: {"loss": t["ce"]}),
    "vanilla_kd": Case(
        "vanilla_kd",
        (),
        frozenset({"ce", "kl"}),
        lambda t: {"loss": t["ce"] + 0.5 * t["kl"]},
    ),
    "vanilla_kd-identity_wise": Case(
        "vanilla_kd",
        ("vanilla_kd.identity_wise=true",),
        frozenset({"ce", "kl"}),
        lambda t: {"loss": _eq14(t), "hinge_active": torch.tensor(1.0)},
        stats=frozenset({"hinge_active"}),
        identity_wise=True,
    ),
    "cfkd": Case(
        "cfkd", (), CFKD_TERMS, _cfkd, stats=frozenset({"fused_acc"}), composer_mode="both"
    ),
    "mkd": Case(
        "mkd", (), frozenset({"ce", "margin"}), lambda t: {"loss": t["ce"] + 0.5 * t["margin"]}
    ),
    "identitykd": dataclasses.replace(IDENTITYKD_CASE),
    "identitykd-kl": dataclasses.replace(IDENTITYKD_CASE, overrides=("identitykd.contrast=kl",)),
}
IDENTITYKD = [c for c, case in CASES.items() if case.method == "identitykd"]
IDENTITY_WISE = [c for c, case in CASES.items() if case.identity_wise]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tiny batches gain nothing from more, and on a loaded machine
    OpenMP's spinning threads make them up to 40× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config_for(case: str, *extra: str):
    row = CASES[case]
    return load_config("smoke", [f"train.method={row.method}", *row.overrides, *extra], warn=False)


def tiny_student(batchnorm: bool = True) -> Student:
    """The stand-in: a tiny backbone and the students' shared 512-d projection and classifier."""
    return Student(*tiny_backbone(batchnorm), N)


def build(case: str, *extra: str, seed: int = 0, batchnorm: bool = True) -> Method:
    torch.manual_seed(seed)
    student = tiny_student(batchnorm)
    return build_method(config_for(case, *extra), num_identities=N, student=student)


def make_batch(seed: int = 1, *, teacher_grad: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    identity = torch.tensor(LABELS, dtype=torch.int64)
    teacher_embedding = F.normalize(torch.randn(B, 512), dim=1)
    teacher_logits = 3 * torch.randn(B, N)
    if teacher_grad:  # leaves that would collect any gradient leaking into the frozen teacher
        teacher_embedding.requires_grad_(True)
        teacher_logits.requires_grad_(True)
    return {
        "spectrogram": torch.randn(B, 3, SIZE, SIZE),
        "identity": identity,
        "teacher_embedding": teacher_embedding,
        "teacher_logits": teacher_logits,
    }


def grads(loss: torch.Tensor, params: list[nn.Parameter]) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))


def is_zero(grad: torch.Tensor | None) -> bool:
    return grad is None or not grad.any()


def accuracy(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@torch.no_grad()
def shift(module: nn.Module, by: float) -> None:
    """Change every float parameter and buffer in place (running_var stays positive)."""
    for value in module.state_dict().values():
        if value.is_floating_point():
            value.add_(by)


# ---------------------------------------------------------------------------------------------
# 1. forward: loss and named terms


def test_the_case_table_covers_the_method_dict():
    assert {case.method for case in CASES.values()} == set(METHODS)
    assert all(name in CASES for name in METHODS)  # every method under its own name
    for name, case in CASES.items():
        assert METHODS[case.method].composer_mode == case.composer_mode, name
        assert (build(name).average is not None) == case.averaged, name


@pytest.mark.parametrize("case", list(CASES))
def test_forward_returns_the_loss_its_named_terms_and_detached_student_logits(case):
    method = build(case).train()
    out = method(make_batch())
    terms = {f"loss/{t}" for t in CASES[case].terms}
    assert out.keys() == {"loss", "logits"} | terms | CASES[case].stats
    for key, value in out.items():
        if key != "logits":
            assert value.ndim == 0, key
            assert torch.isfinite(value), key
    for key in CASES[case].stats:  # fractions of the batch
        assert 0 <= out[key].item() <= 1 and not out[key].requires_grad, key
    assert out["loss"].requires_grad
    assert out["logits"].shape == (B, N)
    assert not out["logits"].requires_grad


@pytest.mark.parametrize("case", list(CASES))
def test_the_loss_combines_the_named_terms_as_each_method_documents(case):
    method = build(case, *WEIGHTS).train()
    out = method(make_batch())
    terms = {key.removeprefix("loss/"): value.detach() for key, value in out.items()}
    assert CASES[case].combine(terms), "every case checks something"
    for name, expected in CASES[case].combine(terms).items():
        torch.testing.assert_close(terms[name], expected, msg=name)


# ---------------------------------------------------------------------------------------------
# 2. gradients reach only trainable(); the teacher is frozen


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_reach_only_trainable_parameters(case):
    method = build(case).train()
    method(make_batch())["loss"].backward()
    trainable = {id(p) for p in method.trainable().parameters()}
    for name, param in method.named_parameters():
        if id(param) not in trainable:
            assert is_zero(param.grad), name
    if CASES[case].averaged:
        assert all(p.grad is None for p in method.average.student.parameters())


@pytest.mark.parametrize("case", list(CASES))
def test_every_trainable_parameter_receives_a_gradient_as_ddp_requires(case):
    method = build(case).train()
    method(make_batch())["loss"].backward()
    unused = [n for n, p in method.trainable().named_parameters() if p.grad is None]
    assert not unused


@pytest.mark.parametrize("case", list(CASES))
def test_the_teacher_tensors_in_the_batch_receive_no_gradient(case):
    batch = make_batch(teacher_grad=True)
    method = build(case).train()
    method(batch)["loss"].backward()
    assert batch["teacher_embedding"].grad is None
    assert batch["teacher_logits"].grad is None


# ---------------------------------------------------------------------------------------------
# 3. the detaches of DESIGN.md §5


@pytest.mark.parametrize("case", IDENTITYKD)
def test_identitykd_composer_learns_only_from_its_own_cross_entropy(case):
    method = build(case).train()
    out = method(make_batch())
    composer = list(method.net.composer.parameters())
    from_total, from_own = grads(out["loss"], composer), grads(out["loss/composer_ce"], composer)
    assert all(g is not None and g.any() for g in from_own)
    for total, own in zip(from_total, from_own, strict=True):
        torch.testing.assert_close(total, own)
    for term in ("cs", "kd"):
        assert all(is_zero(g) for g in grads(out[f"loss/{term}"], composer)), term


@pytest.mark.parametrize("case", [c for c, case in CASES.items() if case.composer_mode != "none"])
def test_the_student_receives_no_gradient_from_the_composer_cross_entropy(case):
    method = build(case).train()
    out = method(make_batch())
    student = list(method.net.student.parameters())
    assert all(is_zero(g) for g in grads(out["loss/composer_ce"], student))
    # … while its own terms do reach it
    assert any(not is_zero(g) for g in grads(out["loss/ce"], student))


@pytest.mark.parametrize("case", IDENTITYKD)
def test_identitykd_student_learns_from_both_contrasts_and_the_kd_term(case):
    method = build(case).train()
    out = method(make_batch())
    backbone = list(method.net.student.backbone.parameters())
    for term in ("st", "sp", "kd"):
        assert any(not is_zero(g) for g in grads(out[f"loss/{term}"], backbone)), term


def cfkd_parts(method: Method) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    return list(method.net.student.parameters()), list(method.net.composer.parameters())


def test_cfkd_student_learns_only_its_objective_and_the_composer_only_its_own():
    method = build("cfkd").train()
    out = method(make_batch())
    student, composer = cfkd_parts(method)
    for params, own, other in ((student, "student", "composer"), (composer, "composer", "student")):
        from_total, from_own = grads(out["loss"], params), grads(out[f"loss/{own}"], params)
        assert all(g is not None and g.any() for g in from_own), own
        for total, mine in zip(from_total, from_own, strict=True):
            torch.testing.assert_close(total, mine, msg=own)
        assert all(is_zero(g) for g in grads(out[f"loss/{other}"], params)), (own, other)


def test_cfkd_student_objective_reaches_the_student_through_the_frozen_composer():
    """CCL feeds the student's feature into the composer undetached: the student's contrast with
    the composed embedding and its agreement term pull on it through the composer too."""
    method = build("cfkd").train()
    batch = make_batch()
    out = method.net(batch["spectrogram"], batch["teacher_embedding"])
    student, _ = cfkd_parts(method)
    labels, t = batch["identity"], method.params.temperature
    v, m = out["student_embedding"], out["student_fused_embedding"]
    both_ways = losses.multi_positive_contrast(v, m, labels, t) + losses.multi_positive_contrast(
        m, v, labels, t
    )
    m_fixed = m.detach()
    target_only = losses.multi_positive_contrast(
        v, m_fixed, labels, t
    ) + losses.multi_positive_contrast(m_fixed, v, labels, t)
    through, around = grads(both_ways, student), grads(target_only, student)
    assert any(not torch.allclose(a, b) for a, b in zip(through, around, strict=True))


EPSILON = 1e-10  # CCL's EPISILON


def ccl_nce(f1: torch.Tensor, f2: torch.Tensor, targets: torch.Tensor, tau: float) -> torch.Tensor:
    """CCL's NCELoss (loss/nce_loss.py) as its code computes it, with its ε."""
    f1, f2 = F.normalize(f1, dim=1), F.normalize(f2, dim=1)
    negative = (targets[:, None] != targets[None, :]).float()
    cos = 1 - 0.5 * (f1[:, None, :] - f2[None, :, :]).pow(2).sum(2)
    p = torch.softmax(cos / tau, dim=1)
    pos_term = (-torch.log(p + EPSILON) * (1 - negative)).sum(1) / (1 - negative).sum(1)
    neg_term = (-torch.log(1 - p + EPSILON) * negative).sum(1) / negative.sum(1)
    return (pos_term + neg_term).mean()


def ccl_jsd(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """CCL's JSDLoss(weight=0.5) (loss/jsd_loss.py) as its code computes it."""
    p, q = torch.softmax(p_logits, dim=1), torch.softmax(q_logits, dim=1)
    both = (p * torch.log(p / q + EPSILON)).sum(1) + (q * torch.log(q / p + EPSILON)).sum(1)
    return both.mean() * 0.5


def test_cfkd_equals_ccls_two_objectives_in_value_and_in_each_optimizers_gradient():
    """CCL's `train_i_epoch`: the student's optimizer steps on ∂total_loss_v, the composer's on
    ∂total_loss_i (`generate_prediction`: fc(t + mlp(cat(norm t, norm v))), v undetached).
    In NCHW (what the reference computes with): channels-last kernels sum in another order, which
    moves near-zero gradient elements by ~1e-6."""
    method = build("cfkd").to(memory_format=torch.contiguous_format).train()
    batch = make_batch()
    labels, tau = batch["identity"], method.params.temperature
    student, composer = cfkd_parts(method)
    out = method(batch)

    torch.manual_seed(0)  # nothing random follows; the same student forward as above
    v, v_logits = method.net.student(batch["spectrogram"])
    t = batch["teacher_embedding"]
    layer = method.net.composer
    m = t + layer.residual(torch.cat([F.normalize(t, dim=1), F.normalize(v, dim=1)], dim=1))
    m_logits = layer.classifier(m)
    loss_vm = ccl_nce(v, m, labels, tau) + ccl_nce(m, v, labels, tau)
    loss_vi = ccl_nce(v, t, labels, tau) + ccl_nce(t, v, labels, tau)
    loss_mi = ccl_nce(m, t, labels, tau) + ccl_nce(t, m, labels, tau)
    jsd = ccl_jsd(v_logits, m_logits)
    total_v = F.cross_entropy(v_logits, labels) + loss_vm + loss_vi + jsd
    total_i = F.cross_entropy(m_logits, labels) + loss_vm + loss_mi + jsd

    close = functools.partial(torch.testing.assert_close, rtol=1e-4, atol=1e-6)
    close(out["loss/student"], total_v)
    close(out["loss/composer"], total_i)
    for ours, theirs in zip(grads(out["loss"], student), grads(total_v, student), strict=True):
        close(ours, theirs)
    for ours, theirs in zip(grads(out["loss"], composer), grads(total_i, composer), strict=True):
        close(ours, theirs)


# ---------------------------------------------------------------------------------------------
# 4. predict and embed use gait only


@pytest.mark.parametrize("case", list(CASES))
def test_predict_and_embed_take_the_spectrogram_alone(case):
    method = build(case).eval()
    spectrogram = make_batch()["spectrogram"]
    with torch.no_grad():
        logits, embedding = method.predict(spectrogram), method.embed(spectrogram)
        student_embedding, student_logits = method.evaluated_student()(spectrogram)
    assert logits.shape == (B, N)
    assert embedding.shape == (B, 512)
    torch.testing.assert_close(logits, student_logits, rtol=0, atol=0)
    torch.testing.assert_close(embedding, student_embedding, rtol=0, atol=0)


@pytest.mark.parametrize("case", [c for c, case in CASES.items() if not case.averaged])
def test_methods_without_weight_averaging_predict_with_the_live_student(case):
    method = build(case).eval()
    spectrogram = make_batch()["spectrogram"]
    with torch.no_grad():
        torch.testing.assert_close(
            method.predict(spectrogram), method.net.student(spectrogram)[1], rtol=0, atol=0
        )


@pytest.mark.parametrize("case", list(CASES))
def test_forward_logits_do_not_depend_on_the_teacher_tensors(case):
    method = build(case).eval()
    batch, other = make_batch(seed=1), make_batch(seed=2)
    other["spectrogram"] = batch["spectrogram"]
    with torch.no_grad():
        logits = method(batch)["logits"]
        torch.testing.assert_close(method(other)["logits"], logits, rtol=0, atol=0)
        torch.testing.assert_close(method.predict(batch["spectrogram"]), logits)


# ---------------------------------------------------------------------------------------------
# 5. per-identity margins and β (eqs. 12–13)


def lambdas(case: str) -> list[str]:
    section = CASES[case].method
    return [
        f"{section}.lambda1=0.3",
        f"{section}.lambda2=0.6",
        f"{section}.margin0=0.05",
        f"{section}.beta0=4",
    ]


def expected_state(acc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return ((0.3 + acc) * 0.05).float(), ((0.6 + acc) * 4.0).float()


@pytest.mark.parametrize("case", IDENTITY_WISE)
def test_end_epoch_sets_margins_and_betas_from_per_identity_training_accuracy(case):
    method = build(case, *lambdas(case))
    state = method.identity_wise
    torch.testing.assert_close(state.margin, torch.full((N,), 0.05))
    torch.testing.assert_close(state.beta, torch.full((N,), 4.0))

    first = accuracy(0.2, 0.9, 0.5, 0.7)
    method.end_epoch(0, first, accuracy(1, 1, 1, 1))
    margin, beta = expected_state(first)
    torch.testing.assert_close(state.margin, margin)
    torch.testing.assert_close(state.beta, beta)
    # a harder identity gets a smaller margin and a weaker KD weight
    assert state.margin[0] < state.margin[2] < state.margin[1]
    assert state.beta[0] < state.beta[2] < state.beta[1]

    second = accuracy(0.6, 0.1, 0.4, float("nan"))  # identity 3 absent from the epoch
    method.end_epoch(1, second, accuracy(1, 1, 1, 1))
    margin2, beta2 = expected_state(second)
    torch.testing.assert_close(state.margin[:3], margin2[:3])
    torch.testing.assert_close(state.beta[:3], beta2[:3])
    torch.testing.assert_close(state.margin[3], margin[3])  # the previous value, kept
    torch.testing.assert_close(state.beta[3], beta[3])


@pytest.mark.parametrize("case", IDENTITY_WISE)
def test_absent_identities_keep_the_base_margin_and_beta_at_the_first_update(case):
    method = build(case, *lambdas(case))
    method.end_epoch(0, accuracy(0.2, 0.9, 0.5, float("nan")), accuracy(1, 1, 1, 1))
    assert method.identity_wise.margin[3].item() == pytest.approx(0.05)
    assert method.identity_wise.beta[3].item() == pytest.approx(4.0)


@pytest.mark.parametrize("case", IDENTITY_WISE)
def test_margins_and_betas_stay_at_their_base_values_during_the_warm_up(case):
    method = build(case, *lambdas(case), f"{CASES[case].method}.warmup_epochs=3")
    acc = accuracy(0.2, 0.9, 0.5, float("nan"))
    for epoch in (0, 1):
        method.end_epoch(epoch, acc, accuracy(1, 1, 1, 1))
        torch.testing.assert_close(method.identity_wise.margin, torch.full((N,), 0.05))
        torch.testing.assert_close(method.identity_wise.beta, torch.full((N,), 4.0))
    method.end_epoch(2, acc, accuracy(1, 1, 1, 1))  # the third epoch ends the warm-up
    margin, beta = expected_state(acc)
    torch.testing.assert_close(method.identity_wise.margin[:3], margin[:3])
    torch.testing.assert_close(method.identity_wise.beta[:3], beta[:3])


@pytest.mark.parametrize("case", IDENTITY_WISE)
def test_the_kd_term_uses_the_updated_margins_and_betas(case):
    method = build(case).eval()
    batch = make_batch()
    with torch.no_grad():
        before = method(batch)["loss"]
        method.end_epoch(0, accuracy(0.0, 0.0, 0.0, 0.0), accuracy(0, 0, 0, 0))
        after = method(batch)["loss"]
    assert not torch.equal(before, after)


@pytest.mark.parametrize(
    "case", [c for c, case in CASES.items() if not case.identity_wise and not case.averaged]
)
def test_methods_without_identity_wise_terms_carry_no_state_across_epochs(case):
    method = build(case)
    before = snapshot(method)
    method.end_epoch(0, accuracy(0.2, 0.9, 0.5, float("nan")), accuracy(1, 1, 1, 1))
    assert_states_equal(snapshot(method), before)


def per_sample_kl(target_logits: torch.Tensor, student_logits: torch.Tensor, t: float):
    """KL(softmax(z_t/T) ‖ softmax(z_s/T)) per sample, without any T² factor."""
    log_target = F.log_softmax(target_logits / t, dim=1)
    return (log_target.exp() * (log_target - F.log_softmax(student_logits / t, dim=1))).sum(1)


def kd_target(method: Method, out: dict[str, torch.Tensor], batch) -> torch.Tensor:
    return out["fused_logits"] if method.net.composer is not None else batch["teacher_logits"]


@pytest.mark.parametrize("case", IDENTITY_WISE)
def test_eq_14_compares_distributions_at_temperature_one_without_a_t_squared_factor(case):
    """CFA's scale (TRADES: T = 1, no T²); `kd_temperature` changes it, with T²."""
    for extra, t in (((), 1.0), ((f"{CASES[case].method}.kd_temperature=3",), 3.0)):
        method = build(case, *extra).train()
        batch = make_batch()
        with torch.no_grad():
            out = method.net(batch["spectrogram"], batch["teacher_embedding"])
            kl = t**2 * per_sample_kl(kd_target(method, out, batch), out["student_logits"], t)
            got = method.losses(out, batch)
        torch.testing.assert_close(got["loss/kl"], kl.mean())


def test_plain_vanilla_kd_keeps_hintons_temperature_four_and_t_squared():
    method = build("vanilla_kd").train()
    batch = make_batch()
    with torch.no_grad():
        out = method(batch)
        student_logits = method.net.student(batch["spectrogram"])[1]
    expected = 16 * per_sample_kl(batch["teacher_logits"], student_logits, 4.0).mean()
    torch.testing.assert_close(out["loss/kl"], expected)


@pytest.mark.parametrize("case", IDENTITY_WISE)
def test_hinge_active_is_the_fraction_of_samples_whose_kl_exceeds_their_margin(case):
    method = build(case).train()
    batch = make_batch()
    with torch.no_grad():
        out = method.net(batch["spectrogram"], batch["teacher_embedding"])
        kl = per_sample_kl(kd_target(method, out, batch), out["student_logits"], 1.0)
        # Margins between the samples' KLs: identity i's margin sits at its first sample's KL.
        margins = kl[::2].clone()
        method.identity_wise.margin.copy_(margins)
        expected = (kl > margins[batch["identity"]]).float().mean()
        got = method.losses(out, batch)["hinge_active"]
    assert 0 < expected < 1, "the margins should split the batch"
    assert got.item() == pytest.approx(expected.item())


@pytest.mark.parametrize("case", IDENTITY_WISE)
def test_the_kd_part_of_eq_14_has_zero_weight_until_the_kd_start_epoch(case):
    section = CASES[case].method
    # m0 below every sample's KL at initialisation (≈ 0.006–0.009), so the hinge is active
    settings = (
        f"{section}.kd_start_epoch=2",
        f"{section}.warmup_epochs=9",
        f"{section}.margin0=1e-3",
    )
    method = build(case, *settings).train()
    batch = make_batch()

    def eq14(model: Method) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(eq. 14's value, the student's CE, the hinge-active fraction)."""
        with torch.no_grad():
            out = model(batch)
        return out.get("loss/kd", out["loss"]), out["loss/ce"], out["hinge_active"]

    for epoch in (0, 1):
        kd, ce, active = eq14(method)
        torch.testing.assert_close(kd, ce, msg=f"epoch {epoch}")  # β = 0: CE at full weight
        assert active == 1, "the hinge is active, yet weighs nothing"
        method.end_epoch(epoch, accuracy(0.5, 0.5, 0.5, 0.5), accuracy(1, 1, 1, 1))
    kd, ce, _ = eq14(method)  # epoch 2: the KD term starts, with β = β0 (warm-up not over)
    kl = method(batch)["loss/kl"].detach()
    torch.testing.assert_close(kd, (ce + BETA0 * (kl - 1e-3)) / (1 + BETA0))
    fresh = build(case, *settings, seed=1)
    fresh.load_state_dict(method.state_dict())  # a resumed run knows which epoch it is in
    assert int(fresh.identity_wise.epochs) == 2
    torch.testing.assert_close(eq14(fresh.train())[0], kd)


# ---------------------------------------------------------------------------------------------
# 5b. ablation switches remove exactly their term


def identitykd_terms(*extra: str) -> tuple[Terms, list[torch.Tensor | None]]:
    """identitykd's terms on the fixed batch, and the student's gradient of its loss."""
    method = build("identitykd", *WEIGHTS, *extra).train()
    out = method(make_batch())
    student = list(method.net.student.parameters())
    return {k: v.detach() for k, v in out.items()}, grads(out["loss"], student)


def test_delta1_zero_removes_exactly_the_composed_contrast():
    full, _ = identitykd_terms()
    ablated, ablated_grads = identitykd_terms("identitykd.delta1=0")
    torch.testing.assert_close(ablated["loss"], full["loss"] - 0.3 * full["loss/cs"])
    method = build("identitykd", *WEIGHTS).train()
    out = method(make_batch())
    without = grads(2.0 * out["loss/kd"], list(method.net.student.parameters()))
    for a, b in zip(ablated_grads, without, strict=True):
        torch.testing.assert_close(a, b)


def test_beta0_zero_removes_the_kd_term_and_keeps_the_students_cross_entropy_at_full_weight():
    for case in IDENTITY_WISE:
        section = CASES[case].method
        method = build(case, *WEIGHTS, f"{section}.beta0=0").train()
        out = method(make_batch())
        kd = out["loss/kd"] if "loss/kd" in out else out["loss"]
        torch.testing.assert_close(kd, out["loss/ce"], msg=case)  # eq. 14 = CE exactly
    full, _ = identitykd_terms()
    ablated, _ = identitykd_terms("identitykd.beta0=0")
    expected = 0.3 * full["loss/cs"] + 2.0 * full["loss/ce"] + full["loss/composer_ce"]
    torch.testing.assert_close(ablated["loss"], expected)


def test_fawa_off_evaluates_the_live_student_after_fair_epochs():
    method = build("identitykd", "identitykd.fawa=false", "identitykd.fawa_threshold=0")
    assert method.average is None
    method.end_epoch(0, accuracy(1, 1, 1, 1), accuracy(1, 1, 1, 1))
    assert method.evaluated_student() is method.net.student
    assert method.epoch_record() == {"fawa/engaged": False, "fawa/epochs": 0}


# ---------------------------------------------------------------------------------------------
# 6. fairness-aware weight averaging (FAWA)


def fawa(method: str) -> list[str]:
    """FAWA switched on for `method` (a setting of every method), decay 0.75, threshold 0.5."""
    return [f"{method}.fawa=true", f"{method}.fawa_decay=0.75", f"{method}.fawa_threshold=0.5"]


@pytest.mark.parametrize("name", list(METHODS))
def test_fawa_evaluates_the_live_student_until_a_fair_epoch_enters_the_average(name):
    method = build(name, *fawa(name))
    live, average = method.net.student, method.average
    train_acc = accuracy(0.5, 0.5, 0.5, 0.5)
    assert method.evaluated_student() is live
    initial = snapshot(average.student)

    method.end_epoch(0, train_acc, accuracy(0.9, 0.49, 0.9, 0.9))  # worst below the threshold
    assert method.evaluated_student() is live
    assert average.epochs.item() == 0
    assert_states_equal(snapshot(average.student), initial)

    nan = float("nan")
    method.end_epoch(1, train_acc, accuracy(nan, nan, nan, nan))  # no val sample: never passes
    assert method.evaluated_student() is live
    method.end_epoch(1, train_acc, accuracy(0.9, 0.3, nan, 0.9))  # the worst present identity
    assert method.evaluated_student() is live

    shift(live, 0.01)
    w1 = snapshot(live)
    method.end_epoch(2, train_acc, accuracy(0.9, 0.5, 0.7, 1.0))  # worst == threshold: enters
    assert method.evaluated_student() is average.student
    assert average.epochs.item() == 1
    assert_states_equal(snapshot(average.student), w1)


@pytest.mark.parametrize("name", list(METHODS))
def test_fawa_averages_qualifying_epochs_with_the_configured_decay(name):
    method = build(name, *fawa(name))
    live, average = method.net.student, method.average
    train_acc, fair, unfair = (
        accuracy(0.5, 0.5, 0.5, 0.5),
        accuracy(1, 1, 1, 1),
        accuracy(1, 0, 1, 1),
    )

    w1 = snapshot(live)
    method.end_epoch(0, train_acc, fair)
    with torch.no_grad():  # a training step, then a weight change the optimizer might make
        live.train()(make_batch()["spectrogram"])
    shift(live, 0.25)
    w2 = snapshot(live)
    assert not torch.equal(w1["projection.weight"], w2["projection.weight"])
    method.end_epoch(1, train_acc, fair)

    averaged = snapshot(average.student)
    assert averaged.keys() == w1.keys()
    for key, value in averaged.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * w1[key] + 0.25 * w2[key], msg=key)
        else:  # e.g. BatchNorm's num_batches_tracked: the latest
            assert torch.equal(value, w2[key]), key
    assert average.epochs.item() == 2

    shift(live, 1.0)
    method.end_epoch(2, train_acc, unfair)  # an unfair epoch leaves the average untouched
    assert_states_equal(snapshot(average.student), averaged)

    spectrogram = make_batch()["spectrogram"]
    method.eval()
    with torch.no_grad():
        torch.testing.assert_close(method.predict(spectrogram), average.student(spectrogram)[1])
        torch.testing.assert_close(method.embed(spectrogram), average.student(spectrogram)[0])
        assert not torch.allclose(method.predict(spectrogram), live(spectrogram)[1])


def test_fawa_is_on_by_default_for_identitykd_only():
    assert [name for name in METHODS if build(name).average is not None] == ["identitykd"]


@pytest.mark.parametrize("name", list(METHODS))
def test_the_epoch_record_says_whether_fawa_engaged_and_over_how_many_epochs(name):
    method = build(name, *fawa(name))
    assert method.epoch_record() == {"fawa/engaged": False, "fawa/epochs": 0}
    method.end_epoch(0, accuracy(1, 1, 1, 1), accuracy(0.1, 1, 1, 1))  # unfair: not kept
    assert method.epoch_record() == {"fawa/engaged": False, "fawa/epochs": 0}
    for epoch in (1, 2):
        method.end_epoch(epoch, accuracy(1, 1, 1, 1), accuracy(1, 1, 1, 1))
    assert method.epoch_record() == {"fawa/engaged": True, "fawa/epochs": 2}


@pytest.mark.parametrize("name", list(METHODS))
def test_the_averaged_student_is_not_trainable(name):
    method = build(name, *fawa(name))
    trainable = {id(p) for p in method.trainable().parameters()}
    for param in method.average.student.parameters():
        assert not param.requires_grad
        assert id(param) not in trainable


# ---------------------------------------------------------------------------------------------
# 7. checkpoints


@pytest.mark.parametrize("averaging", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_the_method_state_survives_a_checkpoint_round_trip(case, averaging):
    section = CASES[case].method
    settings = fawa(section) if averaging else [f"{section}.fawa=false"]
    method = build(case, *settings, seed=0)
    fair = accuracy(0.9, 0.8, 0.7, 0.6)
    method.end_epoch(0, accuracy(0.2, 0.9, 0.5, float("nan")), fair)
    shift(method.net.student, 0.05)
    method.end_epoch(1, accuracy(0.4, 0.1, float("nan"), 0.3), fair)
    shift(method.net.student, 0.05)  # the live student now differs from the average
    state = method.state_dict()

    fresh = build(case, *settings, seed=1)
    batch = make_batch()
    method.eval()
    fresh.eval()
    with torch.no_grad():
        assert not torch.equal(
            fresh.predict(batch["spectrogram"]), method.predict(batch["spectrogram"])
        )
    fresh.load_state_dict(state)

    assert_states_equal(snapshot(fresh), snapshot(method))
    if hasattr(method, "identity_wise"):
        assert torch.equal(fresh.identity_wise.margin, method.identity_wise.margin)
        assert torch.equal(fresh.identity_wise.beta, method.identity_wise.beta)
    if averaging:
        assert fresh.average.epochs.item() == 2
        assert fresh.evaluated_student() is fresh.average.student
    else:
        assert fresh.average is None and fresh.evaluated_student() is fresh.net.student
    with torch.no_grad():
        out, fresh_out = method(batch), fresh(batch)
        assert out.keys() == fresh_out.keys()
        for key in out:
            torch.testing.assert_close(fresh_out[key], out[key], rtol=0, atol=0, msg=key)
        for fn in ("predict", "embed"):
            expected = getattr(method, fn)(batch["spectrogram"])
            torch.testing.assert_close(
                getattr(fresh, fn)(batch["spectrogram"]), expected, rtol=0, atol=0
            )


# ---------------------------------------------------------------------------------------------
# 8. students


@functools.cache
def student(name: str) -> Student:
    """One student of each kind per session (vgg16 alone takes seconds to build)."""
    torch.manual_seed(0)
    return Student.from_name(name, N)


@pytest.mark.parametrize("name", list(STUDENTS))
def test_every_student_returns_a_512_d_embedding_and_identity_logits(name):
    net = student(name)
    spectrogram = torch.randn(2, 3, SIZE, SIZE)
    for mode in (True, False):
        net.train(mode)
        with torch.no_grad():
            embedding, logits = net(spectrogram)
        assert embedding.shape == (2, 512)
        assert logits.shape == (2, N)
        assert torch.isfinite(embedding).all() and torch.isfinite(logits).all()
    assert net.projection.out_features == 512
    assert (net.classifier.in_features, net.classifier.out_features) == (512, N)


def test_vgg16_student_has_no_4096_d_head():
    net = student("vgg16")
    for module in net.modules():
        if isinstance(module, nn.Linear):
            assert 4096 not in (module.in_features, module.out_features)
    assert net.projection.in_features == 512  # its globally pooled conv features


def test_the_config_names_exactly_the_students_that_can_be_built():
    assert tuple(STUDENTS) == STUDENT_NAMES


@pytest.mark.parametrize("name", list(STUDENTS))
def test_the_configured_student_is_the_one_the_method_trains(name):
    config = load_config("smoke", ["train.method=identitykd", f"train.student={name}"], warn=False)
    method = build_method(config, num_identities=N)
    assert repr(method.net.student) == repr(student(name))
    assert repr(method.evaluated_student()) == repr(student(name))


def test_a_student_of_ones_own_is_a_builder_named_module_colon_function():
    """`train.student=package.module:function` trains the backbone that function builds (here
    the tests' stand-in); a name that is neither Table 4's nor such a path is a config error, and
    a builder that cannot be imported, or returns no (module, width), one line."""
    config = load_config("smoke", ["train.student=stand_ins:tiny_backbone"], warn=False)
    method = build_method(config, num_identities=N)
    assert repr(method.net.student.backbone) == repr(tiny_backbone()[0])
    with pytest.raises(ConfigError, match=r"package\.module:function"):
        load_config("smoke", ["train.student=stand_ins.tiny_backbone"], warn=False)
    for name, why in (
        ("stand_ins:nothing", "has no attribute 'nothing'"),
        ("no_such_module:build", "No module named 'no_such_module'"),
        ("torch:get_default_dtype", "returned dtype, not"),
        ("json:loads", "failed: TypeError: .*missing"),
    ):
        with pytest.raises(UserError, match=f"^train.student={name}: .*{why}"):
            Student.from_name(name, N)


def test_a_student_of_ones_own_that_cannot_be_imported_stops_the_cli_before_anything_starts(
    capsys,
):
    from ikd.cli import main

    for command in ("train", "study"):
        args = [command, "studies/table3_methods.py"] if command == "study" else [command]
        assert main([*args, "--preset", "smoke", "train.student=stand_ins:nothing"]) == 2
        err = capsys.readouterr().err
        assert "train.student=stand_ins:nothing: module 'stand_ins' has no attribute" in err, err
        assert err.count("\n") == 1, err


# ---------------------------------------------------------------------------------------------
# 9. configuration


@pytest.mark.parametrize(
    ("override", "nearest"),
    [
        ("train.method=identitykdd", "identitykd"),
        ("train.method=vanilla", "vanilla_kd"),
        ("train.student=resnet", "resnet18"),
        ("train.student=vgg", "vgg16"),
    ],
)
def test_an_unknown_method_or_student_raises_naming_the_nearest_valid_name(override, nearest):
    with pytest.raises(ConfigError, match=f"did you mean '{nearest}'"):
        load_config("smoke", [override], warn=False)


def test_the_config_validates_method_names_against_the_method_dict():
    assert list(PARAMS) == list(METHODS)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_takes_its_params_from_its_own_config_section(name):
    cls = METHODS[name]
    assert cls.Params is PARAMS[name]
    assert dataclasses.is_dataclass(cls.Params)
    assert cls.Params.__dataclass_params__.frozen
    assert isinstance(cls.Params.version, int) and cls.Params.version >= 1
    config = load_config("smoke", [f"train.method={name}"], warn=False)
    method = build_method(config, num_identities=N, student=tiny_student())
    assert method.params == config.method_params()
    if dataclasses.fields(cls.Params):  # a method with settings: its section, by its name
        assert method.params is getattr(config, name)


def test_build_method_passes_overridden_symbols_to_the_method():
    method = build(
        "identitykd", "identitykd.tau=0.07", "identitykd.gamma=0.6", "identitykd.contrast=kl"
    )
    assert (method.params.tau, method.params.gamma, method.params.contrast) == (0.07, 0.6, "kl")
    assert method.num_identities == N


def test_build_method_trains_the_student_it_is_handed():
    stand_in = tiny_student()
    method = build_method(config_for("cfkd"), num_identities=N, student=stand_in)
    assert method.net.student is stand_in
