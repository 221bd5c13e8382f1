"""The embedded dataset: seeded articulated figures on cluttered backgrounds, in LSP's format.

    python -m deeppose synthesize --params params.yaml

writes `data/synthetic/`: `images/im0001.jpg`... and `joints.mat` (variable `joints`, 3x14xN
float64, rows x, y, flag; flag 0 = visible, LSP's convention and joint order), so the LSP reader
and the preparation serve it exactly as they serve the real data.

Each image is drawn from its own generator (child `i` of `SeedSequence([seed, STREAM])`), so the
first k images do not depend on how many are drawn, and a seed gives byte-identical files (fixed
JPEG settings, no timestamp in the MAT header). A figure is a kinematic tree: a torso with a tilt
and a yaw (shoulder/hip width foreshortening), a head, and two-segment limbs whose angles are drawn
relative to the torso and to the parent segment within plausible ranges, with human proportions
(thigh 0.88, shin 0.85, upper arm 0.62, forearm 0.55, head 0.5 torso lengths) each shortened by up
to a third, as if seen out of plane. The figure's clothes are saturated colours with a dark
outline; the background and its clutter are muted (saturation <= 0.45), so the person stands out
and pose is learnable. Occluders (muted rectangles/ellipses) drawn over some figures hide the
joints they cover: those are flagged 1 (invisible), as LSP flags occluded joints, and keep their
true position, so that every joint is annotated, as in LSP (scored, not trained on).

Image sizes follow LSP's (long side 150-280 px, mostly portrait); the figure spans 50-92% of the
image, so after padding to 256 and the 256 crop a few large figures are dropped (span >= 227).
"""

from __future__ import annotations

import argparse
import colorsys
import io
import math
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, ImageDraw

from deeppose.config import load_params
from deeppose.records import paths
from deeppose.records.atomic import atomic_dir

STREAM = 0x5E7  # separates this stream from other users of the same seed
JPEG_QUALITY = 90  # fixed: the same seed must give the same bytes
LONG_SIDE = (150, 280)  # px, LSP images are ~150-250 on the long side
FIGURE_FRACTION = (0.5, 0.92)  # of the image's width or height, whichever binds
MAT_HEADER = b"MATLAB 5.0 MAT-file, written by deeppose synthesize (LSP format: joints 3x14xN)"

# Joint indices in LSP order.
R_ANKLE, R_KNEE, R_HIP, L_HIP, L_KNEE, L_ANKLE = range(6)
R_WRIST, R_ELBOW, R_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST, NECK, HEAD_TOP = range(6, 14)

