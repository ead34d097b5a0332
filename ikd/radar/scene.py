"""Synthetic walkers: a Boulic–Thalmann kinematic gait model, identities and walks.

The walking model follows R. Boulic, N. Magnenat-Thalmann and D. Thalmann, "A global human
walking model with real-time kinematic personification", The Visual Computer 6 (1990), as used
for radar by V. C. Chen, *The Micro-Doppler Effect in Radar* (ch. 4). Joint-angle curves are
periodic functions of the normalised gait phase p ∈ [0, 1) (p = 0 at right heel strike), with
control points that depend on the relative velocity RV = v / Ht (Ht = thigh + shank length):

- cycle length RLc = 1.346·√RV (in Ht), cycle duration Dc = RLc / RV (s), support
  Ds = 0.752·Dc − 0.143; relative support Ds/Dc sets the ankle curve's fourth point;
- pelvis translations (vertical, lateral, forward/back, in Ht) and rotations (list, tilt,
  torsion), hip / knee / ankle flexion, thorax torsion, shoulder and elbow flexion.

Differences from the MIT-licensed Python port (cidcom/human-walking-radar-simulator), written
afresh and vectorised over time: the upper arm has its own length (the port's radar step uses the
thigh length for it), the walker advances RLc·Ht metres per cycle (the port advances RLc metres),
the pelvic list amplitude is a2 = 1.0·RV degrees, so Boulic's curve (which spans ±2·a2) gives the
±3° of measured pelvic obliquity (the port's 0.01·RV degrees is negligible), thigh and shank scale
with the person's leg proportion, and sagittal chains are composed as planar angles (hip, knee and
ankle all rotate about the same axis). Translations are in units of Ht, as Boulic normalises them.
Like the port, the model has no ground contact: the swing toe dips up to ~15 cm below the floor
plane, which moves it a few millimetres in range — far below a range bin.

Identity lives in per-person parameters drawn by `draw_identity`; each walk draws nuisances with
`draw_walk`. Both are pure functions of (seed, identity, walk) and were fixed before any method
was trained: never tune them to make a method win (DESIGN.md §2).

Coordinates: world x to the radar's right (along its RX array), y along boresight, z up; the
radar sits at (0, 0, mount height). Body frame: x forward, y left, z up, origin at the pelvis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

# Segment lengths as fractions of body height (Boulic / Chen).
HEAD, SHOULDER_HALF, TORSO, HIP_HALF = 0.130, 0.259 / 2, 0.288, 0.191 / 2
THIGH, SHANK, FOOT, UPPER_ARM, FOREARM = 0.245, 0.246, 0.143, 0.188, 0.152

# The 16 ellipsoidal body segments of Chen's model: name → (radius in m for a 1.8 m person).
SEGMENTS: dict[str, float] = {
    "head": 0.10,
    "torso": 0.15,
    "left_shoulder": 0.06,
    "right_shoulder": 0.06,
    "left_upper_arm": 0.06,
    "right_upper_arm": 0.06,
    "left_forearm": 0.05,
    "right_forearm": 0.05,
    "left_hip": 0.07,
    "right_hip": 0.07,
    "left_thigh": 0.07,
    "right_thigh": 0.07,
    "left_shank": 0.06,
    "right_shank": 0.06,
    "left_foot": 0.05,
    "right_foot": 0.05,
}
SEGMENT_NAMES = ("head", "torso", *(n for n in SEGMENTS if n not in ("head", "torso")))


@dataclass(frozen=True)
class Identity:
    """One person's gait: everything that identifies them to the radar."""

    index: int
    height_m: float
    leg_fraction: float  # (thigh + shank) / height; Boulic's 0.491 ± a few %
    speed_m_s: float  # preferred walking speed
    stride_scale: float  # multiplies Boulic's cycle length: cadence at a given speed
    arm_swing: float  # multiplies the shoulder-flexion amplitude
    torso_sway: float  # multiplies pelvic list, torsion, lateral sway and thorax torsion
    knee_flex: float  # multiplies knee flexion
    asymmetry: float  # left side amplitudes × (1 + a), right × (1 − a); also a phase lag
    reflectivity: tuple[float, ...]  # per segment of SEGMENT_NAMES: clothing, body shape

    @property
    def leg_length_m(self) -> float:
        return self.height_m * self.leg_fraction

    @property
    def relative_velocity(self) -> float:
        return self.speed_m_s / self.leg_length_m


