"""Open-set scores: how sure a deployment may be that a capture is one of the people it knows.

A capture is a few gait windows; the student gives each window identity logits and a gait
embedding (p_s, 512-d, eq. 4 — aligned to the face space in IdentityKD). Each score maps a
capture to (the identity it points at, a number that is higher the more the capture looks like
someone known):

- `max_probability`: the softmax of the windows' mean log-probability, its largest entry (what
  `ikd identify` used first; Hendrycks & Gimpel 2017).
- `energy`: log-sum-exp of the windows' mean logits (Liu et al. 2020): a stranger tends to raise
  every logit less.
- `cosine`: the cosine similarity of the capture's mean embedding to the nearest enrolled mean
  embedding (the gallery–probe comparison of gait recognition, e.g. OpenGait).
- `mahalanobis`: minus the squared Mahalanobis distance to the nearest enrolled mean under one
  covariance shared by all identities (Lee et al. 2018), which discounts directions in which a
  person's own walks already vary.

The two embedding scores name whoever is in the `Gallery`, so a person enrolled after training
(`Gallery.enroll`) is named without retraining; the two logit scores know the trained identities
only. Thresholds are chosen on val captures (`threshold_at`), never on test. Pure NumPy: the
scores of a model file's windows, and the metrics that compare them (`auroc`,
`rejected_at_acceptance`).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ikd.errors import UserError

SCORES = ("max_probability", "energy", "cosine", "mahalanobis")
EMBEDDING_SCORES = ("cosine", "mahalanobis")  # those that name the gallery's people
# The shared covariance is shrunk toward its mean variance (Ledoit–Wolf's target), by this much:
# 512 dimensions from a few thousand windows would otherwise be a near-singular estimate.
SHRINKAGE = 0.1


@dataclass(frozen=True)
class Gallery:
    """The people a deployment knows by their gait embeddings: each one's mean embedding and the
    within-person covariance all share (as its precision matrix)."""

    names: tuple[str, ...]
    means: np.ndarray  # (N, D) each person's mean embedding
    counts: np.ndarray  # (N,) the windows each mean averages
    precision: np.ndarray  # (D, D) the inverse of the shared, shrunk within-person covariance
    enrolled: np.ndarray  # (N,) bool: added after training (`enroll`), not fitted

    @classmethod
    def fit(
        cls,
        embeddings: np.ndarray,
        labels: np.ndarray,
        names: Sequence[str],
        shrinkage: float = SHRINKAGE,
    ) -> Gallery:
        """From windows' embeddings (W, D) with their identity labels (indices into `names`),
        e.g. the training split's: every name needs windows."""
        embeddings = np.asarray(embeddings, np.float64)
        labels = np.asarray(labels)
        missing = [names[i] for i in range(len(names)) if not np.any(labels == i)]
        if missing:
            raise UserError(f"no windows of {missing[:5]} to enrol them from")
        means = np.stack([embeddings[labels == i].mean(axis=0) for i in range(len(names))])
        counts = np.bincount(labels, minlength=len(names))
        centred = embeddings - means[labels]
        covariance = centred.T @ centred / max(len(embeddings) - len(names), 1)
        target = np.trace(covariance) / len(covariance)
        shrunk = (1 - shrinkage) * covariance + shrinkage * target * np.eye(len(covariance))
        return cls(tuple(names), means, counts, np.linalg.inv(shrunk), np.zeros(len(names), bool))

    def enroll(self, name: str, embeddings: np.ndarray) -> Gallery:
        """The gallery with `name` added from their windows' embeddings (the shared covariance
        kept: a few captures cannot estimate one)."""
        if name in self.names:
            raise UserError(f"{name!r} is enrolled already (remove them first to enrol again)")
        embeddings = np.asarray(embeddings, np.float64)
        if embeddings.ndim != 2 or len(embeddings) == 0:
            raise UserError(f"no gait windows to enrol {name!r} from")
        return Gallery(
            (*self.names, name),
            np.vstack([self.means, embeddings.mean(axis=0)]),
            np.append(self.counts, len(embeddings)),
            self.precision,
            np.append(self.enrolled, True),
        )

    def remove(self, name: str) -> Gallery:
        if name not in self.names:
            raise UserError(f"{name!r} is not enrolled (enrolled: {', '.join(self.names)})")
        keep = [i for i, n in enumerate(self.names) if n != name]
        return Gallery(
            tuple(self.names[i] for i in keep),
            self.means[keep],
            self.counts[keep],
            self.precision,
            self.enrolled[keep],
        )

    def cosine(self, embedding: np.ndarray) -> np.ndarray:
        """(D,) → (N,) cosine similarity to each person's mean."""
        means = self.means / np.linalg.norm(self.means, axis=1, keepdims=True)
        return means @ (embedding / np.linalg.norm(embedding))

    def mahalanobis(self, embedding: np.ndarray) -> np.ndarray:
        """(D,) → (N,) squared Mahalanobis distance to each person's mean: ‖(e − μ)ᵀL‖² with
        precision = LLᵀ, the means whitened once (`_whitened`), so a capture costs one (D, D)
        vector product — a matrix product each time cost ~10 ms beside torch's threads."""
        factor, means = self._whitened
        return ((embedding @ factor - means) ** 2).sum(axis=1)

    @functools.cached_property
    def _whitened(self) -> tuple[np.ndarray, np.ndarray]:
        factor = np.linalg.cholesky(self.precision)
        return factor, self.means @ factor

    def to_bytes(self) -> bytes:
        """An .npz (what a model file keeps beside its metadata: a 512-d precision matrix is
        2 MB of float64, too much for JSON)."""
        out = io.BytesIO()
        np.savez(out, names=np.asarray(self.names, dtype=str), means=self.means,
                 counts=self.counts, precision=self.precision, enrolled=self.enrolled)  # fmt: skip
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Gallery:
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            return cls(
                tuple(str(name) for name in saved["names"]),
                saved["means"],
                saved["counts"],
                saved["precision"],
                saved["enrolled"],
            )


