"""Golden DSP tests: a point scatterer lands where the physics says, on both synthesis paths."""

import numpy as np
import pytest

from ikd.config import load_config
from ikd.errors import CaptureError
from ikd.radar import dsp
from ikd.radar.simulate import point_scene, simulate_walk, synthesize_adc, synthesize_range_profiles

RANGE_M, SPEED = 4.0, 1.5


@pytest.fixture
def config():
    # Full 256-sample chirps, 64 chirps per frame (bursty), 10 frames.
    return load_config(
        "paper",
        ["radar.num_chirps=64", "synthetic.walk_duration_s=0.33", "dsp.window_frames=4"],
        warn=False,
    )


def _profiles(config, velocity, exact):
    radar = config.radar
    scene = point_scene(radar, config.num_frames, RANGE_M, velocity)
    bins = dsp.range_band(radar, config.dsp)
    if exact:
        return dsp.range_fft(synthesize_adc(scene, radar), bins)
    return synthesize_range_profiles(scene, radar, bins)


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "fast"])
def test_a_point_scatterer_peaks_in_its_range_bin(config, exact):
    profiles = _profiles(config, 0.0, exact)
    bins = dsp.range_band(config.radar, config.dsp)
    peak = np.abs(profiles[0, 0, 0]).argmax() + bins.start
    assert abs(peak - RANGE_M / config.radar.range_resolution_m) <= 1


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "fast"])
@pytest.mark.parametrize("velocity", [-SPEED, SPEED], ids=["approaching", "receding"])
def test_a_moving_scatterer_peaks_in_its_doppler_bin(config, exact, velocity):
    profiles = _profiles(config, velocity, exact)
    spectrogram = dsp.micro_doppler(dsp.remove_static_clutter(profiles))
    axis = dsp.velocity_axis(config.radar)
    expected = np.abs(axis - (-velocity)).argmin()  # the axis is speed toward the radar
    peaks = spectrogram.argmax(axis=0)
    assert np.all(np.abs(peaks - expected) <= 1)
    observed = axis[peaks].mean()
    assert np.sign(observed) == -np.sign(velocity)  # moving away → negative Doppler


def test_velocity_axis_spans_the_unambiguous_interval(config):
    axis = dsp.velocity_axis(config.radar)
    assert np.all(np.diff(axis) > 0)
    assert axis[-1] == pytest.approx(config.radar.max_velocity_m_s, rel=1e-6)
    assert np.diff(axis)[0] == pytest.approx(config.radar.velocity_resolution_m_s, rel=1e-6)


def test_fast_and_exact_paths_give_the_same_range_time_map():
    """Noise off: the closed-form range response equals the FFT of the exact cube (rel. 1e-5)."""
    config = load_config(
        "paper", ["synthetic.walk_duration_s=0.2", "dsp.window_frames=4"], warn=False
    )
    exact = simulate_walk(config, 1, 0, exact=True, noise=False)
    fast = simulate_walk(config, 1, 0, noise=False)
    assert exact.shape == fast.shape
    assert np.abs(exact - fast).max() <= 1e-5 * np.abs(exact).max()


def test_fast_path_noise_has_the_exact_paths_statistics(config):
    """White ADC noise through a Hann FFT: variance 3S/8 per bin, adjacent-bin correlation −2/3."""
    radar = config.radar
    scene = point_scene(radar, 40, RANGE_M, 0.0, amplitude=0.0, noise=True)
    bins = dsp.range_band(radar, config.dsp)
    rng = np.random.default_rng(0)
    for profiles in (
        dsp.range_fft(synthesize_adc(scene, radar, rng), bins),
        synthesize_range_profiles(scene, radar, bins, rng),
    ):
        flat = profiles.reshape(-1, profiles.shape[-1])
        assert np.mean(np.abs(flat) ** 2) == pytest.approx(3 * radar.num_samples / 8, rel=0.03)
        correlation = np.mean(flat[:, :-1] * flat[:, 1:].conj()) / np.mean(np.abs(flat) ** 2)
        assert correlation.real == pytest.approx(-2 / 3, abs=0.02)


