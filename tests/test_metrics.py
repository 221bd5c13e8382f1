"""PCP, PDJ and PCK on hand-made poses with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from deeppose import metrics
from deeppose.metrics import HEAD, L_HIP, L_SHOULDER, NECK, R_ELBOW, R_HIP, R_SHOULDER, STICKS


def upright_person() -> np.ndarray:
    """A stick figure (1, 14, 2): torso 40 x 60, every arm and leg segment 30 long, head 20."""
    joints = np.zeros((14, 2))
    joints[R_SHOULDER], joints[L_SHOULDER] = (40, 0), (0, 0)
    joints[R_HIP], joints[L_HIP] = (40, 60), (0, 60)
    joints[7], joints[6] = (40, 30), (40, 60)  # right elbow, wrist
    joints[10], joints[11] = (0, 30), (0, 60)  # left elbow, wrist
    joints[1], joints[0] = (40, 90), (40, 120)  # right knee, ankle
    joints[4], joints[5] = (0, 90), (0, 120)  # left knee, ankle
    joints[NECK], joints[HEAD] = (20, 0), (20, -20)
    return joints[None]


def test_perfect_prediction_scores_one_everywhere():
    true = upright_person()
    visible = np.ones((1, 14))
    scores = metrics.evaluate(true.copy(), true, visible, visible)
    assert scores == {"loss": 0.0, "pcp": 1.0, "pdj": 1.0, "pck": 1.0}


def test_pcp_counts_a_limb_only_when_both_ends_are_close():
    true = upright_person()
    pred = true.copy()
    pred[0, HEAD] += (0, 11)  # head limb is 20 long: 11 > 0.5 * 20, so the head fails
    pred[0, 6] += (14, 0)  # right wrist: lower arm 30 long, 14 <= 15, still correct
    assert metrics.pcp(pred, true, np.ones((1, 14))) == pytest.approx(9 / 10)


def test_ten_stick_pcp_scores_the_torso_by_its_midpoints_and_skips_occluded_joints():
    true, visible = upright_person(), np.ones((1, 14))
    pred = true.copy()
    pred[0, [R_SHOULDER, L_SHOULDER]] += (0, 25)  # torso (60 long): midpoint 25 off, <= 30: correct
    assert metrics.pcp(pred, true, visible) == pytest.approx(8 / 10)  # both upper arms (30 long) fail
    visible[0, R_ELBOW] = 0  # occluded: both right-arm sticks are not scored
    assert metrics.pcp(pred, true, visible) == pytest.approx(7 / 8)
    pred = true.copy()
    pred[0, [R_HIP, L_HIP]] += (0, 31)  # the hips' midpoint 31 off: torso and both upper legs fail
    assert metrics.pcp(pred, true, np.ones((1, 14))) == pytest.approx(7 / 10)


def test_per_image_shares_add_up_to_the_metrics():
    rng = np.random.default_rng(0)
    true = upright_person().repeat(5, axis=0) + rng.normal(0, 3, (5, 14, 2))
    pred = true + rng.normal(0, 8, true.shape)
    visible = (rng.random((5, 14)) > 0.2).astype(float)
    scored = np.maximum(visible, rng.random((5, 14)) > 0.5)  # visible implies annotated
    shares = {k: np.asarray(v) for k, v in metrics.per_image(pred, true, visible, scored).items()}
    scores = metrics.evaluate(pred, true, visible, scored)
    assert shares["sq_error"].sum() / shares["visible"].sum() == pytest.approx(scores["loss"])
    for name in ("pcp", "pdj", "pck"):
        assert len(shares[f"{name}_hits"]) == 5
        assert shares[f"{name}_hits"].sum() / shares[f"{name}_counted"].sum() == pytest.approx(scores[name])


def test_ten_stick_pcp_scores_occluded_annotated_joints():
    """LSP's convention: an occluded joint is annotated (at an estimated position) and scored; only
    an unannotated joint leaves its sticks out. By hand, on the upright figure (torso 60 long from
    the shoulders' midpoint (20, 0) to the hips' (20, 60), limbs 30, head 20):"""
    true = upright_person()
    visible = np.ones((1, 14))
    visible[0, [R_ELBOW, 4, NECK]] = 0  # right elbow, left knee, neck: occluded
    annotated = np.ones((1, 14))  # ... but annotated, as every LSP joint
    pred = true.copy()
    pred[0, R_ELBOW] += (16, 0)  # 16 > 0.5 x 30: right upper and lower arm fail
    pred[0, 4] += (0, 14)  # left knee 14 <= 15: left upper and lower leg still correct
    pred[0, NECK] += (0, 9)  # neck 9 <= 0.5 x 20: head correct
    pred[0, [R_HIP, L_HIP]] += (0, 29)  # hips' midpoint 29 <= 0.5 x 60: torso correct; 29 > 15:
    # both upper legs fail. Correct: torso, head, both left-arm sticks, both lower legs.
    assert metrics.pcp(pred, true, annotated) == pytest.approx(6 / 10)
    # Visible joints only, the 5 sticks without an occluded end: torso, left upper and lower arm,
    # right lower leg correct; right upper leg fails.
    assert metrics.pcp(pred, true, visible) == pytest.approx(4 / 5)
    evaluated = metrics.evaluate(pred, true, visible, annotated)
    assert evaluated["pcp"] == pytest.approx(6 / 10)
    assert evaluated["loss"] == pytest.approx(2 * 29**2 / 11)  # the loss: visible joints only (the hips)
    unannotated = annotated.copy()
    unannotated[0, R_ELBOW] = 0  # unannotated: both right-arm sticks leave the count
    assert metrics.pcp(pred, true, unannotated) == pytest.approx(6 / 8)
    shares = metrics.per_image(pred, true, visible, annotated)
    assert (shares["pcp_hits"], shares["pcp_counted"], shares["visible"]) == ([6.0], [10.0], [11.0])


def test_pdj_and_pck_thresholds():
    true = upright_person()
    diagonal = np.hypot(40, 60)  # both torso diagonals
    pred = true.copy()
    pred[0, 0] += (0.2 * diagonal - 0.01, 0)  # just inside
    pred[0, 5] += (0.2 * diagonal + 0.01, 0)  # just outside
    visible = np.ones((1, 14))
    assert metrics.pdj(pred, true, visible) == pytest.approx(13 / 14)
    assert metrics.pck(pred, true, visible) == pytest.approx(13 / 14)


def test_unscored_joints_are_not_counted():
    true = upright_person()
    pred = true.copy()
    pred[0, 0] += 100  # right ankle far off, but invisible
    visible = np.ones((1, 14))
    visible[0, 0] = 0
    assert metrics.pck(pred, true, visible) == 1.0
    assert metrics.pcp(pred, true, visible) == 1.0  # the right lower leg is not counted
    assert metrics.masked_mse(pred, true, visible) == 0.0


def test_no_reference_means_no_score():
    true = upright_person()
    visible = np.ones((1, 14))
    visible[0, [L_SHOULDER, R_SHOULDER]] = 0
    assert metrics.pck(true, true, visible) is None
    assert metrics.pdj(true, true, visible) is None
    assert metrics.pcp(true, true, np.zeros((1, 14))) is None


def test_pdj_uses_the_longer_diagonal_in_a_side_view():
    true = upright_person()
    true[0, L_SHOULDER] = true[0, R_HIP] - (0, 10)  # squashed diagonal: 10 long
    pred = true.copy()
    pred[0, NECK] += (0, 0.2 * np.hypot(40, 60) - 0.1)  # within 0.2 x the other diagonal
    visible = np.ones((1, 14))
    assert metrics.pdj(pred, true, visible) == 1.0
    assert metrics.pck(pred, true, visible) == pytest.approx(13 / 14)


def test_sticks_use_lsp_joint_indices():
    assert len(STICKS) == 10 and STICKS["head"] == ((NECK,), (HEAD,))
    assert all(0 <= j < 14 for ends in STICKS.values() for end in ends for j in end)
    assert (L_HIP, R_HIP) == (3, 2)
