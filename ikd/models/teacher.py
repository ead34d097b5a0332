"""The frozen face teacher: facenet-pytorch's InceptionResnetV1 plus a linear identity classifier.

The backbone is VGGFace2-pretrained when its weights lie in the torch hub cache
(``$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt``; never downloaded here), otherwise
trained on the training split's faces (ikd/face/teacher.py, which also fits the classifier and
keeps the teacher's provenance). The teacher's logits come from a linear classifier on the frozen,
L2-normalised 512-d embedding. The teacher is frozen, so the data pipeline computes its outputs for
K views of every face once (ikd/data/views.py); training never runs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:  # imported where a network is built: it imports torchvision (~1.3 s of CPU),
    # which the processes that only read the teacher's outputs (Ray Data's other tasks) skip
    from facenet_pytorch import InceptionResnetV1

VGGFACE2 = "20180402-114759-vggface2.pt"


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


def load_backbone(state: str | os.PathLike | dict[str, torch.Tensor]) -> InceptionResnetV1:
    """An InceptionResnetV1 embedding network (classify=False) from a state dict (or its local
    file), frozen.

    VGGFace2's checkpoint carries its 8631-class `logits` layer; it is not ours and is dropped.
    """
    if not isinstance(state, dict):
        state = torch.load(state, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    from facenet_pytorch import InceptionResnetV1

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


@torch.no_grad()
def embed(backbone: nn.Module, faces: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """(B, 3, S, S) standardized faces → (B, 512) L2-normalised embeddings."""
    return torch.cat(
        [backbone(faces[i : i + batch_size]) for i in range(0, len(faces), batch_size)]
    )


class Teacher(nn.Module):
    """Frozen backbone + classifier: faces → (embedding, logits)."""

    def __init__(self, backbone: nn.Module, classifier: nn.Linear) -> None:
        super().__init__()
        self.backbone, self.classifier = freeze(backbone), freeze(classifier)

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # frozen: always eval

    @torch.no_grad()
    def forward(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) standardized faces → (B, 512) embeddings, (B, N) logits."""
        embedding = self.backbone(faces)
        return embedding, self.classifier(embedding)
