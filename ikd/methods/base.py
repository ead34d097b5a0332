"""What every method shares: the one contract, the trainable network, and the per-identity state.

The contract (DESIGN.md §5, STYLE.md "For ikd" 3): a frozen `Params` of the paper's symbols;
`trainable()` is the one module that learns (student + composer + heads), the only thing the
optimizer and DDP see; `forward(batch)` returns `loss`, unweighted named `loss/<term>`s and
batch statistics (`fused_acc`, `hinge_active`: the loop logs every one as `train/<name>`);
`predict`/`embed` use gait only; `end_epoch` carries state across epochs in buffers that
`state_dict()` (hence every checkpoint) holds. The teacher is not here at all: its outputs come
from the dataset (computed once, frozen) as tensors in the batch.

A batch is a dict of tensors: `spectrogram` (B, 3, H, H), `identity` (B,), `teacher_embedding`
(B, 512) and `teacher_logits` (B, N) of the face view chosen for this epoch. Under DDP it is this
rank's share of the global batch; contrastive terms take their targets from the whole global
batch (`global_batch`), so a method's loss does not depend on `train.workers` (DESIGN.md §5).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed import _functional_collectives as collectives

from ikd.method_params import IdentityWiseParams, WeightAveragingParams
from ikd.models import EMBEDDING_DIM
from ikd.models.students import Student


def global_batch(tensor: torch.Tensor) -> torch.Tensor:
    """Every DDP rank's `tensor` (B, …) concatenated in rank order (W·B, …); itself without a
    process group. Differentiable: the gradient that every rank's loss puts on this rank's rows
    flows back to them, summed (torch.distributed.nn's all_gather semantics; this is its
    non-deprecated successor). Ranks must pass equal shapes (the loop gives each the same batch
    size). With DDP's gradient averaging, training on W ranks then follows the gradient of the
    mean over ranks of their losses — the 1-rank loss of the whole batch."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    # A private module: torch.distributed.nn.functional.all_gather, the public one, is deprecated
    # in torch 2.14 in its favour. tests/test_global_batch.py checks the values and gradients.
    gathered = collectives.all_gather_single_autograd(tensor.contiguous(), 0, dist.group.WORLD)
    return collectives.wait_tensor(gathered)


