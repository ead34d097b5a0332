"""Walk-level splits (DESIGN.md §4): no walk in two splits, every identity in every split."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ikd.config import DataConfig
from ikd.errors import ConfigError


def assign_splits(walks: Iterable[tuple[int, int]], data: DataConfig) -> dict[tuple[int, int], str]:
    """Split each identity's walks into train / val / test, deterministically from `data.split_seed`.

    Each identity contributes at least one walk to every split (val and test take
    max(1, round(fraction·n)) walks, train the rest), so it needs at least three walks.

    Args:
        walks: (identity, walk) pairs.

    Returns:
        (identity, walk) → "train" | "val" | "test".
    """
    by_identity: dict[int, list[int]] = {}
    for identity, walk in walks:
        by_identity.setdefault(int(identity), []).append(int(walk))
    splits = {}
    for identity, walk_ids in sorted(by_identity.items()):
        walk_ids = sorted(set(walk_ids))
        count = len(walk_ids)
        val = max(1, round(data.val_fraction * count))
        test = max(1, round(data.test_fraction * count))
        if count - val - test < 1:
            raise ConfigError(
                f"identity {identity} has {count} walks; a walk split needs at least 3"
            )
        order = np.random.default_rng([data.split_seed, identity]).permutation(walk_ids)
        for position, walk in enumerate(order):
            splits[identity, int(walk)] = (
                "val" if position < val else "test" if position < val + test else "train"
            )
    return splits