@dataclass(frozen=True)
class Walk:
    """One walk's nuisances: where, which way, how loud; nothing here identifies the walker."""

    identity: int
    index: int
    toward: bool  # toward the radar (else away)
    start_range_m: float  # ground distance from the radar at t = 0
    heading_rad: float  # deviation of the walking direction from the radial line
    lateral_offset_m: float  # x of the start point
    speed_jitter: float  # multiplies the identity's speed
    snr_db: float  # per-ADC-sample SNR of a broadside torso at 3 m
    phase0: float  # gait phase at t = 0
    clutter_xy_m: tuple[tuple[float, float], ...]  # static reflectors (furniture, 0.75 m high)
    clutter_rcs_m2: tuple[float, ...]


@dataclass(frozen=True)
class BodyScatterers:
    """Ellipsoidal scatterers over slow time.

    Attributes:
        centre: (M, P, 3) segment centres, m, world frame.
        axis: (M, P, 3) unit vectors along each segment's long axis.
        radius: (P,) ellipsoid equatorial radii, m.
        half_length: (P,) ellipsoid half lengths along the axis, m.
        reflectivity: (P,) amplitude multipliers.
    """

    centre: np.ndarray
    axis: np.ndarray
    radius: np.ndarray
    half_length: np.ndarray
    reflectivity: np.ndarray


def draw_identity(seed: int, index: int) -> Identity:
    """The `index`-th synthetic person of dataset `seed` (independent of how many are drawn)."""
    rng = np.random.default_rng([seed, index, 0])
    return Identity(
        index=index,
        height_m=float(rng.uniform(1.55, 1.95)),
        leg_fraction=float(0.491 * rng.uniform(0.96, 1.04)),
        speed_m_s=float(rng.uniform(0.95, 1.55)),
        stride_scale=float(rng.uniform(0.88, 1.12)),
        arm_swing=float(rng.uniform(0.5, 1.5)),
        torso_sway=float(rng.uniform(0.5, 1.6)),
        knee_flex=float(rng.uniform(0.85, 1.15)),
        asymmetry=float(rng.uniform(-0.15, 0.15)),
        reflectivity=tuple(float(r) for r in rng.lognormal(0.0, 0.3, len(SEGMENT_NAMES))),
    )


def draw_walk(seed: int, identity: int, index: int) -> Walk:
    """The `index`-th walk of `identity`: alternately toward and away from the radar."""
    rng = np.random.default_rng([seed, identity, index, 1])
    toward = index % 2 == 0
    num_clutter = int(rng.integers(3, 9))
    clutter_range = rng.uniform(1.0, 9.0, num_clutter)
    clutter_angle = rng.uniform(-0.6, 0.6, num_clutter)
    return Walk(
        identity=identity,
        index=index,
        toward=toward,
        # ≤ 1.61 m/s for ≤ 4.5 s: walks stay inside 1.4–8.6 m, the DSP's band with margin.
        start_range_m=float(rng.uniform(8.0, 8.6) if toward else rng.uniform(1.4, 2.0)),
        heading_rad=float(np.deg2rad(rng.uniform(-12.0, 12.0))),
        lateral_offset_m=float(rng.uniform(-0.5, 0.5)),
        speed_jitter=float(rng.uniform(0.96, 1.04)),
        snr_db=float(rng.uniform(-4.0, 6.0)),  # torso at 3 m; ~16–26 dB in the spectrogram at 8 m
        phase0=float(rng.uniform(0.0, 1.0)),
        clutter_xy_m=tuple(
            (float(r * np.sin(a)), float(r * np.cos(a)))
            for r, a in zip(clutter_range, clutter_angle, strict=True)
        ),
        clutter_rcs_m2=tuple(float(x) for x in 10 ** rng.uniform(-1.0, 1.0, num_clutter)),
    )


