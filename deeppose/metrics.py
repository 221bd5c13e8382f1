"""Pose accuracy: PCP@0.5, PDJ@0.2 and PCK@0.2 for LSP's 14 joints.

All three compare predicted and true joints of shape (N, 14, 2) in the same units (any: they are
scale-free) and count only what a `scored` mask (N, 14) allows: a joint must be scored, a stick
needs every joint it is built from scored, a reference length needs its joints scored. Training
passes the prepared `annotated` mask, the standard LSP convention: every annotated joint counts,
occluded ones too (LSP gives them an estimated position), inside the crop or not. A metric with
nothing to count is None. The test loss is the training objective (`masked_mse`, over the visible
joints inside the crop), so that it stays comparable with the training loss.

- PCP@0.5 (Ferrari et al. 2008; strict form as in Toshev & Szegedy 2014) over the 10 standard sticks
  (`STICKS`: torso, head, upper and lower arms and legs): a stick is correct when both predicted ends
  lie within 0.5 x its true length of their true positions. LSP has no pelvis or thorax joint, so the
  torso runs from the shoulders' midpoint to the hips' midpoint.
- PDJ@0.2 (Toshev & Szegedy 2014): a joint is detected when within 0.2 x the torso diameter,
  taken here as the longer torso diagonal (left shoulder-right hip, right shoulder-left hip), so
  that a side view does not shrink the reference.
- PCK@0.2: a joint is correct when within 0.2 x |left shoulder - right hip|.
"""

from __future__ import annotations

import numpy as np

# LSP joint order.
R_ANKLE, R_KNEE, R_HIP, L_HIP, L_KNEE, L_ANKLE = range(6)
R_WRIST, R_ELBOW, R_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST, NECK, HEAD = range(6, 14)

# stick -> its two ends, each the mean of the joints named
STICKS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "torso": ((R_SHOULDER, L_SHOULDER), (R_HIP, L_HIP)),
    "head": ((NECK,), (HEAD,)),
    "right upper arm": ((R_SHOULDER,), (R_ELBOW,)),
    "right lower arm": ((R_ELBOW,), (R_WRIST,)),
    "left upper arm": ((L_SHOULDER,), (L_ELBOW,)),
    "left lower arm": ((L_ELBOW,), (L_WRIST,)),
    "right upper leg": ((R_HIP,), (R_KNEE,)),
    "right lower leg": ((R_KNEE,), (R_ANKLE,)),
    "left upper leg": ((L_HIP,), (L_KNEE,)),
    "left lower leg": ((L_KNEE,), (L_ANKLE,)),
}


def _fraction(hits: np.ndarray, counted: np.ndarray) -> float | None:
    total = int(counted.sum())
    return float((hits & counted).sum() / total) if total else None


