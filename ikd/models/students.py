"""Gait students (paper Table 4): torchvision backbones with one shared head.

Every student — resnet18 included, so Table 4 compares backbones only — ends in the same linear
projection of its penultimate features E to the teacher's 512-d space (`p_s`, eq. 4) and a linear
classifier on `p_s` (`y_s`, eq. 5). vgg16 contributes its globally pooled conv features (512),
not its 4096-d ImageNet head, which at 32² inputs would only copy a 1×1 map (DESIGN.md §5).
MobileNet is **MobileNetV2** (the paper does not say which; V2 is the common baseline and has no
squeeze-excitation or hard-swish whose behaviour at 1×1 maps would be a confound). EfficientNet
is B0. Weights start random: the inputs are spectrograms, and no ImageNet weights can be fetched.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

from ikd.errors import UserError
from ikd.models import EMBEDDING_DIM

# torchvision is imported by the builders, not here: importing it imports torch._dynamo (~1.2 s
# of CPU), which the processes that import the methods without building a student (a study's
# driver, a report) need not pay.


def _resnet18() -> tuple[nn.Module, int]:
    from torchvision import models

    net = models.resnet18(weights=None)
    features = net.fc.in_features
    net.fc = nn.Identity()
    return net, features


def _pooled(net: nn.Module) -> nn.Module:
    return nn.Sequential(net.features, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _mobilenet() -> tuple[nn.Module, int]:
    from torchvision import models

    net = models.mobilenet_v2(weights=None)
    return _pooled(net), net.last_channel


def _efficientnet() -> tuple[nn.Module, int]:
    from torchvision import models

    net = models.efficientnet_b0(weights=None)
    return _pooled(net), net.classifier[-1].in_features


def _vgg16() -> tuple[nn.Module, int]:
    from torchvision import models

    net = models.vgg16(weights=None)
    return _pooled(net), 512


# name → backbone builder returning (module mapping (B, 3, H, H) → (B, E), E)
STUDENTS: dict[str, Callable[[], tuple[nn.Module, int]]] = {
    "resnet18": _resnet18,
    "mobilenet": _mobilenet,
    "efficientnet": _efficientnet,
    "vgg16": _vgg16,
}


def backbone(name: str) -> tuple[nn.Module, int]:
    """A randomly initialised backbone for `train.student`: one of `STUDENTS`, or a builder of
    one's own named `package.module:function` (the `STUDENTS` builders' shape), imported where
    the run trains (in a Ray job, the working dir is on the path of every process).

    Raises:
        UserError: the builder cannot be imported, or does not return (module, width)."""
    if name in STUDENTS:
        return STUDENTS[name]()
    build = builder(name)
    try:
        built = build()
    except Exception as error:  # the builder's own: one line, what it said
        raise UserError(f"train.student={name}: failed: {type(error).__name__}: {error}") from None
    match built:
        case (nn.Module(), int()):
            return built
    raise UserError(f"train.student={name}: returned {type(built).__name__}, not (module, width)")


def builder(name: str) -> Callable[[], tuple[nn.Module, int]]:
    """The function a `package.module:function` student names, imported (not called): the
    CLI asks for it before anything starts, so a typo is one line there, not a failed trial.

    Raises:
        UserError: it cannot be imported."""
    module, _, function = name.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as error:
        raise UserError(
            f"train.student={name}: {error} (it must be importable where ikd starts and where runs "
            "train: e.g. `python -m ikd` from its folder, or its folder on PYTHONPATH)"
        ) from None


class Student(nn.Module):
    """Backbone → projection to 512 (p_s) → classifier (y_s).

    Args:
        backbone: maps (B, 3, H, H) spectrograms to (B, features); `from_name` builds Table 4's.
        features: E, the backbone's output width.
    """

    def __init__(self, backbone: nn.Module, features: int, num_identities: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Linear(features, EMBEDDING_DIM)
        self.classifier = nn.Linear(EMBEDDING_DIM, num_identities)

    @classmethod
    def from_name(cls, name: str, num_identities: int) -> Student:
        """The student of `train.student` (`backbone`), randomly initialised."""
        return cls(*backbone(name), num_identities)

    def forward(self, spectrogram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, H) → embedding p_s (B, 512), logits y_s (B, N)."""
        embedding = self.projection(self.backbone(spectrogram))
        return embedding, self.classifier(embedding)
