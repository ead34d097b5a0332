"""FMCW synthesis of a scene: the exact ADC cube, and the fast path straight to range profiles.

Signal model (complex baseband, TI "complex 1x": IF = TX · conj(RX)), per scatterer of range R
and amplitude a, stop-and-hop (the scene is frozen during a chirp and moves between chirps):

    x[s] = a · exp(j(ω_b·s + φ + π·n·u)),   ω_b = 2π·slope·τ / fs,   φ = 2π·f0·τ − π·slope·τ²

with τ = 2R/c, s the ADC sample, n the RX index (λ/2 spacing) and u the direction cosine along the
array. Thermal noise is circular complex Gaussian with E|n|² = 1 per ADC sample, so amplitudes
are in noise-σ units.

The exact path (`synthesize_adc`) writes every sample of the cube (F frames, C chirps, A rx,
S samples). The fast path (`synthesize_range_profiles`) writes what the DSP's windowed range FFT
of that cube gives, only in the range bins the DSP keeps: for the periodic Hann window
w = ½ − ¼e^{+j2πs/S} − ¼e^{−j2πs/S}, bin k of the windowed FFT of one scatterer is

    X_k = a·e^{jφ}·(½·G_k − ¼·G_{k−1} − ¼·G_{k+1}),
    G_j = Σ_s e^{j(ω_b − 2πj/S)s} = e^{jω_b(S−1)/2}·sin(Sω_b/2) · e^{jπj/S} / sin(ω_b/2 − πj/S),

and sin(ω_b/2 − πj/S) = sin(ω_b/2)cos(πj/S) − cos(ω_b/2)sin(πj/S): per (chirp, scatterer, bin)
only one multiply-add and a reciprocal, no transcendental. Noise after that FFT is exactly
½Z_k − ¼Z_{k−1} − ¼Z_{k+1} with Z white of variance S per bin. The two paths agree to float
precision (tests/test_radar_dsp.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ikd.config import SPEED_OF_LIGHT, Config, RadarConfig
from ikd.radar.dsp import range_band, range_fft
from ikd.radar.scene import Identity, Walk, body_scatterers, draw_identity, draw_walk

REFERENCE_RANGE_M = 3.0  # the walk's SNR is that of a broadside torso at this range
_CHUNK = 2048  # chirps per block in the fast path: bounds peak memory


@dataclass(frozen=True)
class Scene:
    """Point returns over slow time, what both synthesis paths consume.

    Attributes:
        range_m: (M, P) moving scatterers' ranges at each chirp, m (M = F·C chirps).
        amplitude: (M, P) amplitudes, noise-σ units.
        direction_cosine: (M, P) cosine of the angle to the RX array axis.
        static_range_m, static_amplitude, static_direction_cosine: (Q,) static clutter.
        num_frames, num_chirps: F and C.
        noise: whether thermal noise is added.
    """

    range_m: np.ndarray
    amplitude: np.ndarray
    direction_cosine: np.ndarray
    static_range_m: np.ndarray
    static_amplitude: np.ndarray
    static_direction_cosine: np.ndarray
    num_frames: int
    num_chirps: int
    noise: bool = True


def simulate_walk(
    config: Config, identity: int, walk: int, *, exact: bool = False, noise: bool = True
) -> np.ndarray:
    """Synthetic walk `walk` of person `identity` as range profiles in the walker band.

    Args:
        exact: synthesize the whole ADC cube and range-FFT it (for checking) instead of taking
            the fast path.

    Returns:
        (F, C, A, R) complex64 range profiles, the same for both paths up to float rounding
        (the noise is seeded on both, but drawn differently).
    """
    bins = range_band(config.radar, config.dsp)
    if exact:
        return range_fft(simulate_adc(config, identity, walk, noise=noise), bins)
    scene, rng = _scene(config, identity, walk, noise)
    return synthesize_range_profiles(scene, config.radar, bins, rng)


def simulate_adc(config: Config, identity: int, walk: int, *, noise: bool = True) -> np.ndarray:
    """The exact ADC cube of a synthetic walk, (F, C, A, S) complex64, noise-σ units."""
    scene, rng = _scene(config, identity, walk, noise)
    return synthesize_adc(scene, config.radar, rng)


def _scene(
    config: Config, identity: int, walk: int, noise: bool
) -> tuple[Scene, np.random.Generator]:
    seed = config.synthetic.seed
    scene = walk_scene(
        draw_identity(seed, identity),
        draw_walk(seed, identity, walk),
        config.radar,
        config.num_frames,
        noise=noise,
    )
    return scene, np.random.default_rng([seed, identity, walk, 2])


def chirp_times(radar: RadarConfig, num_frames: int) -> np.ndarray:
    """Start time of every chirp, (F, C), s."""
    frames = np.arange(num_frames)[:, None] * radar.frame_period_s
    return frames + np.arange(radar.num_chirps)[None, :] * radar.chirp_period_s


def ellipsoid_rcs(
    radius: np.ndarray, half_length: np.ndarray, cos_aspect: np.ndarray
) -> np.ndarray:
    """Radar cross-section of a prolate ellipsoid seen at an aspect angle, m².

    σ = π·a⁴·c² / (a²·sin²θ + c²·cos²θ)²  (a = b = radius, c = half length, θ between the
    ellipsoid's long axis and the line of sight; Chen, *The Micro-Doppler Effect in Radar*, §4).
    """
    cos2 = cos_aspect**2
    return (
        np.pi * radius**4 * half_length**2 / (radius**2 * (1 - cos2) + half_length**2 * cos2) ** 2
    )


def walk_scene(
    identity: Identity, walk: Walk, radar: RadarConfig, num_frames: int, *, noise: bool = True
) -> Scene:
    """Body and clutter returns of one synthetic walk at every chirp of `num_frames` frames."""
    times = chirp_times(radar, num_frames).reshape(-1)
    body = body_scatterers(identity, walk, times)
    radar_position = np.array([0.0, 0.0, radar.mount_height_m])
    gain = 10 ** (walk.snr_db / 20) / np.sqrt(
        ellipsoid_rcs(np.array(0.15), np.array(0.25), np.array(0.0))
    )
    line = body.centre - radar_position  # (M, P, 3)
    distance = np.linalg.norm(line, axis=-1)
    cos_aspect = np.einsum("mpi,mpi->mp", line, body.axis) / distance
    rcs = ellipsoid_rcs(body.radius, body.half_length, cos_aspect)
    amplitude = gain * body.reflectivity * np.sqrt(rcs) * (REFERENCE_RANGE_M / distance) ** 2

    clutter = np.array(walk.clutter_xy_m, dtype=np.float64).reshape(-1, 2)
    clutter_line = np.column_stack([clutter, np.full(len(clutter), -radar.mount_height_m / 2)])
    clutter_distance = np.linalg.norm(clutter_line, axis=-1)
    clutter_amplitude = (
        gain
        * np.sqrt(np.asarray(walk.clutter_rcs_m2))
        * (REFERENCE_RANGE_M / clutter_distance) ** 2
    )
    return Scene(
        range_m=distance,
        amplitude=amplitude,
        direction_cosine=line[..., 0] / distance,
        static_range_m=clutter_distance,
        static_amplitude=clutter_amplitude,
        static_direction_cosine=clutter_line[:, 0] / clutter_distance,
        num_frames=num_frames,
        num_chirps=radar.num_chirps,
        noise=noise,
    )


def point_scene(
    radar: RadarConfig,
    num_frames: int,
    range_m: float,
    velocity_m_s: float,
    amplitude: float = 10.0,
    *,
    noise: bool = False,
) -> Scene:
    """One point scatterer at `range_m` moving radially at `velocity_m_s` (> 0: away), broadside."""
    times = chirp_times(radar, num_frames).reshape(-1, 1)
    ranges = range_m + velocity_m_s * times
    empty = np.zeros(0)
    return Scene(
        ranges,
        np.full_like(ranges, amplitude),
        np.zeros_like(ranges),
        empty,
        empty,
        empty,
        num_frames,
        radar.num_chirps,
        noise,
    )


def synthesize_adc(
    scene: Scene, radar: RadarConfig, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The exact ADC cube of `scene`, (F, C, A, S) complex64, noise-σ units."""
    num_samples, num_rx = radar.num_samples, radar.num_rx
    samples = np.arange(num_samples)
    cube = np.empty((scene.range_m.shape[0], num_rx, num_samples), dtype=np.complex64)
    static = _phasors(
        scene.static_range_m, scene.static_amplitude, scene.static_direction_cosine, radar
    )
    static_beat = np.einsum("qa,qs->as", static[1], np.exp(1j * static[0][:, None] * samples))
    for block in _blocks(scene.range_m.shape[0]):
        omega, phasor = _phasors(
            scene.range_m[block], scene.amplitude[block], scene.direction_cosine[block], radar
        )
        tones = np.exp(1j * omega[..., None] * samples)  # (m, P, S)
        cube[block] = np.einsum("mpa,mps->mas", phasor, tones) + static_beat
    if scene.noise:
        cube += _complex_noise(rng, cube.shape, 1.0)
    return cube.reshape(scene.num_frames, scene.num_chirps, num_rx, num_samples)


def synthesize_range_profiles(
    scene: Scene, radar: RadarConfig, bins: slice, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The Hann-windowed range FFT of `synthesize_adc(scene)`, only in `bins`: (F, C, A, R) complex64."""
    num_samples, num_rx = radar.num_samples, radar.num_rx
    wide = np.arange(bins.start - 1, bins.stop + 1)  # G_j for j ∈ [k0 − 1, k1 + 1]
    # sin(ω/2 − πj/S) = [sin(ω/2), cos(ω/2)] @ [cos(πj/S), −sin(πj/S)]: one matmul, no trig per bin.
    basis = np.stack([np.cos(np.pi * wide / num_samples), -np.sin(np.pi * wide / num_samples)])
    bin_phase = np.exp(1j * np.pi * wide / num_samples)

    def profiles(ranges: np.ndarray, amplitudes: np.ndarray, cosines: np.ndarray) -> np.ndarray:
        omega, phasor = _phasors(ranges, amplitudes, cosines, radar)  # (m, P), (m, P, A)
        half = omega / 2
        coefficient = (
            phasor * (np.exp(1j * half * (num_samples - 1)) * np.sin(num_samples * half))[..., None]
        )
        denominator = np.stack([np.sin(half), np.cos(half)], axis=-1) @ basis  # (m, P, J)
        # A tone exactly on bin j has G_j = S (0/0 above) and G_j' = 0 elsewhere.
        nearest = np.rint(half * num_samples / np.pi)
        on_bin = np.abs(half - nearest * np.pi / num_samples) < 1e-9
        m, p = np.nonzero(on_bin)
        j = nearest[m, p].astype(np.int64) - wide[0]
        inside = (j >= 0) & (j < len(wide))
        m, p, j = m[inside], p[inside], j[inside]
        denominator[m, p, j] = np.inf
        reciprocal = np.reciprocal(denominator, out=denominator)
        stacked = coefficient.transpose(0, 2, 1)  # (m, A, P)
        real_imag = np.concatenate([stacked.real, stacked.imag], axis=1) @ reciprocal  # (m, 2A, J)
        g = (real_imag[:, :num_rx] + 1j * real_imag[:, num_rx:]) * bin_phase
        np.add.at(g, (m, slice(None), j), num_samples * phasor[m, p])
        return _hann_combine(g)

    num_chirps = scene.range_m.shape[0]
    out = np.empty((num_chirps, radar.num_rx, bins.stop - bins.start), dtype=np.complex64)
    static = profiles(
        scene.static_range_m[None],
        scene.static_amplitude[None],
        scene.static_direction_cosine[None],
    )
    for block in _blocks(num_chirps):
        out[block] = (
            profiles(scene.range_m[block], scene.amplitude[block], scene.direction_cosine[block])
            + static
        )
    if scene.noise:
        white = _complex_noise(rng, (num_chirps, radar.num_rx, len(wide)), float(num_samples))
        out += _hann_combine(white)
    return out.reshape(scene.num_frames, scene.num_chirps, radar.num_rx, -1)


def _phasors(
    ranges: np.ndarray, amplitudes: np.ndarray, cosines: np.ndarray, radar: RadarConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Beat frequency ω_b (rad/sample) and complex amplitude per RX, (..., P) and (..., P, A)."""
    delay = 2 * ranges / SPEED_OF_LIGHT
    omega = 2 * np.pi * radar.slope_hz_per_s * delay / radar.sample_rate_hz
    phase = 2 * np.pi * radar.start_frequency_hz * delay - np.pi * radar.slope_hz_per_s * delay**2
    step = np.exp(1j * np.pi * cosines)  # RX-to-RX phase at λ/2 spacing
    phasor = np.empty((*omega.shape, radar.num_rx), dtype=np.complex128)
    phasor[..., 0] = amplitudes * np.exp(1j * phase)
    for rx in range(1, radar.num_rx):
        phasor[..., rx] = phasor[..., rx - 1] * step
    return omega, phasor


def _hann_combine(g: np.ndarray) -> np.ndarray:
    """½·G_k − ¼·G_{k−1} − ¼·G_{k+1} along the last axis (which holds one extra bin each side)."""
    return 0.5 * g[..., 1:-1] - 0.25 * (g[..., :-2] + g[..., 2:])


def _complex_noise(
    rng: np.random.Generator | None, shape: tuple[int, ...], variance: float
) -> np.ndarray:
    rng = rng if rng is not None else np.random.default_rng()
    scale = np.float32(np.sqrt(variance / 2))
    noise = rng.standard_normal((*shape, 2), dtype=np.float32) * scale
    return noise.view(np.complex64)[..., 0]


def _blocks(total: int) -> list[slice]:
    return [slice(start, min(start + _CHUNK, total)) for start in range(0, total, _CHUNK)]
