"""DCA1000 .bin layout, round trip, and clear errors for bad captures."""

import json

import numpy as np
import pytest

from ikd.config import apply_overrides
from ikd.data.export import simulate_captures
from ikd.errors import CaptureError
from ikd.radar.captures import (
    capture_rows,
    capture_windows_batch,
    iter_walk_windows,
    read_metadata,
)
from ikd.radar.dca1000 import quantize, read_bin, write_bin
from ikd.radar.dsp import num_windows, walk_spectrogram
from ikd.radar.simulate import simulate_walk


def _cube(shape=(3, 4, 2, 8), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(-32767, 32768, shape) + 1j * rng.integers(-32767, 32768, shape)).astype(
        np.complex64
    )


def test_round_trip_is_bit_exact(tmp_path):
    cube = _cube()
    write_bin(tmp_path / "a.bin", cube)
    back = read_bin(tmp_path / "a.bin", *cube.shape)
    assert back.dtype == np.complex64 and np.array_equal(back, cube)


def test_words_follow_the_two_lane_layout(tmp_path):
    cube = np.zeros((1, 1, 2, 4), np.complex64)
    cube[0, 0, 0] = [1 + 5j, 2 + 6j, 3 + 7j, 4 + 8j]
    cube[0, 0, 1] = [9 + 13j, 10 + 14j, 11 + 15j, 12 + 16j]
    write_bin(tmp_path / "a.bin", cube)
    words = np.fromfile(tmp_path / "a.bin", dtype="<i2")
    # I0 I1 Q0 Q1 I2 I3 Q2 Q3 for rx 0, then rx 1.
    assert words.tolist() == [1, 2, 5, 6, 3, 4, 7, 8, 9, 10, 13, 14, 11, 12, 15, 16]


def test_a_truncated_file_names_itself_and_what_was_expected(tmp_path):
    cube = _cube()
    path = tmp_path / "walk.bin"
    write_bin(path, cube)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        CaptureError, match=r"walk\.bin: expected 768 bytes \(3 frames .*found 668 bytes.*truncated"
    ):
        read_bin(path, *cube.shape)


def test_a_wrong_frame_count_is_reported(tmp_path):
    cube = _cube()
    write_bin(tmp_path / "a.bin", cube)
    with pytest.raises(
        CaptureError, match=r"a\.bin: expected 1024 bytes \(4 frames.*\(3\.00 frames"
    ):
        read_bin(tmp_path / "a.bin", 4, *cube.shape[1:])


def test_a_missing_file_is_a_capture_error(tmp_path):
    with pytest.raises(CaptureError, match=r"nothere\.bin: cannot read"):
        read_bin(tmp_path / "nothere.bin", 1, 1, 1, 2)


def test_nan_samples_are_refused_and_nothing_is_written(tmp_path):
    cube = _cube()
    cube[1, 2, 0, 3] = np.nan
    with pytest.raises(CaptureError, match="NaN"):
        write_bin(tmp_path / "a.bin", cube)
    assert not list(tmp_path.iterdir())


def test_quantize_maps_full_scale_to_int16():
    cube = np.array([0.5 + 0.25j, 4.0 - 4.0j, 10.0 + 0j], np.complex64)
    counts = quantize(cube, full_scale=4.0)
    assert counts.tolist() == [4096 + 2048j, 32767 - 32767j, 32767 + 0j]


def test_a_batch_reports_bad_captures_and_goes_on(tmp_path, smoke):
    config = smoke.__class__.from_dict(
        {
            **smoke.to_dict(),
            "synthetic": {
                **smoke.to_dict()["synthetic"],
                "num_identities": 2,
                "walks_per_identity": 2,
            },
        }
    )
    simulate_captures(config, tmp_path, webcam=False, progress=False)  # radar only here
    radar, captures = read_metadata(tmp_path)
    assert radar == config.radar and len(captures) == 4
    bad = tmp_path / captures[1]["file"]
    bad.write_bytes(bad.read_bytes()[:1000])
    batch = capture_rows(tmp_path, captures)
    out = capture_windows_batch(batch, config=config)
    errors = [e for e in out["error"] if e]
    assert len(errors) == 1 and captures[1]["file"] in errors[0] and "truncated" in errors[0]
    good = out["error"] == ""
    assert good.sum() == 3 * num_windows(config.num_frames, config.dsp)
    assert out["spectrogram"].shape[1:] == (3, config.dsp.image_size, config.dsp.image_size)


