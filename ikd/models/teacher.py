"""The frozen face teacher: facenet-pytorch's InceptionResnetV1 plus a linear identity classifier.

The backbone is VGGFace2-pretrained when its weights lie in the torch hub cache
(``$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt``; never downloaded here). Otherwise it is
trained on the **training split's** faces (`train_backbone`, ``ikd teacher train``) and saved with
the dataset. Either way the teacher's logits come from a linear classifier on the frozen,
L2-normalised 512-d embedding, fitted on the training faces with weight decay and early stopping
on val, so its logits stay soft enough for vanilla KD (DESIGN.md §3). Which teacher was used goes
into the dataset manifest and every run's provenance (`TeacherInfo`).

The teacher is frozen, so its outputs for K views of every face are computed once by the data
pipeline (`TeacherViews`) and stored; training never runs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch import InceptionResnetV1
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from ikd.config import Config, TeacherConfig
from ikd.data import schema
from ikd.errors import UserError

log = logging.getLogger(__name__)

VGGFACE2 = "20180402-114759-vggface2.pt"
BACKBONE, CLASSIFIER, INFO = "backbone.pt", "classifier.pt", "teacher.json"


@dataclass(frozen=True)
class TeacherInfo:
    """Provenance of a teacher: written to teacher.json, the manifest and every run."""

    source: str  # "pretrained (VGGFace2)" or "trained on this dataset's training faces"
    backbone_path: str
    backbone_sha256: str
    classifier_sha256: str
    num_identities: int
    face_accuracy_val: float  # the linear classifier on val faces (unaugmented view)
    face_accuracy_train: float
    train_seconds: float


def pretrained_path() -> Path:
    """Where facenet-pytorch keeps the VGGFace2 weights (its own `get_torch_home` rule)."""
    home = os.path.expanduser(
        os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    )
    return Path(home) / "checkpoints" / VGGFACE2


def standardize(faces: torch.Tensor) -> torch.Tensor:
    """uint8 / [0, 255] RGB (B, 3, S, S) → FaceNet's input, (x − 127.5) / 128."""
    return (faces.float() - 127.5) / 128.0


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients, for good."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def load_backbone(path: str | os.PathLike) -> InceptionResnetV1:
    """An InceptionResnetV1 embedding network (classify=False) from a state dict, frozen.

    VGGFace2's checkpoint carries its 8631-class `logits` layer; it is not ours and is dropped.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    model = InceptionResnetV1(pretrained=None, classify=False)
    model.load_state_dict(state)
    return freeze(model)


def augment(faces: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The paper's random face augmentation: shift-and-crop (±8 %), horizontal flip, brightness
    and contrast jitter. (B, 3, S, S) standardized → same."""
    batch, _, size, _ = faces.shape
    pad = max(1, int(0.08 * size))
    padded = F.pad(faces, (pad, pad, pad, pad), mode="replicate").permute(
        0, 2, 3, 1
    )  # (B, S', S', 3)
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(size)  # (B, S)
    cols = offsets[:, 1, None] + torch.arange(size)
    cropped = padded[
        torch.arange(batch)[:, None, None], rows[:, :, None], cols[:, None, :]
    ].permute(0, 3, 1, 2)
    flip = torch.rand(batch, generator=generator) < 0.5
    cropped[flip] = cropped[flip].flip(-1)
    contrast = 1 + 0.3 * (torch.rand(batch, 1, 1, 1, generator=generator) - 0.5)
    brightness = 0.3 * (torch.rand(batch, 1, 1, 1, generator=generator) - 0.5)
    return cropped * contrast + brightness