def gait_cycle_s(identity: Identity, walk: Walk) -> float:
    """Duration of one gait cycle, s: RLc·Ht / v with Boulic's RLc = 1.346·√RV."""
    speed = identity.speed_m_s * walk.speed_jitter
    relative_velocity = speed / identity.leg_length_m
    cycle_length = (
        1.346 * np.sqrt(relative_velocity) * identity.stride_scale * identity.leg_length_m
    )
    return float(cycle_length / speed)


def joint_positions(identity: Identity, walk: Walk, times: np.ndarray) -> dict[str, np.ndarray]:
    """World positions of the body's joints at `times` (any shape (...)), each (..., 3), m."""
    times = np.asarray(times, dtype=np.float64)
    speed = identity.speed_m_s * walk.speed_jitter
    height, leg = identity.height_m, identity.leg_length_m
    leg_scale = identity.leg_fraction / (THIGH + SHANK)  # thigh + shank = the leg length
    rv = speed / leg
    if not 0.5 <= rv <= 3.0:
        raise ValueError(f"relative velocity {rv:.2f} outside Boulic's walking range [0.5, 3]")
    cycle = gait_cycle_s(identity, walk)
    duty = (0.752 * cycle - 0.143) / cycle  # relative duration of support
    phase = walk.phase0 + times / cycle
    right, left = phase % 1.0, (phase + 0.5 + 0.03 * identity.asymmetry) % 1.0
    curves = _GaitCurves(rv, duty)
    sway = identity.torso_sway

    # Pelvis: translations (in Ht) and rotations (degrees), all periodic in the phase.
    vertical = leg * 0.015 * rv * (np.sin(2 * np.pi * (2 * right - 0.35)) - 1)
    lateral = leg * -0.032 * sway * np.sin(2 * np.pi * (right - 0.1))
    surge = leg * -0.021 * np.sin(2 * np.pi * (2 * right + 2 * (0.625 - duty)))
    tilt = np.deg2rad(-2.0 + 2.0 * np.sin(2 * np.pi * (2 * right - 0.1)))
    pelvic_list = np.deg2rad(sway * _pelvic_list(right, 1.0 * rv))
    torsion = np.deg2rad(-4.0 * rv * sway * np.cos(2 * np.pi * right))
    thorax = np.deg2rad(sway * curves.thorax(right))
    pelvis_rotation = _rot_z(torsion) @ _rot_x(pelvic_list)
    thorax_rotation = _rot_y(tilt) @ _rot_z(thorax)

    joints: dict[str, np.ndarray] = {}
    for side, side_phase, sign, gain in (
        ("right", right, -1.0, 1 - identity.asymmetry),
        ("left", left, 1.0, 1 + identity.asymmetry),
    ):
        # Legs: hip, knee and ankle all flex about the body's y axis, so the chain is planar.
        thigh_angle = np.deg2rad(gain * curves.hip(side_phase))
        shank_angle = thigh_angle - np.deg2rad(gain * identity.knee_flex * curves.knee(side_phase))
        foot_angle = shank_angle + np.deg2rad(curves.ankle(side_phase))
        hip = _vec(0.0 * times, sign * HIP_HALF * height + 0.0 * times, 0.0 * times)
        knee = hip + THIGH * leg_scale * height * _sagittal(thigh_angle, down=True)
        ankle = knee + SHANK * leg_scale * height * _sagittal(shank_angle, down=True)
        toe = ankle + FOOT * height * _sagittal(foot_angle, down=False)
        for name, point in (("hip", hip), ("knee", knee), ("ankle", ankle), ("toe", toe)):
            joints[f"{side}_{name}"] = _apply(pelvis_rotation, point)
        # Arms swing against the same side's leg; the elbow flexes forward.
        amplitude = 9.88 * rv * identity.arm_swing * gain
        shoulder_angle = np.deg2rad(3 - amplitude / 2 - amplitude * np.cos(2 * np.pi * side_phase))
        forearm_angle = shoulder_angle + np.deg2rad(curves.elbow(side_phase))
        shoulder = _vec(
            0.0 * times, sign * SHOULDER_HALF * height + 0.0 * times, TORSO * height + 0.0 * times
        )
        elbow = shoulder + UPPER_ARM * height * _sagittal(shoulder_angle, down=True)
        hand = elbow + FOREARM * height * _sagittal(forearm_angle, down=True)
        for name, point in (("shoulder", shoulder), ("elbow", elbow), ("hand", hand)):
            joints[f"{side}_{name}"] = _apply(thorax_rotation, point)
    zero = 0.0 * times
    joints["base"] = _vec(zero, zero, zero)
    joints["neck"] = _apply(thorax_rotation, _vec(zero, zero, TORSO * height + zero))
    joints["head"] = _apply(thorax_rotation, _vec(zero, zero, (TORSO + HEAD) * height + zero))

    # Place the body in the world: pelvis at leg height, advancing along the heading.
    direction = -1.0 if walk.toward else 1.0
    forward = np.array([np.sin(walk.heading_rad), direction * np.cos(walk.heading_rad), 0.0])
    left_dir = np.array([-forward[1], forward[0], 0.0])
    up = np.array([0.0, 0.0, 1.0])
    start = np.array([walk.lateral_offset_m, walk.start_range_m, leg])
    progress = speed * times + surge
    origin = start + progress[..., None] * forward + lateral[..., None] * left_dir
    origin = origin + vertical[..., None] * up
    frame = np.stack([forward, left_dir, up], axis=-1)  # body → world rotation (3, 3)
    return {name: origin + point @ frame.T for name, point in joints.items()}


