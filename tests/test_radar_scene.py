"""Walker kinematics sanity, and identity really living in the synthetic signal."""

import numpy as np
import pytest

from ikd.config import load_config
from ikd.radar import dsp
from ikd.radar.scene import body_scatterers, draw_identity, draw_walk, gait_cycle_s, joint_positions
from ikd.radar.simulate import simulate_walk


def test_identities_and_walks_are_pure_functions_of_their_seeds():
    assert draw_identity(0, 5) == draw_identity(0, 5)
    assert draw_identity(0, 5) != draw_identity(1, 5)
    assert draw_walk(0, 5, 2) == draw_walk(0, 5, 2)
    assert draw_walk(0, 5, 0).toward and not draw_walk(0, 5, 1).toward


@pytest.mark.parametrize("identity", range(4))
def test_legs_are_periodic_in_the_gait_cycle(identity):
    person, walk = draw_identity(0, identity), draw_walk(0, identity, 0)
    cycle = gait_cycle_s(person, walk)
    times = np.linspace(0.0, 1.0, 50)
    now, later = joint_positions(person, walk, times), joint_positions(person, walk, times + cycle)
    for joint in ("left_knee", "right_ankle", "left_toe", "right_hand"):
        relative_now = now[joint] - now["base"]
        relative_later = later[joint] - later["base"]
        assert np.abs(relative_now - relative_later).max() < 1e-9
    # ... and actually move: the ankle sweeps tens of centimetres over a cycle.
    sweep = (now["right_ankle"] - now["base"])[:, :2]
    assert np.ptp(np.linalg.norm(sweep, axis=1)) > 0.1


@pytest.mark.parametrize("identity", range(4))
def test_the_walker_advances_at_its_speed(identity):
    person, walk = draw_identity(0, identity), draw_walk(0, identity, 0)
    cycle = gait_cycle_s(person, walk)
    times = np.array([0.0, 3 * cycle])
    base = joint_positions(person, walk, times)["base"]
    speed = np.linalg.norm(base[1, :2] - base[0, :2]) / times[1]
    assert speed == pytest.approx(person.speed_m_s * walk.speed_jitter, rel=1e-6)
    assert 0.7 < 1 / cycle < 1.1  # 84–132 steps per minute: a normal walking cadence


def test_walking_toward_the_radar_reduces_the_range():
    person = draw_identity(0, 0)
    for index in (0, 1):
        walk = draw_walk(0, 0, index)
        body = body_scatterers(person, walk, np.array([0.0, 3.0]))
        ranges = np.linalg.norm(body.centre[:, 1], axis=-1)  # the torso
        assert (ranges[1] < ranges[0]) == walk.toward


def _velocity_profile(spectrogram):
    """Time-averaged Doppler magnitude above the noise floor, normalised: which speeds the body shows."""
    profile = spectrogram.mean(axis=1)
    profile = np.clip(profile - np.median(profile), 0, None)
    return profile / profile.sum()


def test_two_identities_differ_more_than_two_walks_of_one():
    """Nearest-centroid over velocity profiles of toward walks: identity lives in the signal."""
    config = load_config("laptop", warn=False)
    identities, walks = range(4), (0, 2, 4, 6)  # toward walks only: direction is a nuisance
    features = {}
    for identity in identities:
        for walk in walks:
            spectrogram = dsp.walk_spectrogram(
                simulate_walk(config, identity, walk), config.radar, config.dsp
            )
            features[identity, walk] = _velocity_profile(spectrogram)
    within, between, correct = [], [], 0
    for (identity, walk), feature in features.items():
        centroids = {
            other: np.mean(
                [features[other, w] for w in walks if (other, w) != (identity, walk)], axis=0
            )
            for other in identities
        }
        distances = {other: np.linalg.norm(feature - c) for other, c in centroids.items()}
        correct += min(distances, key=distances.get) == identity
        within.append(distances[identity])
        between.extend(d for other, d in distances.items() if other != identity)
    assert np.mean(within) < 0.5 * np.mean(between)
    assert correct / len(features) >= 0.75  # chance is 0.25


def test_legs_and_arms_swing_in_antiphase():
    person, walk = draw_identity(0, 2), draw_walk(0, 2, 0)
    times = np.linspace(0.0, 2 * gait_cycle_s(person, walk), 400)
    joints = joint_positions(person, walk, times)
    direction = joints["base"][-1] - joints["base"][0]
    direction /= np.linalg.norm(direction)

    def swing(joint):
        return (joints[joint] - joints["base"]) @ direction

    assert np.corrcoef(swing("left_ankle"), swing("right_ankle"))[0, 1] < -0.8
    assert np.corrcoef(swing("left_hand"), swing("right_hand"))[0, 1] < -0.8
    assert np.corrcoef(swing("left_hand"), swing("left_ankle"))[0, 1] < -0.5  # arm against leg


def test_leg_length_follows_the_leg_proportion():
    person = draw_identity(0, 7)
    joints = joint_positions(person, draw_walk(0, 7, 0), np.array([0.0]))
    thigh = np.linalg.norm(joints["left_knee"] - joints["left_hip"])
    shank = np.linalg.norm(joints["left_ankle"] - joints["left_knee"])
    assert thigh + shank == pytest.approx(person.leg_length_m, rel=1e-9)


def test_every_walk_stays_inside_the_range_band():
    config = load_config("paper", ["synthetic.walk_duration_s=4.5"], warn=False)
    times = np.linspace(0.0, 4.5, 10)
    for identity in range(config.synthetic.num_identities):
        for index in (0, 1):
            body = body_scatterers(draw_identity(0, identity), draw_walk(0, identity, index), times)
            ranges = np.linalg.norm(body.centre - [0.0, 0.0, config.radar.mount_height_m], axis=-1)
            assert (
                config.dsp.range_min_m + 0.3 < ranges.min()
                and ranges.max() < config.dsp.range_max_m - 0.3
            )
