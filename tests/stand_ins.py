"""Tiny stand-in networks for tests whose subject is not the network (STYLE.md: timm's tests)."""

from torch import nn


def tiny_backbone(batchnorm: bool = True) -> tuple[nn.Module, int]:
    """A student backbone (`ikd.models.students.STUDENTS` builder shape): conv → BatchNorm (so
    FAWA's integer buffers exist; `batchnorm=False`: none, so a sample's features do not depend on
    its batch) → 8 pooled features. ~250 parameters instead of resnet18's 11 M."""
    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.BatchNorm2d(8) if batchnorm else nn.Identity(),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return backbone, 8