ComposerMode = Literal["none", "own", "both"]
COMPOSER_MODES: tuple[ComposerMode, ...] = ("none", "own", "both")


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The fraction of rows whose argmax is the label, for logging (no gradient)."""
    return (logits.detach().argmax(dim=1) == labels).to(torch.float32).mean()


class Composer(nn.Module):
    """F_p (eq. 6): p = p^t + f_st(p^t, p^s), f_st = linear(concat(normalise(p^t), normalise(p^s))),
    and the fused classifier f_p. One linear layer, no activation, added to the un-normalised
    teacher embedding — CCL's composer (Chen et al. CVPR 2021), which eq. 6 follows."""

    def __init__(self, num_identities: int) -> None:
        super().__init__()
        self.residual = nn.Linear(2 * EMBEDDING_DIM, EMBEDDING_DIM)
        self.classifier = nn.Linear(EMBEDDING_DIM, num_identities)

    def forward(
        self, teacher_embedding: torch.Tensor, student_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 512) × (B, 512) → fused embedding p (B, 512), fused logits f_p(p) (B, N)."""
        both = torch.cat(
            [F.normalize(teacher_embedding, dim=1), F.normalize(student_embedding, dim=1)], dim=1
        )
        fused = teacher_embedding + self.residual(both)
        return fused, self.classifier(fused)


class Net(nn.Module):
    """Everything that learns, with one forward (so DDP sees every use of every parameter).

    `mode`: "none"; "own" — the composer sees the student's embedding detached and learns
    from its own objective (`fused_*`: IdentityKD, DESIGN.md §5); "both" — as "own", plus a
    second pass with the composer's parameters frozen on the live embedding (`student_fused_*`),
    so the student's objective reaches the student through the composer but moves only the
    student: CCL's two objectives and two optimizers, emulated by stop-gradients in one graph.
    The teacher is frozen either way.
    """

    def __init__(self, student: Student, num_identities: int, mode: ComposerMode) -> None:
        super().__init__()
        if mode not in COMPOSER_MODES:
            raise ValueError(f"composer mode {mode!r}; choose from {list(COMPOSER_MODES)}")
        self.student = student
        self.composer = Composer(num_identities) if mode != "none" else None
        self.through_composer = mode == "both"

    def forward(
        self, spectrogram: torch.Tensor, teacher_embedding: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        embedding, logits = self.student(spectrogram)
        out = {"student_embedding": embedding, "student_logits": logits}
        if self.composer is not None:
            teacher_embedding = teacher_embedding.detach()
            out["fused_embedding"], out["fused_logits"] = self.composer(
                teacher_embedding, embedding.detach()
            )
        if self.through_composer:
            frozen = {name: p.detach() for name, p in self.composer.named_parameters()}
            out["student_fused_embedding"], out["student_fused_logits"] = (
                torch.func.functional_call(self.composer, frozen, (teacher_embedding, embedding))
            )
        return out


class IdentityWise(nn.Module):
    """Per-identity margin m and regularisation β (eqs. 12–13; CFA's class-wise calibration).

    After each epoch from the end of the warm-up on, the epoch's training accuracy A_i of
    identity i (summed over DDP ranks by the loop) sets m_i = (λ1 + A_i)·m0, β_i = (λ2 + A_i)·β0:
    a harder identity gets a smaller margin and a weaker KD weight. Before, m = m0 and β = β0. An
    identity absent from the epoch keeps its values. Before epoch `kd_start_epoch` (counted in
    the `epochs` buffer, so a resumed run knows it) `weights()` gives β = 0: eq. 14 is the
    student's CE alone.
    """

    def __init__(
        self,
        num_identities: int,
        *,
        lambda1: float,
        lambda2: float,
        margin0: float,
        beta0: float,
        warmup_epochs: int,
        kd_start_epoch: int,
    ) -> None:
        super().__init__()
        self.lambda1, self.lambda2 = lambda1, lambda2
        self.margin0, self.beta0 = margin0, beta0
        self.warmup_epochs, self.kd_start_epoch = warmup_epochs, kd_start_epoch
        self.register_buffer("margin", torch.full((num_identities,), float(margin0)))
        self.register_buffer("beta", torch.full((num_identities,), float(beta0)))
        self.register_buffer("epochs", torch.zeros((), dtype=torch.long))  # epochs ended

    @classmethod
    def from_params(cls, num_identities: int, params: IdentityWiseParams) -> IdentityWise:
        """From a method's `Params` holding λ1, λ2, m0, β0 and the warm-up."""
        return cls(
            num_identities,
            lambda1=params.lambda1,
            lambda2=params.lambda2,
            margin0=params.margin0,
            beta0=params.beta0,
            warmup_epochs=params.warmup_epochs,
            kd_start_epoch=params.kd_start_epoch,
        )

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, β) for this epoch's eq. 14: β is 0 before `kd_start_epoch`."""
        started = self.epochs >= self.kd_start_epoch  # a tensor: no device sync per step
        return self.margin, torch.where(started, self.beta, torch.zeros_like(self.beta))

    def update(self, epoch: int, accuracy: torch.Tensor) -> None:
        """`epoch` just ended (0-based) with per-identity training accuracy (N,) (NaN: absent)."""
        self.epochs.fill_(epoch + 1)
        if epoch + 1 < self.warmup_epochs:
            return
        seen = ~torch.isnan(accuracy)
        accuracy = accuracy.to(self.margin)
        self.margin[seen] = (self.lambda1 + accuracy[seen]) * self.margin0
        self.beta[seen] = (self.lambda2 + accuracy[seen]) * self.beta0