def test_clutter_removal_leaves_no_static_energy():
    profiles = np.tile(np.arange(1, 6, dtype=np.complex64), (3, 4, 2, 1))
    assert np.allclose(dsp.remove_static_clutter(profiles), 0)


def test_gait_windows_overlap_and_have_the_preset_shape(smoke):
    spectrogram = (
        np.random.default_rng(0)
        .random((smoke.radar.num_chirps, smoke.num_frames))
        .astype(np.float32)
    )
    images, centres = dsp.spectrogram_windows(spectrogram, smoke.radar, smoke.dsp)
    expected = (smoke.num_frames - smoke.dsp.window_frames) // smoke.dsp.hop_frames + 1
    size = smoke.dsp.image_size
    assert images.shape == (expected, 3, size, size) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert np.all(images[:, 0] == images[:, 2])
    assert np.allclose(np.diff(centres), smoke.dsp.hop_frames * smoke.radar.frame_period_s)


def test_non_finite_profiles_are_refused(smoke):
    profiles = np.zeros((smoke.num_frames, smoke.radar.num_chirps, 1, 4), np.complex64)
    profiles[3, 2, 0, 1] = np.nan
    with pytest.raises(CaptureError, match="NaN"):
        dsp.walk_spectrogram(profiles, smoke.radar, smoke.dsp)


def test_a_walk_shorter_than_one_window_is_a_capture_error(smoke):
    with pytest.raises(CaptureError, match="shorter than one 32-bin gait window"):
        dsp.spectrogram_windows(np.ones((32, 20), np.float32), smoke.radar, smoke.dsp)


def test_the_slow_time_phase_of_a_receding_point_advances_by_4pi_v_tc_over_lambda(config):
    """Pins the physical sign independently of the DSP: R grows, so the phase 4πR/λ grows."""
    radar = config.radar
    profiles = _profiles(config, SPEED, exact=True)
    bins = dsp.range_band(radar, config.dsp)
    peak = round(RANGE_M / radar.range_resolution_m) - bins.start
    step = np.angle(profiles[0, 1:, 0, peak] * profiles[0, :-1, 0, peak].conj())
    assert np.allclose(
        step, 4 * np.pi * SPEED * radar.chirp_period_s / radar.wavelength_m, atol=0.02
    )


def test_the_walker_band_follows_a_moving_point(config):
    radar = config.radar
    profiles = dsp.remove_static_clutter(_profiles(config, SPEED * 3, exact=False))
    band = dsp.walker_band(dsp.range_time_map(profiles), half_width=2)
    bins = dsp.range_band(radar, config.dsp)
    times = np.arange(config.num_frames) * radar.frame_period_s
    truth = np.round((RANGE_M + SPEED * 3 * times) / radar.range_resolution_m) - bins.start
    assert band.shape == (config.num_frames, 5)
    assert np.all((band[:, 0] <= truth) & (truth <= band[:, -1]))
    assert band[-1, 2] > band[0, 2]  # it moved with the point


def test_tracking_the_walker_raises_the_spectrogram_contrast():
    """Summing noise-only range bins lifts the floor; the tracked band does not."""
    base = load_config("laptop", warn=False)
    profiles = simulate_walk(base, 2, 0)
    contrast = {}
    for width in (0.0, 0.8):
        config = load_config("laptop", [f"dsp.track_half_width_m={width}"], warn=False)
        spectrogram = dsp.walk_spectrogram(profiles, config.radar, config.dsp)
        contrast[width] = np.median(spectrogram.max(axis=0) / np.median(spectrogram, axis=0))
    assert contrast[0.8] > 1.4 * contrast[0.0]


def test_shrinking_averages_areas_and_enlarging_interpolates():
    shrink = dsp.resize_matrix(64, 32)
    assert np.allclose(shrink.sum(axis=1), 1)
    checkerboard = np.tile([0.0, 1.0], 32)
    assert np.allclose(shrink @ checkerboard, 0.5)  # no aliasing
    grow = dsp.resize_matrix(4, 8)
    assert np.allclose(grow.sum(axis=1), 1)
    assert np.allclose(grow @ np.arange(4.0), np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3))