def train_backbone(
    faces: np.ndarray,
    labels: np.ndarray,
    num_identities: int,
    teacher: TeacherConfig,
    seed: int,
    *,
    progress: bool = True,
) -> InceptionResnetV1:
    """Train InceptionResnetV1 from scratch to classify the training faces; return it frozen,
    as an embedding network (classify=False).

    Args:
        faces: (N, 3, S, S) uint8 training faces (never val or test).
        labels: (N,) identities in [0, num_identities).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = InceptionResnetV1(pretrained=None, classify=True, num_classes=num_identities)
    optimizer = torch.optim.Adam(model.parameters(), lr=teacher.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=teacher.epochs)
    images, targets = torch.from_numpy(faces), torch.from_numpy(labels.astype(np.int64))
    model.train()
    for epoch in range(teacher.epochs):
        order = torch.randperm(len(images), generator=generator)
        steps = range(0, len(order), teacher.batch_size)
        correct = 0
        bar = tqdm(
            steps,
            desc=f"teacher epoch {epoch + 1}/{teacher.epochs}",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        for start in bar:
            index = order[start : start + teacher.batch_size]
            if len(index) < 2:  # BatchNorm needs two samples
                continue
            logits = model(augment(standardize(images[index]), generator))
            loss = F.cross_entropy(logits, targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == targets[index]).sum())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        scheduler.step()
        log.info(
            "teacher epoch %d/%d: training accuracy %.3f",
            epoch + 1,
            teacher.epochs,
            correct / len(images),
        )
    model.classify = False
    del model.logits
    return freeze(model)


@torch.no_grad()
def embed(backbone: nn.Module, faces: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """(B, 3, S, S) standardized faces → (B, 512) L2-normalised embeddings."""
    return torch.cat(
        [backbone(faces[i : i + batch_size]) for i in range(0, len(faces), batch_size)]
    )


def fit_classifier(
    train_embeddings: torch.Tensor,
    train_labels: torch.Tensor,
    val_embeddings: torch.Tensor,
    val_labels: torch.Tensor,
    num_identities: int,
    teacher: TeacherConfig,
    seed: int,
) -> tuple[nn.Linear, float, float]:
    """Fit the linear identity classifier on frozen embeddings; keep the best val-loss weights.

    Returns:
        The classifier (frozen) and its accuracy on train and on val.
    """
    torch.manual_seed(seed)
    classifier = nn.Linear(schema.EMBEDDING_DIM, num_identities)
    optimizer = torch.optim.Adam(
        classifier.parameters(),
        lr=teacher.classifier_lr,
        weight_decay=teacher.classifier_weight_decay,
    )
    best, best_state, patience = float("inf"), None, 0
    for _ in range(teacher.classifier_epochs):
        loss = F.cross_entropy(classifier(train_embeddings), train_labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            val_loss = F.cross_entropy(classifier(val_embeddings), val_labels).item()
        if val_loss < best - 1e-4:
            best, best_state, patience = (
                val_loss,
                {k: v.clone() for k, v in classifier.state_dict().items()},
                0,
            )
        else:
            patience += 1
            if patience >= teacher.classifier_patience:
                break
    if best_state is None:
        raise UserError(
            "the teacher's classifier never reached a finite val loss (NaN embeddings?)"
        )
    classifier.load_state_dict(best_state)
    freeze(classifier)
    with torch.no_grad():
        train_accuracy = (
            (classifier(train_embeddings).argmax(1) == train_labels).float().mean().item()
        )
        val_accuracy = (classifier(val_embeddings).argmax(1) == val_labels).float().mean().item()
    return classifier, train_accuracy, val_accuracy


def prepare_teacher(
    folder: str | os.PathLike,
    faces: dict[str, tuple[np.ndarray, np.ndarray]],
    num_identities: int,
    config: Config,
    *,
    progress: bool = True,
) -> TeacherInfo:
    """Resolve the backbone (pretrained, or train one on the training faces), fit the classifier,
    save both under `folder` and return the provenance.

    Args:
        faces: split name → ((N, 3, S, S) uint8 faces, (N,) identities); "train" and "val".

    Raises:
        UserError: `teacher.source=pretrained` but the VGGFace2 weights are absent.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    teacher, seed = config.teacher, config.teacher.seed
    weights = pretrained_path()
    if teacher.source == "pretrained" and not weights.exists():
        raise UserError(
            f"teacher.source=pretrained but {weights} does not exist (it is never downloaded here)"
        )
    if teacher.source != "trained" and weights.exists():
        backbone_path, source = weights, "pretrained (VGGFace2)"
        backbone = load_backbone(weights)
        log.info("teacher: VGGFace2 backbone from %s", weights)
    else:
        log.warning(
            "teacher: %s; training InceptionResnetV1 on the %d training faces (%d epochs)",
            "teacher.source=trained"
            if teacher.source == "trained"
            else f"no VGGFace2 weights at {weights}",
            len(faces["train"][0]),
            teacher.epochs,
        )
        backbone = train_backbone(*faces["train"], num_identities, teacher, seed, progress=progress)
        backbone_path, source = Path(BACKBONE), "trained on this dataset's training faces"
        torch.save(backbone.state_dict(), folder / BACKBONE)
    train_embeddings = embed(backbone, standardize(torch.from_numpy(faces["train"][0])))
    val_embeddings = embed(backbone, standardize(torch.from_numpy(faces["val"][0])))
    classifier, train_accuracy, val_accuracy = fit_classifier(
        train_embeddings,
        torch.from_numpy(faces["train"][1].astype(np.int64)),
        val_embeddings,
        torch.from_numpy(faces["val"][1].astype(np.int64)),
        num_identities,
        teacher,
        seed,
    )
    torch.save(classifier.state_dict(), folder / CLASSIFIER)
    info = TeacherInfo(
        source=source,
        backbone_path=str(backbone_path),
        backbone_sha256=_sha256(folder / backbone_path),
        classifier_sha256=_sha256(folder / CLASSIFIER),
        num_identities=num_identities,
        face_accuracy_val=round(val_accuracy, 4),
        face_accuracy_train=round(train_accuracy, 4),
        train_seconds=round(time.perf_counter() - start, 1),
    )
    (folder / INFO).write_text(json.dumps(asdict(info), indent=2))
    log.info("teacher: face accuracy %.3f on val (%.3f train)", val_accuracy, train_accuracy)
    return info