def body_scatterers(identity: Identity, walk: Walk, times: np.ndarray) -> BodyScatterers:
    """The 16 ellipsoidal segments of Chen's model (head … feet) at `times` (M,), s."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    j = joint_positions(identity, walk, times)
    pairs = {  # segment → (end a, end b); centre is the midpoint, axis runs a → b
        "head": ("neck", "head"),
        "torso": ("base", "neck"),
        **{f"{s}_shoulder": ("neck", f"{s}_shoulder") for s in ("left", "right")},
        **{f"{s}_upper_arm": (f"{s}_shoulder", f"{s}_elbow") for s in ("left", "right")},
        **{f"{s}_forearm": (f"{s}_elbow", f"{s}_hand") for s in ("left", "right")},
        **{f"{s}_hip": ("base", f"{s}_hip") for s in ("left", "right")},
        **{f"{s}_thigh": (f"{s}_hip", f"{s}_knee") for s in ("left", "right")},
        **{f"{s}_shank": (f"{s}_knee", f"{s}_ankle") for s in ("left", "right")},
        **{f"{s}_foot": (f"{s}_ankle", f"{s}_toe") for s in ("left", "right")},
    }
    ends_a = np.stack([j[pairs[n][0]] for n in SEGMENT_NAMES], axis=-2)  # (M, P, 3)
    ends_b = np.stack([j[pairs[n][1]] for n in SEGMENT_NAMES], axis=-2)
    span = ends_b - ends_a
    length = np.linalg.norm(span, axis=-1, keepdims=True)
    scale = identity.height_m / 1.8
    return BodyScatterers(
        centre=(ends_a + ends_b) / 2,
        axis=span / np.maximum(length, 1e-9),
        radius=np.array([SEGMENTS[n] * scale for n in SEGMENT_NAMES]),
        half_length=length[0, :, 0] / 2,  # segments are rigid
        reflectivity=np.asarray(identity.reflectivity, dtype=np.float64),
    )


class _GaitCurves:
    """Boulic's joint-angle curves (degrees) for relative velocity rv (gaits 'b' and 'c')."""

    def __init__(self, rv: float, duty: float) -> None:
        k = max(rv - 1.3, 0.0) / 1.7  # 0 at the b/c boundary, 1 at rv = 3
        b = min(max(rv - 0.5, 0.0), 0.8) / 0.8  # elbow's slow-gait interpolation
        self.hip = _periodic([0.2 * k - 0.1, 0.5, 0.9], [5 * k + 25, -15, 6 * k + 25])
        self.knee = _periodic(
            [-0.05 * k + 0.17, 0.4, -0.05 * k + 0.75, -0.03 * k + 1.0],
            [22 * k + 3, 3, -5 * k + 70, 3 * k + 3],
        )
        self.ankle = _periodic(
            [0.0, 0.08, -0.1 * k + 0.5, duty, 0.85],
            [5 * k - 3, 4 * k - 18, -3 * k + 8, -8 * k - 20, 5 * k - 3],
        )
        self.thorax = _periodic(
            [0.1, 0.4, 0.6, 0.9], [4 / 3 * rv, -4.5 / 3 * rv, -4 / 3 * rv, 4.5 / 3 * rv]
        )
        if rv < 1.3:
            self.elbow = _periodic([0.05, 0.01 * b + 0.5, 0.9], [8 * b + 6, 24 * b + 20, 9 * b + 8])
        else:
            self.elbow = _periodic(
                [0.05, 0.04 * k + 0.51, -0.1 * k + 0.9], [-6 * k + 14, 26 * k + 44, -6 * k + 17]
            )