def test_metadata_errors_are_clear(tmp_path):
    with pytest.raises(CaptureError, match=r"metadata\.json: no such file"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.json").write_text(
        json.dumps({"format": "ikd-captures/1", "radar": {"num_chirp": 3}, "captures": []})
    )
    with pytest.raises(CaptureError, match="did you mean 'num_chirps'"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.json").write_text(
        json.dumps({"format": "ikd-captures/1", "radar": {}, "captures": [{"file": "a.bin"}]})
    )
    with pytest.raises(CaptureError, match="capture #0 lacks identity, walk, num_frames"):
        read_metadata(tmp_path)


def test_an_exported_capture_reads_back_as_the_in_stream_exact_walk(tmp_path, smoke):
    """simulate → quantise → .bin → read → DSP equals the in-stream exact path (16 counts per σ)."""
    config = apply_overrides(
        smoke, {"synthetic.num_identities": 2, "synthetic.walks_per_identity": 1}
    )
    simulate_captures(config, tmp_path, webcam=False, progress=False)
    (from_file,) = [w for w in iter_walk_windows(config, tmp_path, 2, 1) if w.identity == 1]
    in_stream = walk_spectrogram(simulate_walk(config, 1, 0, exact=True), config.radar, config.dsp)
    scale = config.synthetic.adc_full_scale / 32767  # counts → noise σ
    assert np.allclose(
        from_file.spectrogram * scale, in_stream, rtol=0.02, atol=0.02 * in_stream.max()
    )


def test_a_real_folder_at_another_frame_rate_is_accepted(tmp_path):
    radar = {"frame_period_s": 0.1, "num_chirps": 64}
    entry = {"file": "a.bin", "identity": 3, "walk": 0, "num_frames": 40, "person": "alice"}
    (tmp_path / "metadata.json").write_text(
        json.dumps({"format": "ikd-captures/1", "radar": radar, "captures": [entry]})
    )
    parsed, captures = read_metadata(tmp_path)
    assert parsed.frame_period_s == 0.1 and captures == [entry]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([], "format must be"),
        ({"format": "ikd-captures/1", "captures": {}}, "must be a list"),
        (
            {
                "format": "ikd-captures/1",
                "captures": [{"file": "a", "identity": "alice", "walk": 0, "num_frames": 3}],
            },
            "identity must be an integer",
        ),
        (
            {
                "format": "ikd-captures/1",
                "captures": [{"file": "a", "identity": 0, "walk": 0, "num_frames": 0}],
            },
            "num_frames must be an integer ≥ 1",
        ),
        (
            {"format": "ikd-captures/1", "radar": {"sample_rate_hz": 0}, "captures": []},
            "sample_rate_hz must be > 0",
        ),
    ],
)
def test_malformed_metadata_is_a_capture_error(tmp_path, metadata, message):
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(CaptureError, match=message):
        read_metadata(tmp_path)


def test_error_rows_have_the_same_shapes_as_good_rows(smoke, tmp_path):
    batch = {
        "path": np.array([str(tmp_path / "missing.bin")], dtype=object),
        "identity": np.array([0]),
        "walk": np.array([0]),
        "num_frames": np.array([smoke.num_frames]),
    }
    out = capture_windows_batch(batch, config=smoke)
    size = smoke.dsp.image_size
    assert out["spectrogram"].shape == (1, 3, size, size) and "missing.bin" in out["error"][0]
