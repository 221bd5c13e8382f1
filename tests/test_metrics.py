"""PCP, PDJ and PCK on hand-made poses with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from deeppose import metrics
from deeppose.metrics import HEAD, L_HIP, L_SHOULDER, LIMBS, NECK, R_HIP, R_SHOULDER


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
    scores = metrics.evaluate(true.copy(), true, visible)
    assert scores == {"loss": 0.0, "pcp": 1.0, "pdj": 1.0, "pck": 1.0}


def test_pcp_counts_a_limb_only_when_both_ends_are_close():
    true = upright_person()
    pred = true.copy()
    pred[0, HEAD] += (0, 11)  # head limb is 20 long: 11 > 0.5 * 20, so the head fails
    pred[0, 6] += (14, 0)  # right wrist: lower arm 30 long, 14 <= 15, still correct
    assert metrics.pcp(pred, true, np.ones((1, 14))) == pytest.approx(8 / 9)


def test_pdj_and_pck_thresholds():
    true = upright_person()
    diagonal = np.hypot(40, 60)  # both torso diagonals
    pred = true.copy()
    pred[0, 0] += (0.2 * diagonal - 0.01, 0)  # just inside
    pred[0, 5] += (0.2 * diagonal + 0.01, 0)  # just outside
    visible = np.ones((1, 14))
    assert metrics.pdj(pred, true, visible) == pytest.approx(13 / 14)
    assert metrics.pck(pred, true, visible) == pytest.approx(13 / 14)


def test_invisible_joints_are_not_counted():
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


def test_limbs_use_lsp_joint_indices():
    assert len(LIMBS) == 9 and LIMBS["head"] == (NECK, HEAD)
    assert all(0 <= a < 14 and 0 <= b < 14 for a, b in LIMBS.values())
    assert (L_HIP, R_HIP) == (3, 2)