def _periodic(xs: list[float], ys: list[float]) -> PchipInterpolator:
    """A period-1 shape-preserving cubic through control points (x mod 1, y)."""
    x = np.mod(np.asarray(xs, dtype=np.float64), 1.0)
    y = np.asarray(ys, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    keep = np.concatenate([[True], np.diff(x) > 1e-6])  # coincident points (x and x ± 1)
    x, y = x[keep], y[keep]
    if x[-1] - x[0] > 1 - 1e-6:
        x, y = x[:-1], y[:-1]
    return PchipInterpolator(np.concatenate([x - 1, x, x + 1]), np.tile(y, 3))


def _pelvic_list(p: np.ndarray, a2: float) -> np.ndarray:
    """Boulic's piecewise pelvic list (rotation left/right), degrees."""
    return np.select(
        [p < 0.15, p < 0.5, p < 0.65],
        [
            -a2 + a2 * np.cos(2 * np.pi * 10 * p / 3),
            -a2 - a2 * np.cos(2 * np.pi * 10 * (p - 0.15) / 7),
            a2 - a2 * np.cos(2 * np.pi * 10 * (p - 0.5) / 3),
        ],
        a2 + a2 * np.cos(2 * np.pi * 10 * (p - 0.65) / 7),
    )


def _vec(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def _sagittal(angle: np.ndarray, *, down: bool) -> np.ndarray:
    """Unit vector in the body's x–z plane: a limb hanging down (or a foot pointing forward)
    rotated forward by `angle` radians."""
    zero = 0.0 * angle
    if down:
        return _vec(np.sin(angle), zero, -np.cos(angle))
    return _vec(np.cos(angle), zero, np.sin(angle))


def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack(
        [np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2
    )


def _rot_y(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack(
        [np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2
    )


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack(
        [np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2
    )


def _apply(rotation: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Rotate (..., 3) points by (..., 3, 3) matrices."""
    return np.einsum("...ij,...j->...i", rotation, point)