def read_teacher_info(folder: str | os.PathLike) -> TeacherInfo | None:
    path = Path(folder) / INFO
    return TeacherInfo(**json.loads(path.read_text())) if path.exists() else None


class Teacher(nn.Module):
    """Frozen backbone + classifier: faces → (embedding, logits)."""

    def __init__(self, backbone: nn.Module, classifier: nn.Linear) -> None:
        super().__init__()
        self.backbone, self.classifier = freeze(backbone), freeze(classifier)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Teacher:
        info = read_teacher_info(folder)
        if info is None:
            raise UserError(
                f"{folder}: no teacher here (run `ikd teacher train` or `ikd data build`)"
            )
        classifier = nn.Linear(schema.EMBEDDING_DIM, info.num_identities)
        classifier.load_state_dict(
            torch.load(Path(folder) / CLASSIFIER, map_location="cpu", weights_only=True)
        )
        path = Path(folder) / info.backbone_path  # relative when trained here: the dataset can move
        if _sha256(path) != info.backbone_sha256:
            raise UserError(f"{path}: its hash differs from the one {folder}/{INFO} recorded")
        return cls(load_backbone(path), classifier)

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # frozen: always eval

    @torch.no_grad()
    def forward(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) standardized faces → (B, 512) embeddings, (B, N) logits."""
        embedding = self.backbone(faces)
        return embedding, self.classifier(embedding)


class TeacherViews:
    """Ray Data callable class: the teacher's outputs for K views of each face, loaded once.

    View 0 is the face as cropped; views 1 … K−1 are augmented with a generator seeded by the
    row's key and the view, so a face's views do not depend on its batch. The forward pass is
    batched, so outputs agree across batchings (other CPU counts) to float rounding (~1e-7), not
    bit for bit. Faces are not passed on: they stay in pairs/.
    """

    def __init__(self, teacher_folder: str | os.PathLike, shapes: schema.Shapes) -> None:
        torch.set_num_threads(1)
        self.teacher = Teacher.load(teacher_folder)
        self.shapes = shapes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        faces = standardize(torch.from_numpy(self.shapes.decode_face(list(batch[schema.FACE]))))
        views = [faces]
        for view in range(1, self.shapes.views):
            views.append(
                torch.cat(
                    [
                        augment(face[None], torch.Generator().manual_seed(int(key) * 1024 + view))
                        for face, key in zip(faces, batch[schema.KEY], strict=True)
                    ]
                )
            )
        embedding, logits = self.teacher(torch.cat(views))  # (K·B, 512), (K·B, N)
        count = len(faces)
        embedding = embedding.reshape(self.shapes.views, count, -1).transpose(0, 1).numpy()
        logits = logits.reshape(self.shapes.views, count, -1).transpose(0, 1).numpy()
        return {
            **{name: values for name, values in batch.items() if name != schema.FACE},
            schema.TEACHER_EMBEDDING: schema.encode(embedding),
            schema.TEACHER_LOGITS: schema.encode(logits),
        }


def _sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
