"""Synthetic webcam faces of the synthetic walkers, rendered per video frame.

Identity lives in per-person geometry (face shape, eye spacing and size, nose, mouth, hairline),
colours (skin, hair, eyes, lips) and features (glasses, beard, brows), drawn by `draw_face` from
the same `(seed, identity)` as the walker. Each frame draws nuisances: head pose (yaw shifts and
foreshortens the features, roll rotates the face), scale and position jitter, lighting
(brightness, a directional gradient, colour temperature), blur, sensor noise, and occasionally an
occluder or no face at all. Faces are already aligned (as MTCNN would align them); a frame without
a face returns None and its pair is dropped.

The nuisance ranges below were fixed before any gait method was trained (DESIGN.md §3): faces
must identify far better than gait, but not trivially. Never adjust them to favour a method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

NO_FACE_PROBABILITY = 0.03  # the person looked away / left the frame
OCCLUSION_PROBABILITY = 0.12  # a hand, a cup, a passer-by
MAX_YAW_DEG, MAX_ROLL_DEG = 30.0, 12.0
BRIGHTNESS = (0.55, 1.35)
MAX_BLUR_PX_AT_160 = 2.0
MAX_NOISE = 0.08


@dataclass(frozen=True)
class Face:
    """One person's face: geometry in units of the image half-size, colours in RGB [0, 1]."""

    identity: int
    width: float
    height: float
    roundness: float  # super-ellipse exponent of the face outline
    eye_spacing: float
    eye_height: float
    eye_size: float
    brow_gap: float
    brow_tilt: float
    nose_length: float
    nose_width: float
    mouth_width: float
    mouth_height: float
    hairline: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    glasses: bool
    beard: bool


def draw_face(seed: int, identity: int) -> Face:
    """The face of synthetic person `identity` (the walker with the same seed and index)."""
    rng = np.random.default_rng([seed, identity, 3])
    tone = rng.uniform(0.25, 0.95)
    skin = np.array([0.95, 0.78, 0.66]) * tone + np.array([0.35, 0.22, 0.16]) * (1 - tone)
    skin = np.clip(skin * rng.uniform(0.95, 1.05, 3), 0, 1)
    hair = rng.choice(
        [
            [0.08, 0.06, 0.05],
            [0.35, 0.22, 0.12],
            [0.75, 0.6, 0.35],
            [0.55, 0.2, 0.1],
            [0.6, 0.6, 0.6],
        ]
    )
    return Face(
        identity=identity,
        width=float(rng.uniform(0.48, 0.66)),
        height=float(rng.uniform(0.66, 0.82)),
        roundness=float(rng.uniform(1.8, 2.8)),
        eye_spacing=float(rng.uniform(0.17, 0.27)),
        eye_height=float(rng.uniform(-0.2, -0.06)),
        eye_size=float(rng.uniform(0.05, 0.085)),
        brow_gap=float(rng.uniform(0.07, 0.13)),
        brow_tilt=float(rng.uniform(-0.25, 0.25)),
        nose_length=float(rng.uniform(0.12, 0.24)),
        nose_width=float(rng.uniform(0.04, 0.09)),
        mouth_width=float(rng.uniform(0.12, 0.26)),
        mouth_height=float(rng.uniform(0.3, 0.46)),
        hairline=float(rng.uniform(-0.72, -0.42)),
        skin=tuple(float(c) for c in skin),
        hair=tuple(float(c) for c in np.clip(hair * rng.uniform(0.85, 1.15, 3), 0, 1)),
        iris=tuple(
            float(c)
            for c in rng.choice(
                [[0.3, 0.2, 0.1], [0.2, 0.4, 0.7], [0.3, 0.5, 0.3], [0.15, 0.1, 0.08]]
            )
        ),
        lips=tuple(
            float(c)
            for c in np.clip(skin * np.array([1.0, 0.7, 0.72]) * rng.uniform(0.75, 1.0), 0, 1)
        ),
        glasses=bool(rng.random() < 0.25),
        beard=bool(rng.random() < 0.25),
    )


