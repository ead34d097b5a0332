"""Fitting the frozen face teacher, and its provenance record (DESIGN.md §3).

Without cached VGGFace2 weights the InceptionResnetV1 backbone is trained on the **training
split's** faces (`train_backbone`, ``ikd teacher train``) and saved with the dataset. Either way
the teacher's logits come from a linear classifier on the frozen embedding, fitted on the training
faces with weight decay and early stopping on val, so its logits stay soft enough for vanilla KD.
Which teacher was used goes into the dataset manifest and every run's provenance (`TeacherInfo`).
The model itself is ikd/models/teacher.py.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

if TYPE_CHECKING:  # imported where a network is built (ikd.models.teacher says why)
    from facenet_pytorch import InceptionResnetV1

from ikd.config import Config, TeacherConfig
from ikd.errors import UserError
from ikd.models import EMBEDDING_DIM
from ikd.models.teacher import (
    Teacher,
    augment,
    embed,
    freeze,
    load_backbone,
    pretrained_path,
    standardize,
)
from ikd.models.weights import read_torch, write_torch
from ikd.storage import (
    Location,
    location,
    read_json,
    sha256_file,
    write_json,
)

log = logging.getLogger(__name__)

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
    from facenet_pytorch import InceptionResnetV1

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
    classifier = nn.Linear(EMBEDDING_DIM, num_identities)
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
    folder: str | os.PathLike | Location,
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
    folder = location(folder)
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
        backbone_path, source = BACKBONE, "trained on this dataset's training faces"
        write_torch(folder / BACKBONE, backbone.state_dict())
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
    write_torch(folder / CLASSIFIER, classifier.state_dict())
    info = TeacherInfo(
        source=source,
        backbone_path=str(backbone_path),
        backbone_sha256=sha256_file(_backbone(folder, str(backbone_path))),
        classifier_sha256=sha256_file(folder / CLASSIFIER),
        num_identities=num_identities,
        face_accuracy_val=round(val_accuracy, 4),
        face_accuracy_train=round(train_accuracy, 4),
        train_seconds=round(time.perf_counter() - start, 1),
    )
    write_json(folder / INFO, asdict(info))
    log.info("teacher: face accuracy %.3f on val (%.3f train)", val_accuracy, train_accuracy)
    return info


def _backbone(folder: Location, path: str) -> Location:
    """The backbone file: in the teacher folder when trained here (the dataset can move), else
    the local pretrained weights' absolute path."""
    return location(path) if Path(path).is_absolute() else folder / path


def read_teacher_info(folder: str | os.PathLike | Location) -> TeacherInfo | None:
    info = read_json(location(folder) / INFO)
    return TeacherInfo(**info) if info is not None else None


def load_teacher(folder: str | os.PathLike | Location) -> Teacher:
    """The frozen teacher saved in `folder` by `prepare_teacher`, its backbone checked against
    the recorded hash."""
    folder = location(folder)
    info = read_teacher_info(folder)
    if info is None:
        raise UserError(f"{folder}: no teacher here (run `ikd teacher train` or `ikd data build`)")
    classifier = nn.Linear(EMBEDDING_DIM, info.num_identities)
    classifier.load_state_dict(read_torch(folder / CLASSIFIER))
    path = _backbone(folder, info.backbone_path)
    if sha256_file(path) != info.backbone_sha256:
        raise UserError(f"{path}: its hash differs from the one {folder}/{INFO} recorded")
    return Teacher(load_backbone(read_torch(path)), classifier)