class Method(nn.Module):
    """Base of the five methods. Subclasses set `Params`, `composer_mode` and `losses`; the
    version of a method's code is its `Params.version` (ikd/method_params.py).

    Every method's section has the weight-averaging switch (`fawa`, CFA's FAWA): when on, the
    method keeps `average` and evaluates (and deploys) it once an epoch has entered it.

    Args:
        params: the method's section of the config (`Params`, ikd/method_params.py).
        student: the gait network it trains (`Student.from_name` for Table 4's; tests hand in a
            tiny stand-in), returning (embedding (B, 512), logits (B, N)).
    """

    Params: ClassVar[type]
    composer_mode: ClassVar[ComposerMode] = "none"  # a composer, and who learns through it (`Net`)

    def __init__(
        self, params: WeightAveragingParams, num_identities: int, student: Student
    ) -> None:
        super().__init__()
        self.params = params
        self.num_identities = num_identities
        self.net = Net(student, num_identities, self.composer_mode)
        self._set_runner(self.net)
        self.average = (
            WeightAverage(self.net.student, params.fawa_decay, params.fawa_threshold)
            if params.fawa
            else None
        )

    def _set_runner(self, runner: nn.Module) -> None:
        # Not a registered submodule: the DDP wrapper must not add its parameters twice to
        # state_dict() (nor `net` appear twice).
        object.__setattr__(self, "_runner", runner)

    def trainable(self) -> nn.Module:
        return self.net

    def distribute(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Run training forwards through `wrap(trainable())` (e.g. Ray Train's `prepare_model`)."""
        self._set_runner(wrap(self.net))

    def train(self, mode: bool = True) -> Method:
        super().train(mode)
        self._runner.train(mode)
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The training objective: `loss`, the named `loss/<term>`s, the batch statistics, and
        `logits`, the student's (detached) for the per-identity training accuracy."""
        out = self._runner(batch["spectrogram"], batch["teacher_embedding"])
        return {**self.losses(out, batch), "logits": out["student_logits"].detach()}

    def losses(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """`loss` (what is minimised), the unweighted `loss/<term>`s, and batch statistics
        (scalar means such as `fused_acc`), all logged per epoch as `train/<name>`."""
        raise NotImplementedError

    def evaluated_student(self) -> Student:
        """The student that evaluation and deployment use (gait only): the weight average once an
        epoch has entered it, else the live student."""
        if self.average is not None and self.average.epochs > 0:
            return self.average.student
        return self.net.student

    def predict(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, H) → identity logits (B, N) from gait alone."""
        return self.evaluated_student()(spectrogram)[1]

    def embed(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, H) → gait embedding p^s (B, 512)."""
        return self.evaluated_student()(spectrogram)[0]

    def end_epoch(
        self, epoch: int, train_accuracy: torch.Tensor, val_accuracy: torch.Tensor
    ) -> None:
        """Carry state into the next epoch from this epoch's per-identity accuracies (N,)
        (training: of the student on its training batches; val: of `net.student`; NaN where an
        identity had no sample), both already reduced across ranks. Here: the weight average;
        methods with more state extend it."""
        if self.average is not None:
            present = val_accuracy[~torch.isnan(val_accuracy)]  # identities with val samples
            worst = float(present.min()) if len(present) else math.nan
            self.average.update(self.net.student, worst)

    def epoch_record(self) -> dict[str, Any]:
        """What the epoch's metrics record of the method's state: whether the evaluated model is
        the weight average (`fawa/engaged`) and over how many epochs (`fawa/epochs`)."""
        epochs = int(self.average.epochs) if self.average is not None else 0
        return {"fawa/engaged": epochs > 0, "fawa/epochs": epochs}


class WeightAverage(nn.Module):
    """CFA's fairness-aware weight averaging (FAWA; Wei et al. CVPR 2023, §4.3): an exponential
    average of the student over the epochs whose worst-identity validation accuracy reaches a
    threshold (CFA: robust accuracy; ours: clean), so unfair epochs never enter it."""

    def __init__(self, student: Student, decay: float, threshold: float) -> None:
        super().__init__()
        self.decay, self.threshold = decay, threshold
        self.student = copy.deepcopy(student).requires_grad_(False)
        self.register_buffer("epochs", torch.zeros((), dtype=torch.long))  # epochs averaged

    @torch.no_grad()
    def update(self, student: Student, worst_accuracy: float) -> None:
        if not worst_accuracy >= self.threshold:  # NaN never passes
            return
        averaged = self.student.state_dict()
        for name, value in student.state_dict().items():
            if self.epochs == 0 or not value.is_floating_point():
                averaged[name].copy_(value)
            else:
                averaged[name].mul_(self.decay).add_(value, alpha=1 - self.decay)
        self.epochs += 1
