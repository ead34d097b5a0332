"""Dataset building blocks without Ray: splits, the stored encodings, bad records."""

import numpy as np
import pytest

from ikd.config import DataConfig
from ikd.data import schema
from ikd.data.splits import assign_splits
from ikd.errors import ConfigError
from ikd.radar import captures


def test_splits_are_deterministic_disjoint_and_cover_every_identity():
    walks = [(i, w) for i in range(5) for w in range(20)]
    splits = assign_splits(walks, DataConfig())
    assert splits == assign_splits(list(reversed(walks)), DataConfig())
    assert set(splits) == set(walks)  # each walk in exactly one split
    for identity in range(5):
        mine = [splits[identity, w] for w in range(20)]
        assert (mine.count("train"), mine.count("val"), mine.count("test")) == (14, 2, 4)
    assert assign_splits(walks, DataConfig(split_seed=1)) != splits


def test_every_identity_gets_every_split_even_with_three_walks():
    splits = assign_splits([(0, 0), (0, 1), (0, 2)], DataConfig())
    assert sorted(splits.values()) == ["test", "train", "val"]
    with pytest.raises(ConfigError, match="at least 3"):
        assign_splits([(0, 0), (0, 1)], DataConfig())


def test_stored_arrays_round_trip():
    shapes = schema.Shapes(spectrogram_size=4, face_size=2, views=3, num_identities=5)
    images = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    images[:, 1:] = images[:, :1]
    decoded = shapes.decode_spectrogram(list(schema.encode_spectrogram(images)))
    assert decoded.shape == (2, 3, 4, 4) and np.abs(decoded - images).max() <= 0.5 / 255 + 1e-7
    logits = np.random.default_rng(1).normal(size=(2, 3, 5)).astype(np.float32)
    assert np.array_equal(shapes.decode_logits(list(schema.encode(logits))), logits)
    assert schema.row_key(np.array([2]), np.array([3]), np.array([4]))[0] == 2_003_004


def test_a_nan_spectrogram_is_dropped_and_named(smoke, monkeypatch):
    def nan_walk(config, identity, walk, **kwargs):
        return np.full(
            (config.num_frames, config.radar.num_chirps, config.radar.num_rx, 8),
            np.nan,
            np.complex64,
        )

    monkeypatch.setattr(captures, "simulate_walk", nan_walk)
    out = captures.walk_windows_batch(
        {"identity": np.array([2]), "walk": np.array([1])}, config=smoke
    )
    assert out["error"].tolist() == [
        "synthetic identity 2 walk 1: range profiles hold NaN or infinite values"
    ]


def test_windows_become_stored_rows_with_their_walks_split():
    batch = {
        schema.IDENTITY: np.array([1, 1]),
        schema.WALK: np.array([2, 3]),
        schema.WINDOW: np.array([0, 4]),
        schema.CENTRE_TIME: np.array([1.0, 2.0]),
        schema.SPECTROGRAM: np.full((2, 3, 4, 4), 0.5, np.float32),
        schema.FACE: np.zeros((2, 3, 2, 2), np.uint8),
        schema.ERROR: np.array(["", "no face"], dtype=object),
    }
    rows = schema.to_storage(batch, splits={(1, 2): "train", (1, 3): "test"})
    assert rows[schema.KEY].tolist() == [1_002_000, 1_003_004]
    assert rows[schema.SPLIT].tolist() == ["train", "test"] and rows[schema.ERROR].tolist() == [
        "",
        "no face",
    ]
    assert rows[schema.SPECTROGRAM][0] == bytes([128] * 16) and len(rows[schema.FACE][1]) == 12