def capture_scores(
    logits: np.ndarray, embeddings: np.ndarray, gallery: Gallery | None = None
) -> dict[str, tuple[int, float]]:
    """A capture's windows' logits (W, K) and embeddings (W, D) → each score's (the index it
    points at — into the trained identities for the logit scores, into `gallery.names` for the
    embedding scores — and its value, higher for a capture more like someone known)."""
    logits = np.asarray(logits, np.float64)
    mean_log_probs = (logits - _logsumexp(logits, axis=1)[:, None]).mean(axis=0)
    probabilities = np.exp(mean_log_probs - _logsumexp(mean_log_probs))
    mean_logits = logits.mean(axis=0)
    scores = {
        "max_probability": (int(probabilities.argmax()), float(probabilities.max())),
        "energy": (int(mean_logits.argmax()), float(_logsumexp(mean_logits))),
    }
    if gallery is not None:
        embedding = np.asarray(embeddings, np.float64).mean(axis=0)
        similarity, distance = gallery.cosine(embedding), gallery.mahalanobis(embedding)
        scores["cosine"] = (int(similarity.argmax()), float(similarity.max()))
        scores["mahalanobis"] = (int(distance.argmin()), float(-distance.min()))
    return scores


def _logsumexp(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    top = np.max(values, axis=axis, keepdims=True)
    total = np.log(np.sum(np.exp(values - top), axis=axis, keepdims=True)) + top
    return np.squeeze(total, axis=axis) if axis is not None else total.item()


def threshold_at(known: Sequence[float], accept: float = 0.95) -> float:
    """The largest threshold that at least `accept` of the known captures' scores reach."""
    ordered = np.sort(np.asarray(known, np.float64))
    if len(ordered) == 0:
        raise UserError("no known captures to choose a threshold on")
    return float(ordered[math.floor((1 - accept) * len(ordered))])


def rejected_at_acceptance(
    known: Sequence[float], strangers: Sequence[float], accept: float = 0.95
) -> float:
    """The share of strangers below the threshold that accepts `accept` of the known."""
    threshold = threshold_at(known, accept)
    return float(np.mean(np.asarray(strangers, np.float64) < threshold))


def auroc(known: Sequence[float], strangers: Sequence[float]) -> float:
    """The probability that a known capture scores above a stranger's (ties count half): the
    area under the ROC curve of telling them apart, 0.5 for a score that cannot."""
    known, strangers = np.asarray(known, np.float64), np.asarray(strangers, np.float64)
    if len(known) == 0 or len(strangers) == 0:
        raise UserError("AUROC needs known and stranger captures")
    above = (known[:, None] > strangers[None]).sum() + 0.5 * (
        known[:, None] == strangers[None]
    ).sum()
    return float(above / (len(known) * len(strangers)))
