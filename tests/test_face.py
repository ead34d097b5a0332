"""Synthetic faces and the real-frame face path (MTCNN), without Ray."""

import socket

import numpy as np
import pytest
from PIL import Image

from ikd.config import apply_overrides
from ikd.data import schema
from ikd.data.pairs import RealFaces, synthetic_faces_batch, synthetic_pairs_batch
from ikd.face import synthetic
from ikd.radar.captures import walk_windows_batch


def test_faces_are_pure_functions_of_seed_and_identity():
    assert synthetic.draw_face(0, 3) == synthetic.draw_face(0, 3)
    assert synthetic.draw_face(0, 3) != synthetic.draw_face(0, 4)


def test_a_rendered_face_is_an_rgb_crop_and_reproducible():
    face = synthetic.draw_face(0, 1)
    seed = synthetic.frame_seed(0, 1, 0, 7)
    first = synthetic.render_face(face, 80, np.random.default_rng(seed))
    again = synthetic.render_face(face, 80, np.random.default_rng(seed))
    assert first.shape == (3, 80, 80) and first.dtype == np.uint8
    assert np.array_equal(first, again)


def test_frames_of_one_person_differ_less_than_frames_of_two():
    def mean_face(identity):
        frames = [
            synthetic.render_face(
                synthetic.draw_face(0, identity), 80, np.random.default_rng([identity, f])
            )
            for f in range(40)
        ]
        return np.stack([f for f in frames if f is not None]).astype(np.float32)

    a, b = mean_face(0), mean_face(1)
    within = np.linalg.norm(a[::2].mean(0) - a[1::2].mean(0))
    between = np.linalg.norm(a.mean(0) - b.mean(0))
    assert within < between


def test_synthetic_faces_pair_with_windows_and_missing_faces_become_errors(smoke, monkeypatch):
    rows = walk_windows_batch(
        {"identity": np.array([0, 1]), "walk": np.array([0, 0])}, config=smoke
    )
    paired = synthetic_faces_batch(rows, config=smoke)
    size = smoke.face.image_size
    assert paired[schema.FACE].shape == (len(rows["identity"]), 3, size, size)
    monkeypatch.setattr(synthetic, "NO_FACE_PROBABILITY", 1.0)
    none = synthetic_faces_batch(rows, config=smoke)
    assert all("no face in webcam frame" in e for e in none[schema.ERROR])


def test_mtcnn_runs_offline_on_a_frame(smoke, monkeypatch):
    connect = socket.socket.connect

    def no_network(self, address, *args, **kwargs):
        # this machine stays reachable: the session's Ray clusters and S3 server are in use by
        # jobs running beside this test (conftest.py's `cluster_jobs`)
        if isinstance(address, str) or address[0] in ("127.0.0.1", "localhost", "::1"):
            return connect(self, address, *args, **kwargs)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    cropper = RealFaces(smoke, {})
    frame = synthetic.webcam_frame(synthetic.draw_face(0, 0), np.random.default_rng(0))
    crop = cropper.crop(Image.fromarray(frame))
    assert crop is None or (
        crop.shape == (3, smoke.face.image_size, smoke.face.image_size) and crop.dtype == np.uint8
    )


def test_unreadable_and_missing_frames_are_errors_not_crashes(smoke, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(
        synthetic.webcam_frame(synthetic.draw_face(0, 0), np.random.default_rng(1))
    ).save(frames / "000000.jpg")
    (frames / "000001.jpg").write_bytes(b"not a jpeg")
    config = apply_overrides(smoke, {"face.frame_rate_hz": 1.0})
    cropper = RealFaces(
        config, {(0, 0): {"folder": str(frames), "frame_rate_hz": 1.0, "frame_offset_s": 0.0}}
    )
    batch = {
        schema.IDENTITY: np.array([0, 0, 0, 1]),
        schema.WALK: np.array([0, 0, 0, 0]),
        schema.CENTRE_TIME: np.array([0.0, 1.0, 5.0, 0.0]),
        schema.ERROR: np.array(["", "", "", ""], dtype=object),
    }
    out = cropper(batch)
    assert "unreadable frame" in out[schema.ERROR][1] and "000001.jpg" in out[schema.ERROR][1]
    assert "no frame 5" in out[schema.ERROR][2]
    assert "lists no face frames" in out[schema.ERROR][3]
    assert out[schema.ERROR][0] == "" or "no face found" in out[schema.ERROR][0]


def test_the_face_size_must_fit_inception_resnet(smoke):
    from ikd.errors import ConfigError

    with pytest.raises(ConfigError, match="≥ 80"):
        apply_overrides(smoke, {"face.image_size": 64})


def test_synthetic_pairs_are_windows_plus_faces_in_one_step(smoke):
    walks = {"identity": np.array([0]), "walk": np.array([1])}
    pairs = synthetic_pairs_batch(walks, config=smoke)
    alone = synthetic_faces_batch(walk_windows_batch(walks, config=smoke), config=smoke)
    assert all(np.array_equal(pairs[k], alone[k]) for k in pairs)