def _sticks(
    pred: np.ndarray, true: np.ndarray, scored: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Correct and counted sticks, (len(STICKS), N) booleans each."""
    scored = scored.astype(bool)
    hits, counted = [], []
    for a, b in STICKS.values():
        true_a, true_b = true[:, a].mean(axis=1), true[:, b].mean(axis=1)
        length = np.linalg.norm(true_a - true_b, axis=-1)
        err_a = np.linalg.norm(pred[:, a].mean(axis=1) - true_a, axis=-1)
        err_b = np.linalg.norm(pred[:, b].mean(axis=1) - true_b, axis=-1)
        hits.append((err_a <= threshold * length) & (err_b <= threshold * length))
        counted.append(scored[:, a + b].all(axis=1) & (length > 0))
    return np.stack(hits), np.stack(counted)


def pcp(pred: np.ndarray, true: np.ndarray, scored: np.ndarray, threshold: float = 0.5) -> float | None:
    """Fraction of correct sticks (see module docstring); scored is (N, 14), nonzero = scored."""
    return _fraction(*_sticks(pred, true, scored, threshold))


def _within(
    pred: np.ndarray,
    true: np.ndarray,
    scored: np.ndarray,
    reference: np.ndarray,
    ok: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Joints within `threshold` x the image's reference length, and joints counted: (N, 14) each."""
    error = np.linalg.norm(pred - true, axis=-1)
    hits = error <= threshold * reference[:, None]
    counted = scored.astype(bool) & (ok & (reference > 0))[:, None]
    return hits, counted


def _pdj(
    pred: np.ndarray, true: np.ndarray, scored: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    v = scored.astype(bool)
    diag1 = np.linalg.norm(true[:, L_SHOULDER] - true[:, R_HIP], axis=-1)
    diag2 = np.linalg.norm(true[:, R_SHOULDER] - true[:, L_HIP], axis=-1)
    ok1 = v[:, L_SHOULDER] & v[:, R_HIP]
    ok2 = v[:, R_SHOULDER] & v[:, L_HIP]
    diameter = np.maximum(np.where(ok1, diag1, 0.0), np.where(ok2, diag2, 0.0))
    return _within(pred, true, scored, diameter, ok1 | ok2, threshold)


def _pck(
    pred: np.ndarray, true: np.ndarray, scored: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    reference = np.linalg.norm(true[:, L_SHOULDER] - true[:, R_HIP], axis=-1)
    v = scored.astype(bool)
    return _within(pred, true, scored, reference, v[:, L_SHOULDER] & v[:, R_HIP], threshold)


def pdj(pred: np.ndarray, true: np.ndarray, scored: np.ndarray, threshold: float = 0.2) -> float | None:
    """Fraction of scored joints detected within threshold x torso diameter."""
    return _fraction(*_pdj(pred, true, scored, threshold))


def pck(pred: np.ndarray, true: np.ndarray, scored: np.ndarray, threshold: float = 0.2) -> float | None:
    """Fraction of scored joints within threshold x |left shoulder - right hip|."""
    return _fraction(*_pck(pred, true, scored, threshold))


def masked_mse(pred: np.ndarray, true: np.ndarray, visible: np.ndarray) -> float:
    """The training loss (deeppose.backends.base) in numpy, for the whole test set at once."""
    diff = (pred - true) * visible[..., None]
    return float((diff**2).sum() / max(float(visible.sum()), 1.0))


def per_image(
    pred: np.ndarray, true: np.ndarray, visible: np.ndarray, scored: np.ndarray
) -> dict[str, list[float]]:
    """Each test image's share of the test loss and of each accuracy (numerators and denominators):
    the test loss is sum(sq_error) / sum(visible) and PCP sum(pcp_hits) / sum(pcp_counted) (PDJ and
    PCK alike, counted over `scored`), so resampling images gives their intervals
    (deeppose.report.analysis)."""
    diff = (pred - true) * visible[..., None]
    shares = {
        "sq_error": (diff**2).sum(axis=(1, 2)).tolist(),
        "visible": visible.sum(axis=1).astype(float).tolist(),
    }
    for name, (hits, counted), axis in (
        ("pcp", _sticks(pred, true, scored, 0.5), 0),
        ("pdj", _pdj(pred, true, scored, 0.2), 1),
        ("pck", _pck(pred, true, scored, 0.2), 1),
    ):
        shares[f"{name}_hits"] = (hits & counted).sum(axis=axis).astype(float).tolist()
        shares[f"{name}_counted"] = counted.sum(axis=axis).astype(float).tolist()
    return shares


def evaluate(
    pred: np.ndarray, true: np.ndarray, visible: np.ndarray, scored: np.ndarray
) -> dict[str, float | None]:
    """Test loss (over `visible`) and the three accuracies (over `scored`); pred and true
    (N, 14, 2), visible and scored (N, 14)."""
    return {
        "loss": masked_mse(pred, true, visible),
        "pcp": pcp(pred, true, scored),
        "pdj": pdj(pred, true, scored),
        "pck": pck(pred, true, scored),
    }
