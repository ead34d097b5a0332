"""Open-set scores (`ikd.openset`): the gallery of enrolled people, the four capture scores and
the metrics that compare them, on embeddings and logits made up to the purpose."""

import numpy as np
import pytest

from ikd.errors import UserError
from ikd.openset import (
    SCORES,
    Gallery,
    auroc,
    capture_scores,
    rejected_at_acceptance,
    threshold_at,
)

NAMES = ("ana", "ben", "cyd")


def _people(rng, centres, windows=40, spread=(1.0, 0.1)):
    """Windows of one person per centre: wide along axis 0, narrow along axis 1."""
    embeddings = np.concatenate(
        [centre + rng.normal(0, spread, (windows, 2)) for centre in centres]
    )
    return embeddings, np.repeat(np.arange(len(centres)), windows)


def test_the_gallery_holds_each_persons_mean_and_the_shared_spread():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 3.0], [0.0, -3.0], [3.0, 0.0]])
    embeddings, labels = _people(rng, centres)
    gallery = Gallery.fit(embeddings, labels, NAMES)
    assert gallery.names == NAMES and gallery.counts.tolist() == [40, 40, 40]
    assert np.abs(gallery.means - centres).max() < 0.4
    # a capture 1.5 along the axis people vary in (their own spread: 1) is nearer ana, by
    # Mahalanobis, than one 0.5 along the axis they hardly vary in (0.1): ~2.4 against ~4.2
    along_spread, across = np.array([1.5, 3.0]), np.array([0.0, 3.5])
    assert gallery.mahalanobis(along_spread)[0] < gallery.mahalanobis(across)[0]
    assert np.linalg.norm(along_spread - centres[0]) > np.linalg.norm(across - centres[0])
    again = Gallery.from_bytes(gallery.to_bytes())
    assert again.names == gallery.names
    assert np.array_equal(again.means, gallery.means)
    assert np.array_equal(again.precision, gallery.precision)
    with pytest.raises(UserError, match=r"no windows of \['cyd'\]"):
        Gallery.fit(embeddings[labels < 2], labels[labels < 2], NAMES)


def test_a_person_enrolled_after_training_is_named_and_removed_again():
    rng = np.random.default_rng(1)
    embeddings, labels = _people(rng, [[0.0, 3.0], [0.0, -3.0], [3.0, 0.0]])
    gallery = Gallery.fit(embeddings, labels, NAMES)
    newcomer, _ = _people(rng, [[-3.0, 0.0]], windows=8)
    logits = rng.normal(0, 1, (8, 3))  # the classifier knows three people only
    before = capture_scores(logits, newcomer, gallery)
    enrolled = gallery.enroll("dee", newcomer[:4])  # from one capture's windows
    after = capture_scores(logits, newcomer[4:], enrolled)
    for score in ("cosine", "mahalanobis"):
        assert enrolled.names[after[score][0]] == "dee"
        assert after[score][1] > before[score][1]
    assert np.array_equal(enrolled.precision, gallery.precision)  # the shared spread is kept
    assert enrolled.remove("dee").names == NAMES
    # who was enrolled, kept through removals and the file: ana removed and enrolled again is
    # an enrolled person now
    again = Gallery.from_bytes(enrolled.remove("ana").enroll("ana", newcomer).to_bytes())
    assert again.names == ("ben", "cyd", "dee", "ana")
    assert again.enrolled.tolist() == [False, False, True, True]
    assert not gallery.enrolled.any()
    with pytest.raises(UserError, match="'ana' is enrolled already"):
        gallery.enroll("ana", newcomer)
    with pytest.raises(UserError, match="no gait windows to enrol 'eve'"):
        gallery.enroll("eve", np.zeros((0, 2)))
    with pytest.raises(UserError, match="'eve' is not enrolled"):
        gallery.remove("eve")


def test_each_score_ranks_a_known_capture_above_a_stranger():
    rng = np.random.default_rng(2)
    embeddings, labels = _people(rng, [[0.0, 3.0], [0.0, -3.0], [3.0, 0.0]])
    gallery = Gallery.fit(embeddings, labels, NAMES)
    known_windows, _ = _people(rng, [[3.0, 0.0]], windows=6)
    confident = np.tile([0.0, 0.0, 6.0], (6, 1)) + rng.normal(0, 0.1, (6, 3))
    stranger_windows, _ = _people(rng, [[-6.0, 0.5]], windows=6)
    flat = rng.normal(0, 0.1, (6, 3))
    known = capture_scores(confident, known_windows, gallery)
    stranger = capture_scores(flat, stranger_windows, gallery)
    assert set(known) == set(SCORES)
    for score in SCORES:
        assert known[score][1] > stranger[score][1], score
        assert known[score][0] == 2, score  # cyd
    # the first score is the one `ikd identify` has used: softmax of the mean log-probability
    mean_log_probs = (confident - np.log(np.exp(confident).sum(1, keepdims=True))).mean(0)
    expected = np.exp(mean_log_probs).max() / np.exp(mean_log_probs).sum()
    assert known["max_probability"][1] == pytest.approx(expected)
    assert set(capture_scores(confident, known_windows)) == {"max_probability", "energy"}


def test_the_threshold_is_the_largest_that_95_percent_reach():
    twenty = np.arange(1, 21) / 20  # 0.05 … 1.00
    assert threshold_at(twenty) == 0.10  # 19 of 20 reach it; 0.15 would accept 18
    assert threshold_at(np.arange(1, 11) / 10) == 0.1  # of 10, 95 % means all 10
    assert threshold_at([0.7, 0.2, 0.9], accept=2 / 3) == 0.7
    with pytest.raises(UserError, match="no known captures"):
        threshold_at([])


def test_auroc_and_rejection_at_the_acceptance_the_threshold_keeps():
    known = np.arange(1, 21) / 20
    assert auroc(known, known - 10) == 1.0
    assert auroc(known, known + 10) == 0.0
    assert auroc(known, known) == 0.5  # ties count half
    assert auroc([0.3, 0.6], [0.4]) == 0.5
    # the threshold keeps 19 of 20 known (0.10): strangers below it are rejected
    assert rejected_at_acceptance(known, [0.01, 0.05, 0.09, 0.10, 0.5]) == 0.6
    with pytest.raises(UserError, match="needs known and stranger"):
        auroc(known, [])