# Segment lengths in torso lengths (neck to pelvis), after adult proportions.
LENGTHS = {"thigh": 0.88, "shin": 0.85, "upper_arm": 0.62, "forearm": 0.55, "head": 0.5}
# Drawn widths in torso lengths.
WIDTHS = {"thigh": 0.30, "shin": 0.22, "upper_arm": 0.20, "forearm": 0.16, "neck": 0.16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = f"Writes {paths.SYNTHETIC}/ (data.synthetic.images images, seeded by seed)."


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    count = params.data.synthetic.images
    synthesize(paths.SYNTHETIC, count, params.seed)
    print(f"synthesize: wrote {count} images and joints.mat to {paths.SYNTHETIC}/ (seed {params.seed})")


def synthesize(folder: str | Path, count: int, seed: int) -> None:
    """Write `count` images and `joints.mat` to `folder` (replaced whole, atomically)."""
    children = np.random.SeedSequence([seed, STREAM]).spawn(count)
    joints = np.zeros((3, 14, count), dtype=np.float64)
    with atomic_dir(folder) as tmp:
        (tmp / "images").mkdir()
        for i, child in enumerate(children):
            image, xy, visible = render_sample(np.random.default_rng(child))
            image.save(
                tmp / "images" / f"im{i + 1:04d}.jpg",
                format="JPEG",
                quality=JPEG_QUALITY,
                optimize=False,
                progressive=False,
                subsampling=2,
            )
            joints[:2, :, i] = xy.T
            joints[2, :, i] = np.where(visible, 0.0, 1.0)  # LSP: flag 0 = visible
        (tmp / "joints.mat").write_bytes(mat_bytes({"joints": joints}))


def mat_bytes(variables: dict[str, np.ndarray]) -> bytes:
    """A MATLAB 5 file without scipy's creation timestamp in its 116-byte text header."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, format="5", do_compression=False)
    data = bytearray(buffer.getvalue())
    data[:116] = MAT_HEADER.ljust(116, b" ")[:116]
    return bytes(data)


# ----------------------------------------------------------------------------- the figure


def _pose(rng: np.random.Generator) -> tuple[np.ndarray, bool, float]:
    """Joints (14, 2) of a figure with torso length 1, pelvis at the origin, y pointing down.

    Returns the joints, whether the figure faces the camera, and its width factor (yaw).
    """
    tilt = rng.normal(0.0, 0.22)
    if rng.random() < 0.07:  # acrobatics: any orientation
        tilt = rng.uniform(-math.pi, math.pi)
    up = np.array([math.sin(tilt), -math.cos(tilt)])
    down = -up
    perp = np.array([math.cos(tilt), math.sin(tilt)])  # image right for an upright figure
    width = rng.uniform(0.3, 1.0)  # shoulder/hip foreshortening: 1 = frontal, 0.3 = near profile
    facing = bool(rng.random() < 0.85)  # facing the camera: the person's right is image left
    side = {"right": -1.0 if facing else 1.0, "left": 1.0 if facing else -1.0}
    proportion = rng.uniform(0.92, 1.08, size=5)

    def length(name: str, k: int) -> float:
        return LENGTHS[name] * proportion[k] * rng.uniform(0.65, 1.0)

    def direction(phi: float) -> np.ndarray:  # torso frame: 0 = down, +pi/2 = towards `perp`
        return math.cos(phi) * down + math.sin(phi) * perp

    joints = np.zeros((14, 2))
    pelvis = np.zeros(2)
    neck = pelvis + up * rng.uniform(0.9, 1.0)
    joints[NECK] = neck
    head = rng.normal(0.0, 0.25)
    joints[HEAD_TOP] = neck + length("head", 0) * (math.cos(head) * up + math.sin(head) * perp)
    shoulder_half = 0.42 * width
    hip_half = 0.22 * width
    for name, (shoulder, elbow, wrist, hip, knee, ankle) in {
        "right": (R_SHOULDER, R_ELBOW, R_WRIST, R_HIP, R_KNEE, R_ANKLE),
        "left": (L_SHOULDER, L_ELBOW, L_WRIST, L_HIP, L_KNEE, L_ANKLE),
    }.items():
        s = side[name]
        joints[shoulder] = neck + s * shoulder_half * perp + 0.06 * down
        joints[hip] = pelvis + s * hip_half * perp
        # arm: abduction from hanging (0) to overhead (~pi); elbow bends either way
        if rng.random() < 0.6:
            abduction = rng.uniform(-0.35, 1.3)
        else:
            abduction = rng.uniform(1.3, 3.0)
        upper = s * abduction
        fore = upper + s * float(np.clip(rng.normal(0.3, 0.9), -2.4, 2.4))
        joints[elbow] = joints[shoulder] + length("upper_arm", 1) * direction(upper)
        joints[wrist] = joints[elbow] + length("forearm", 2) * direction(fore)
        # leg: mostly standing apart; sometimes a stride or a kick; the knee bends either way
        if rng.random() < 0.75:
            spread = rng.normal(0.15, 0.2)
        else:
            spread = rng.uniform(-0.7, 1.7)
        thigh = s * spread
        shin = thigh + s * float(np.clip(rng.normal(-0.1, 0.55), -2.0, 2.0))
        joints[knee] = joints[hip] + length("thigh", 3) * direction(thigh)
        joints[ankle] = joints[knee] + length("shin", 4) * direction(shin)
    return joints, facing, width


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _muted(rng: np.random.Generator) -> tuple[int, int, int]:
    """A clutter colour: low saturation, mid value, never as vivid as the figure's clothes."""
    return _hsv(rng.random(), rng.uniform(0.0, 0.45), rng.uniform(0.3, 0.85))


def _capsule(draw: ImageDraw.ImageDraw, p, q, width: float, fill) -> None:
    """A thick segment with round ends."""
    w = max(1, int(round(width)))
    r = width / 2
    draw.line([tuple(p), tuple(q)], fill=fill, width=w)
    for x, y in (p, q):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Smooth muted colour field, optional stripes, then random muted shapes."""
    grid = np.array([[_muted(rng) for _ in range(4)] for _ in range(4)], dtype=np.uint8)
    image = Image.fromarray(grid, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.3:  # stripes (a floor, a fence, a track)
        color, step = _muted(rng), int(rng.integers(8, 24))
        vertical = rng.random() < 0.5
        for k in range(0, w if vertical else h, step):
            box = [k, 0, k + step // 3, h] if vertical else [0, k, w, k + step // 3]
            draw.rectangle(box, fill=color)
    for _ in range(int(rng.integers(6, 20))):
        color = _muted(rng)
        x, y = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        sx, sy = rng.uniform(0.04, 0.35) * w, rng.uniform(0.04, 0.35) * h
        kind = rng.integers(4)
        if kind == 0:
            draw.rectangle([x, y, x + sx, y + sy], fill=color)
        elif kind == 1:
            draw.ellipse([x, y, x + sx, y + sy], fill=color)
        elif kind == 2:
            points = [(x + rng.uniform(-sx, sx), y + rng.uniform(-sy, sy)) for _ in range(3)]
            draw.polygon(points, fill=color)
        else:  # thin lines: poles, ropes
            draw.line([(x, y), (x + rng.uniform(-1, 1) * w / 2, y + rng.uniform(-1, 1) * h / 2)],
                      fill=color, width=int(rng.integers(1, 4)))  # fmt: skip
    return image


def _draw_figure(draw: ImageDraw.ImageDraw, rng: np.random.Generator, j: np.ndarray,
                 unit: float, facing: bool, width: float) -> None:  # fmt: skip
    """Draw the person whose joints (pixels) are `j`; `unit` is the torso length in pixels."""
    thick = unit * rng.uniform(0.8, 1.25)
    shirt = _hsv(rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.65, 1.0))
    trousers = _hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.75))
    tone = rng.uniform(0.0, 1.0)
    skin = tuple(int(a + tone * (b - a)) for a, b in zip((240, 200, 170), (95, 60, 40)))
    hair = _hsv(rng.uniform(0.02, 0.12), rng.uniform(0.3, 0.8), rng.uniform(0.05, 0.45))
    outline = tuple(int(v) for v in rng.integers(0, 40, size=3))
    edge = max(1.0, 0.035 * unit)
    sleeves = shirt if rng.random() < 0.5 else skin
    shins = trousers if rng.random() < 0.6 else skin

    def limb(a: int, b: int, w: float, fill) -> None:
        _capsule(draw, j[a], j[b], w + 2 * edge, outline)
        _capsule(draw, j[a], j[b], w, fill)

    # legs, torso, arms, head: back to front
    for hip, knee, ankle in ((R_HIP, R_KNEE, R_ANKLE), (L_HIP, L_KNEE, L_ANKLE)):
        limb(hip, knee, WIDTHS["thigh"] * thick, trousers)
        limb(knee, ankle, WIDTHS["shin"] * thick, shins)
    perp = j[L_SHOULDER] - j[R_SHOULDER]
    norm = np.linalg.norm(perp)
    across = perp / norm if norm > 1e-6 else np.array([1.0, 0.0])
    pad_s, pad_h = 0.1 * thick, 0.12 * thick
    torso = [j[R_SHOULDER] - across * pad_s, j[L_SHOULDER] + across * pad_s,
             j[L_HIP] + across * pad_h, j[R_HIP] - across * pad_h]  # fmt: skip
    pelvis = (j[R_HIP] + j[L_HIP]) / 2
    core = max(0.3, 0.5 * width) * thick  # keeps a near-profile torso visible
    _capsule(draw, j[NECK], pelvis, core + 2 * edge, outline)
    draw.polygon([tuple(p) for p in torso], fill=shirt, outline=outline, width=int(round(edge)))
    _capsule(draw, j[NECK], pelvis, core, shirt)
    for shoulder, elbow, wrist in ((R_SHOULDER, R_ELBOW, R_WRIST), (L_SHOULDER, L_ELBOW, L_WRIST)):
        limb(shoulder, elbow, WIDTHS["upper_arm"] * thick, shirt)
        limb(elbow, wrist, WIDTHS["forearm"] * thick, sleeves)
    # head: a circle whose top is the head-top joint, on a neck
    axis = j[HEAD_TOP] - j[NECK]
    radius = max(2.0, 0.42 * float(np.linalg.norm(axis)))
    centre = j[HEAD_TOP] - axis / max(np.linalg.norm(axis), 1e-6) * radius
    _capsule(draw, j[NECK], centre, WIDTHS["neck"] * thick, skin)
    cx, cy = centre
    r = radius + edge
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=outline)
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=hair)
    if facing:  # a face: the front of the head shows skin below the hair line
        face = centre + axis / max(np.linalg.norm(axis), 1e-6) * (-0.2 * radius)
        fr = 0.78 * radius
        draw.ellipse([face[0] - fr, face[1] - fr, face[0] + fr, face[1] + fr], fill=skin)


def render_sample(rng: np.random.Generator) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """One synthetic image: (RGB image, joints (14, 2) float64 (x, y), visible (14,) bool)."""
    long_side = int(rng.integers(LONG_SIDE[0], LONG_SIDE[1] + 1))
    if rng.random() < 0.75:  # portrait, like most of LSP
        h, w = long_side, int(round(long_side / rng.uniform(1.1, 1.7)))
    else:
        w, h = long_side, int(round(long_side / rng.uniform(1.05, 1.5)))
    unit_pose, facing, width = _pose(rng)
    lo, hi = unit_pose.min(axis=0), unit_pose.max(axis=0)
    extent = np.maximum(hi - lo, 1e-3)
    margin = 4.0
    fraction = rng.uniform(*FIGURE_FRACTION)
    scale = fraction * min((w - 2 * margin) / extent[0], (h - 2 * margin) / extent[1])
    scale = min(scale, 0.45 * min(w, h))  # a folded pose must not blow up to a giant torso
    size = extent * scale
    offset = np.array([rng.uniform(margin, w - margin - size[0]), rng.uniform(margin, h - margin - size[1])])
    joints = (unit_pose - lo) * scale + offset

    image = _background(rng, w, h)
    draw = ImageDraw.Draw(image)
    _draw_figure(draw, rng, joints, scale, facing, width)

    # occluders: muted shapes over some joints; the joints they cover become invisible
    visible = np.ones(14, dtype=bool)
    if rng.random() < 0.4:
        mask = Image.new("L", (w, h), 0)
        mask_draw = ImageDraw.Draw(mask)
        for _ in range(int(rng.integers(1, 3))):
            cx, cy = joints[rng.integers(14)] + rng.normal(0.0, 0.15 * scale, size=2)
            sx, sy = rng.uniform(0.25, 0.6, size=2) * scale
            box = [cx - sx, cy - sy, cx + sx, cy + sy]
            if rng.random() < 0.5:
                draw.rectangle(box, fill=_muted(rng))
                mask_draw.rectangle(box, fill=255)
            else:
                draw.ellipse(box, fill=_muted(rng))
                mask_draw.ellipse(box, fill=255)
        covered = np.asarray(mask)
        xi = np.clip(np.rint(joints[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.rint(joints[:, 1]).astype(int), 0, h - 1)
        visible = covered[yi, xi] == 0

    # lighting and sensor noise, vectorised
    pixels = np.asarray(image, dtype=np.float32)
    gain = rng.uniform(0.75, 1.15)
    bias = rng.uniform(-15.0, 15.0)
    noise = rng.normal(0.0, rng.uniform(2.0, 8.0), size=pixels.shape).astype(np.float32)
    pixels = np.clip(pixels * gain + bias + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB"), joints, visible