def walk_phase(seed: int, identity: int, walk: int) -> float:
    """Phase of the slow head turn during one walk, in cycles."""
    return float(np.random.default_rng([seed, identity, walk, 4]).random())


def frame_seed(seed: int, identity: int, walk: int, frame: int) -> list[int]:
    """Seed of one webcam frame's nuisances; frames are independent and reproducible."""
    return [seed, identity, walk, 5, frame]


def render_face(
    face: Face, size: int, rng: np.random.Generator, time_s: float = 0.0, head_phase: float = 0.0
) -> np.ndarray | None:
    """Render one webcam frame of `face`, or None when no face is visible.

    Args:
        size: output side in pixels (the preset's face size; InceptionResnetV1 needs ≥ 80).
        rng: the frame's nuisance generator (see `frame_seed`).
        time_s, head_phase: the head turns slowly during a walk, yaw = 0.6·max·sin(2π(t/3 s + φ)).

    Returns:
        (3, size, size) uint8 RGB, or None.
    """
    if rng.random() < NO_FACE_PROBABILITY:
        return None
    yaw = np.deg2rad(
        0.6 * MAX_YAW_DEG * np.sin(2 * np.pi * (time_s / 3.0 + head_phase))
        + rng.uniform(-0.4, 0.4) * MAX_YAW_DEG
    )
    roll = np.deg2rad(rng.uniform(-MAX_ROLL_DEG, MAX_ROLL_DEG))
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.06, 0.06, 2)
    v, u = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    cos_r, sin_r = np.cos(roll), np.sin(roll)
    x = ((u - shift[0]) * cos_r + (v - shift[1]) * sin_r) / scale
    y = (-(u - shift[0]) * sin_r + (v - shift[1]) * cos_r) / scale
    edge = 2.5 / size  # anti-aliasing width

    def inside(distance: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(np.clip(distance / edge, -30, 30)))

    background = rng.uniform(0.1, 0.9, 3)
    image = np.broadcast_to(background[:, None, None], (3, size, size)).copy()
    image += 0.15 * (rng.random() - 0.5) * v

    def paint(mask: np.ndarray, colour: tuple[float, float, float] | np.ndarray) -> None:
        image[:] = image * (1 - mask) + np.asarray(colour)[:, None, None] * mask

    squeeze = np.cos(yaw)  # foreshortening of the face width
    turn = 0.5 * np.sin(yaw)  # features slide toward the turned side
    outline = (
        np.abs(x / (face.width * squeeze)) ** face.roundness
        + np.abs(y / face.height) ** face.roundness
    ) ** (1 / face.roundness) - 1
    hair_shape = (
        np.abs(x / (face.width * squeeze * 1.12)) ** 2
        + np.abs((y + 0.08) / (face.height * 1.08)) ** 2
    ) ** 0.5 - 1
    paint(inside(hair_shape * 0.3), face.hair)
    paint(inside(outline * 0.3), face.skin)
    paint(inside(outline * 0.3) * inside(y - face.hairline), face.hair)  # hair above the hairline
    if face.beard:
        paint(
            inside(outline * 0.3) * inside(face.mouth_height - 0.08 - y) * 0.85,
            np.asarray(face.hair),
        )
    for side in (-1, 1):
        centre_x = side * face.eye_spacing * squeeze + turn * face.width
        eye = (
            np.hypot((x - centre_x) / (face.eye_size * 1.5), (y - face.eye_height) / face.eye_size)
            - 1
        )
        paint(inside(eye * face.eye_size), (0.95, 0.95, 0.93))
        iris = np.hypot(x - centre_x, y - face.eye_height) - face.eye_size * 0.6
        paint(inside(iris), face.iris)
        paint(
            inside(np.hypot(x - centre_x, y - face.eye_height) - face.eye_size * 0.25),
            (0.02, 0.02, 0.02),
        )
        brow_y = face.eye_height - face.brow_gap + side * face.brow_tilt * (x - centre_x)
        brow = np.maximum(np.abs(y - brow_y) - 0.018, np.abs(x - centre_x) - face.eye_size * 1.7)
        paint(inside(brow), np.asarray(face.hair) * 0.8)
        if face.glasses:
            ring = np.abs(np.hypot(x - centre_x, y - face.eye_height) - face.eye_size * 2.0) - 0.012
            paint(inside(ring), (0.1, 0.1, 0.12))
    nose_x = turn * face.width * 1.3
    nose_top = face.eye_height + 0.04
    nose = np.maximum(
        np.abs(x - nose_x) - face.nose_width * np.clip((y - nose_top) / face.nose_length, 0.2, 1.0),
        np.maximum(nose_top - y, y - nose_top - face.nose_length),
    )
    paint(inside(nose) * 0.5, np.asarray(face.skin) * 0.7)
    mouth = (
        np.hypot(
            (x - turn * face.width) / (face.mouth_width * squeeze), (y - face.mouth_height) / 0.035
        )
        - 1
    )
    paint(inside(mouth * 0.05), face.lips)

    if rng.random() < OCCLUSION_PROBABILITY:
        centre = rng.uniform(-0.5, 0.5, 2)
        half = rng.uniform(0.18, 0.35, 2)
        block = np.maximum(np.abs(u - centre[0]) - half[0], np.abs(v - centre[1]) - half[1])
        paint(inside(block), rng.uniform(0, 1, 3))

    light = rng.uniform(*BRIGHTNESS) * (
        1 + rng.uniform(-0.35, 0.35) * u + rng.uniform(-0.2, 0.2) * v
    )
    image *= light * rng.uniform(0.88, 1.12, 3)[:, None, None]
    blur = rng.uniform(0, MAX_BLUR_PX_AT_160) * size / 160
    if blur > 0.3:
        image = ndimage.gaussian_filter(image, sigma=(0, blur, blur))
    image += rng.normal(0, rng.uniform(0, MAX_NOISE), image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def webcam_frame(
    face: Face, rng: np.random.Generator, time_s: float = 0.0, head_phase: float = 0.0
) -> np.ndarray:
    """A whole 320×240 webcam frame with the face somewhere in it (for exported capture folders,
    which real-data code reads through MTCNN): (240, 320, 3) uint8 RGB."""
    frame = (
        (rng.uniform(0.2, 0.8, 3) * 255 + rng.normal(0, 12, (240, 320, 3)))
        .clip(0, 255)
        .astype(np.uint8)
    )
    crop = render_face(face, 160, rng, time_s, head_phase)
    if crop is not None:
        top, left = int(rng.integers(10, 70)), int(rng.integers(20, 140))
        frame[top : top + 160, left : left + 160] = crop.transpose(1, 2, 0)
    return frame


def walk_frame(
    seed: int,
    identity: int,
    walk: int,
    frame: int,
    frame_rate_hz: float,
    *,
    crop_size: int | None = None,
) -> np.ndarray | None:
    """Video frame `frame` of the synthetic webcam during walk `walk` of person `identity`: the one
    recipe behind both the exported capture folders and the in-stream pairing.

    The frame's nuisances come from `frame_seed`, the slow head turn from `walk_phase`, the time
    from the frame rate, so a frame is a pure function of its arguments.

    Args:
        crop_size: None — the whole frame as exported (`webcam_frame`, (240, 320, 3) uint8, the
            face at 160² somewhere in it, for MTCNN to find); S — the aligned face crop as the
            in-stream pairing stores it (`render_face`, (3, S, S) uint8), or None when the frame
            shows no face.
    """
    face = draw_face(seed, identity)
    rng = np.random.default_rng(frame_seed(seed, identity, walk, frame))
    time_s, head_phase = frame / frame_rate_hz, walk_phase(seed, identity, walk)
    if crop_size is None:
        return webcam_frame(face, rng, time_s, head_phase)
    return render_face(face, crop_size, rng, time_s, head_phase)
