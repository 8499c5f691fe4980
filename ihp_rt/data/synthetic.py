"""SYNTHETIC people: a procedural human-parsing scene generator. Not real data.

Why it exists: the training, evaluation and export code must be exercised end to end (tests,
smoke runs, a machine without the benchmarks) on data that has the *structure* of human
parsing: the LIP classes, left/right pairs that a horizontal flip must swap, thin limbs next to
large garments, several people occluding each other. Photographs cannot be shipped or
generated, so this module draws cartoon people from simple shapes. A model trained on it learns
nothing about real photos; numbers measured on it must never be reported as benchmark results.

Every part is drawn once, with the same OpenCV call, into a two-channel map: channel 0 gets
the LIP class id, channel 1 a "material" index (skin tone, a garment's colours and pattern).
The photo is rendered afterwards from the material map, so labels and pixels are aligned
exactly and the label map has no anti-aliasing. Later parts overwrite earlier ones, which is
how garments cover skin and a nearer person covers a farther one. As in LIP, hands belong to
the arm classes; the neck is drawn as face.

Left/right follows LIP: every person faces the camera, so the person's *left* arm, leg and
shoe lie on the *image's right* side. A horizontal flip followed by
``get_label_set("lip").flip_lut()`` therefore gives a scene that follows the same convention.
"""

from __future__ import annotations

import colorsys
import json
import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ihp_rt.data.folder import Sample
from ihp_rt.errors import InputError
from ihp_rt.images import write_label_png
from ihp_rt.labels import get_label_set

LIP = get_label_set("lip")
DATASET_TITLE = "synthetic ihp-rt people (procedural, not real)"

_id = LIP.label_id
BACKGROUND, HAT, HAIR, GLOVE, SUNGLASSES = 0, _id("hat"), _id("hair"), _id("glove"), _id("sunglasses")
UPPER, DRESS, COAT, SOCKS, PANTS = _id("upper-clothes"), _id("dress"), _id("coat"), _id("socks"), _id("pants")
JUMPSUIT, SCARF, SKIRT, FACE = _id("jumpsuits"), _id("scarf"), _id("skirt"), _id("face")
# Indexed by side: +1 is the person's left (image right), -1 the person's right (image left).
ARM = {+1: _id("left-arm"), -1: _id("right-arm")}
LEG = {+1: _id("left-leg"), -1: _id("right-leg")}
SHOE = {+1: _id("left-shoe"), -1: _id("right-shoe")}

# Pattern fields a material can use (see _fields).
SMOOTH, STRIPES, CHECKS, GRAIN, GRADIENT, FLAT = range(6)

# Skin tones from light to dark; hair colours (RGB).
_SKIN = np.array([[241, 210, 185], [224, 172, 138], [198, 134, 96], [141, 85, 54], [88, 56, 40]], np.float32)
_HAIR = np.array([[22, 18, 16], [58, 38, 26], [104, 70, 42], [196, 160, 100], [150, 150, 150], [132, 56, 28]],
                 np.float32)


class _Canvas:
    """Class ids and material indices, drawn together so they can never disagree."""

    def __init__(self, height: int, width: int) -> None:
        self.maps = np.zeros((height, width, 2), np.uint8)
        self.materials: list[tuple[np.ndarray, np.ndarray, int]] = []

    def material(self, colour_a: np.ndarray, colour_b: np.ndarray, pattern: int) -> int:
        """Register a material (colour a at field 0, colour b at field 1) and return its index."""
        if len(self.materials) == 256:  # cannot happen with the person counts used; keep maps uint8
            return len(self.materials) - 1
        self.materials.append((np.asarray(colour_a, np.float32), np.asarray(colour_b, np.float32), pattern))
        return len(self.materials) - 1

    def ellipse(self, centre: np.ndarray, axes: tuple[float, float], angle: float, label: int, mat: int) -> None:
        c = (round(float(centre[0])), round(float(centre[1])))
        ax = (max(1, round(axes[0])), max(1, round(axes[1])))
        cv2.ellipse(self.maps, c, ax, float(angle), 0, 360, (label, mat), -1, cv2.LINE_8)

    def poly(self, points: np.ndarray, label: int, mat: int) -> None:
        cv2.fillPoly(self.maps, [np.round(points).astype(np.int32)], (label, mat), cv2.LINE_8)

    def capsule(self, p0: np.ndarray, p1: np.ndarray, width: float, label: int, mat: int) -> None:
        """A thick segment with round ends: a limb, a sleeve, a trouser leg."""
        a = (round(float(p0[0])), round(float(p0[1])))
        b = (round(float(p1[0])), round(float(p1[1])))
        cv2.line(self.maps, a, b, (label, mat), max(1, round(width)), cv2.LINE_8)


def _colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.2, 0.9),
            value: tuple[float, float] = (0.15, 0.95)) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return np.array([r, g, b], np.float32) * 255


def _garment(canvas: _Canvas, rng: np.random.Generator) -> int:
    """A garment material: mostly a plain colour with soft folds, sometimes stripes, checks or knit."""
    a = _colour(rng)
    pattern = int(rng.choice([SMOOTH, STRIPES, CHECKS, GRAIN], p=[0.62, 0.16, 0.08, 0.14]))
    b = a * rng.uniform(0.55, 0.8) if pattern in (SMOOTH, GRAIN) else _colour(rng)
    return canvas.material(a, b, pattern)


def _plain(canvas: _Canvas, colour: np.ndarray) -> int:
    """A plain material: one colour, darker in the folds of the smooth shading field."""
    return canvas.material(colour, colour * 0.65, SMOOTH)


def _dir(side: int, angle_deg: float) -> np.ndarray:
    """Unit vector pointing down, turned outwards (towards ``side``) by ``angle_deg``."""
    t = math.radians(angle_deg)
    return np.array([side * math.sin(t), math.cos(t)], np.float32)


def _pose(rng: np.random.Generator) -> dict:
    """Joint positions in head-height units; origin at the top of the head, y down."""
    sw = rng.uniform(0.8, 1.02)  # half shoulder width
    hw = rng.uniform(0.55, 0.76)  # half hip width
    pose: dict = {"sw": sw, "hw": hw, "arm_w": rng.uniform(0.3, 0.4), "leg_w": rng.uniform(0.44, 0.56)}
    for side in (+1, -1):
        r = rng.random()
        a1 = rng.uniform(4, 30) if r < 0.7 else rng.uniform(30, 95) if r < 0.9 else rng.uniform(95, 160)
        r = rng.random()
        bend = rng.uniform(-10, 25) if r < 0.6 else rng.uniform(-110, -40) if r < 0.85 else rng.uniform(30, 100)
        a2 = float(np.clip(a1 + bend, -95, 175))
        shoulder = np.array([side * (sw - 0.18), 1.42], np.float32)
        elbow = shoulder + 1.4 * _dir(side, a1)
        wrist = elbow + 1.2 * _dir(side, a2)
        while side * wrist[0] < 0.3:  # a hand across the body would break "left arm on the image right"
            a2 += 10
            wrist = elbow + 1.2 * _dir(side, a2)
        pose[f"arm{side}"] = (shoulder, elbow, wrist, wrist + 0.2 * _dir(side, a2), a2)
        la = rng.uniform(-3, 16)
        hip = np.array([side * (hw - 0.27), 3.85], np.float32)
        knee = hip + 1.85 * _dir(side, la)
        ankle = knee + 1.7 * _dir(side, la + rng.uniform(-8, 10))
        pose[f"leg{side}"] = (hip, knee, ankle, rng.uniform(-5, 25))
    return pose


def _extent(pose: dict) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of the person, in head units, including limb thickness."""
    pts = [np.array([0.0, -0.1]), np.array([-pose["sw"] - 0.3, 1.2]), np.array([pose["sw"] + 0.3, 1.2])]
    for side in (+1, -1):
        pts += list(pose[f"arm{side}"][:4]) + list(pose[f"leg{side}"][:3])
    arr = np.array(pts, np.float32)
    (x0, y0), (x1, y1) = arr.min(0) - 0.45, arr.max(0) + 0.45
    return float(x0), float(y0), float(x1), float(y1)


def _draw_person(canvas: _Canvas, rng: np.random.Generator, pose: dict, origin: np.ndarray, u: float) -> None:
    """Draw one frontal person, back to front, with ``u`` pixels per head height."""

    def p(x: float | np.ndarray, y: float | None = None) -> np.ndarray:
        local = np.asarray(x, np.float32) if y is None else np.array([x, y], np.float32)
        return origin + u * local

    skin_rgb = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.9, 1.05)
    skin = canvas.material(skin_rgb, skin_rgb * 0.8, SMOOTH)
    hair_rgb = _HAIR[rng.integers(len(_HAIR))] if rng.random() < 0.9 else _colour(rng)
    hair = canvas.material(hair_rgb, hair_rgb * 0.6, GRAIN)
    sw, hw, arm_w, leg_w = pose["sw"], pose["hw"], pose["arm_w"], pose["leg_w"]

    # What this person wears. Every person keeps some skin on each limb (hands, ankles) so that
    # all four limb classes appear; real photos also show fully covered limbs.
    bottom = rng.choice(["pants", "skirt", "dress", "jumpsuit"], p=[0.58, 0.2, 0.16, 0.06])
    top_label = DRESS if bottom == "dress" else JUMPSUIT if bottom == "jumpsuit" else UPPER
    top_mat = _garment(canvas, rng)
    bottom_mat = top_mat if bottom in ("dress", "jumpsuit") else _garment(canvas, rng)
    pants_len = rng.choice(["shorts", "capri", "long"], p=[0.25, 0.15, 0.6])
    sleeve = rng.choice([0.0, 0.45, 1.0, 1.85], p=[0.15, 0.35, 0.1, 0.4])  # in upper-arm lengths
    coat = rng.random() < 0.2
    gloves = rng.random() < 0.12 and sleeve < 1.5 and not coat
    socks = rng.random() < 0.3 and not (bottom in ("pants", "jumpsuit") and pants_len != "shorts")
    shoe_mat = _plain(canvas, _colour(rng, value=(0.05, 0.7)))
    long_hair = rng.random() < 0.4

    # Legs (skin), socks, shoes.
    for side in (+1, -1):
        hip, knee, ankle, foot_angle = pose[f"leg{side}"]
        canvas.capsule(p(hip), p(knee), u * leg_w, LEG[side], skin)
        canvas.capsule(p(knee), p(ankle), u * leg_w * 0.8, LEG[side], skin)
        if socks:
            top = ankle + (knee - ankle) * rng.uniform(0.15, 0.45)
            canvas.capsule(p(top), p(ankle), u * leg_w * 0.85, SOCKS, _plain(canvas, _colour(rng)))
        foot = ankle + np.array([side * 0.16, 0.14], np.float32)
        canvas.capsule(p(ankle - np.array([0, 0.04], np.float32)), p(foot), u * 0.28, SHOE[side], shoe_mat)
        canvas.ellipse(p(foot), (u * 0.34, u * 0.16), side * foot_angle, SHOE[side], shoe_mat)

    # Lower garment.
    if bottom in ("pants", "jumpsuit"):
        label = PANTS if bottom == "pants" else JUMPSUIT
        canvas.poly(p(np.array([[-hw, 3.45], [hw, 3.45], [hw + 0.02, 4.25], [-hw - 0.02, 4.25]], np.float32)),
                    label, bottom_mat)
        for side in (+1, -1):
            hip, knee, ankle, _ = pose[f"leg{side}"]
            if pants_len == "shorts":
                canvas.capsule(p(hip), p(hip + (knee - hip) * rng.uniform(0.35, 0.85)), u * (leg_w + 0.12),
                               label, bottom_mat)
            else:
                canvas.capsule(p(hip), p(knee), u * (leg_w + 0.12), label, bottom_mat)
                end = 0.45 if pants_len == "capri" else 0.66  # long ones leave the ankle bare
                canvas.capsule(p(knee), p(knee + (ankle - knee) * end), u * (leg_w * 0.8 + 0.14), label, bottom_mat)
    else:
        label = SKIRT if bottom == "skirt" else DRESS
        hem, flare = 3.9 + rng.uniform(0.5, 2.4), rng.uniform(0.1, 0.45)
        spread = hw + 0.1 + flare * (hem - 3.5)
        canvas.poly(p(np.array([[-hw - 0.03, 3.4], [hw + 0.03, 3.4], [spread, hem], [-spread, hem]], np.float32)),
                    label, bottom_mat)

    # Neck, torso garment, coat.
    canvas.capsule(p(0, 0.85), p(0, 1.4), u * 0.42, FACE, skin)
    waist = rng.uniform(0.78, 0.95) * sw
    hem = 3.55 if bottom in ("dress", "jumpsuit") else rng.uniform(3.6, 4.0)
    neck_dip = rng.uniform(0.0, 0.35)
    torso = np.array([[-0.26, 1.22], [0, 1.25 + neck_dip], [0.26, 1.22], [sw, 1.32], [sw * 0.97, 2.2], [waist, 3.0],
                      [hw + 0.04, hem], [-hw - 0.04, hem], [-waist, 3.0], [-sw * 0.97, 2.2], [-sw, 1.32]], np.float32)
    canvas.poly(p(torso), top_label, top_mat)
    for side in (+1, -1):
        canvas.ellipse(p(side * (sw - 0.2), 1.5), (u * 0.3, u * 0.25), 0, top_label, top_mat)
    coat_mat = _garment(canvas, rng) if coat else 0
    if coat:
        coat_hem, gap = rng.uniform(4.2, 5.6), rng.uniform(0.0, 0.35)
        for side in (+1, -1):
            panel = np.array([[side * 0.24, 1.2], [side * (sw + 0.08), 1.28], [side * (sw + 0.02), 2.3],
                              [side * (hw + 0.22), coat_hem], [side * gap, coat_hem], [side * gap, 2.0]], np.float32)
            canvas.poly(p(panel), COAT, coat_mat)
            canvas.ellipse(p(side * (sw - 0.18), 1.5), (u * 0.34, u * 0.28), 0, COAT, coat_mat)

    # Long hair falls in front of the shoulders, behind the arms.
    hair_end = rng.uniform(1.7, 2.8)
    if long_hair:
        for side in (+1, -1):
            canvas.poly(p(np.array([[side * 0.2, 0.5], [side * 0.5, 0.5], [side * 0.58, hair_end],
                                    [side * 0.3, hair_end - 0.15]], np.float32)), HAIR, hair)

    # Arms: skin, then sleeve, then hand (skin or glove).
    glove_mat = _garment(canvas, rng) if gloves else 0
    for side in (+1, -1):
        shoulder, elbow, wrist, hand, angle = pose[f"arm{side}"]
        canvas.capsule(p(shoulder), p(elbow), u * arm_w, ARM[side], skin)
        canvas.capsule(p(elbow), p(wrist), u * arm_w * 0.85, ARM[side], skin)
        label, mat, length = (COAT, coat_mat, 1.85) if coat else (top_label, top_mat, sleeve)
        if length > 0:
            upper_end = shoulder + (elbow - shoulder) * min(1.0, length)
            canvas.capsule(p(shoulder), p(upper_end), u * (arm_w + 0.12), label, mat)
            if length > 1:
                canvas.capsule(p(elbow), p(elbow + (wrist - elbow) * (length - 1)), u * (arm_w * 0.85 + 0.12),
                               label, mat)
        hand_label, hand_mat = (GLOVE, glove_mat) if gloves else (ARM[side], skin)
        canvas.ellipse(p(hand), (u * 0.15, u * 0.22), -side * angle, hand_label, hand_mat)

    # Head: hair behind, face in front, features, accessories.
    canvas.ellipse(p(0, 0.42), (u * rng.uniform(0.4, 0.48), u * 0.48), 0, HAIR, hair)
    canvas.ellipse(p(0, 0.6), (u * 0.34, u * 0.44), 0, FACE, skin)
    if rng.random() < 0.5:  # a fringe
        canvas.ellipse(p(0, 0.22), (u * 0.34, u * rng.uniform(0.08, 0.16)), 0, HAIR, hair)
    dark = canvas.material(np.array([35, 25, 25], np.float32), np.array([20, 15, 15], np.float32), FLAT)
    lips = canvas.material(skin_rgb * np.array([0.85, 0.55, 0.55], np.float32), skin_rgb * 0.5, FLAT)
    sunglasses = rng.random() < 0.12
    if sunglasses:
        glass = canvas.material(np.array([15, 15, 20], np.float32), np.array([60, 60, 70], np.float32), GRADIENT)
        for side in (+1, -1):
            canvas.ellipse(p(side * 0.15, 0.55), (u * 0.13, u * 0.08), 0, SUNGLASSES, glass)
        canvas.capsule(p(-0.1, 0.53), p(0.1, 0.53), u * 0.04, SUNGLASSES, glass)
    else:
        for side in (+1, -1):
            canvas.ellipse(p(side * 0.14, 0.56), (u * 0.05, u * 0.035), 0, FACE, dark)
    canvas.ellipse(p(0, 0.84), (u * 0.1, u * 0.035), 0, FACE, lips)
    if rng.random() < 0.18:  # hat: crown plus brim
        hat_mat = _garment(canvas, rng)
        canvas.ellipse(p(0, 0.12), (u * 0.4, u * 0.3), 0, HAT, hat_mat)
        if rng.random() < 0.6:
            canvas.ellipse(p(0, 0.22), (u * 0.62, u * 0.09), 0, HAT, hat_mat)
    if rng.random() < 0.15:  # scarf round the neck, one end hanging
        scarf_mat = _garment(canvas, rng)
        canvas.capsule(p(-0.32, 1.2), p(0.32, 1.2), u * 0.3, SCARF, scarf_mat)
        side = 1 if rng.random() < 0.5 else -1
        canvas.capsule(p(side * 0.18, 1.25), p(side * 0.24, rng.uniform(1.9, 2.8)), u * 0.24, SCARF, scarf_mat)


def _fields(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(6, H, W) float32 patterns in [0, 1] that materials blend their two colours with."""
    yy, xx = np.ogrid[0:height, 0:width]
    yy, xx = yy.astype(np.float32), xx.astype(np.float32)
    out = np.empty((6, height, width), np.float32)
    out[SMOOTH] = np.clip(cv2.resize(rng.random((5, 4)).astype(np.float32), (width, height),
                                     interpolation=cv2.INTER_CUBIC), 0, 1)
    t = rng.uniform(0, math.pi)
    period = rng.uniform(4, 12) * max(height, 64) / 256
    out[STRIPES] = ((xx * math.cos(t) + yy * math.sin(t)) / period) % 1.0 < 0.5
    cell = max(2, round(rng.uniform(4, 10) * height / 256))
    out[CHECKS] = (xx // cell + yy // cell) % 2
    out[GRAIN] = rng.random((height, width), dtype=np.float32) * 0.6 + 0.4 * out[SMOOTH]
    out[GRADIENT] = yy / max(1, height - 1)
    out[FLAT] = 0
    return out


def _background(canvas: _Canvas, rng: np.random.Generator, height: int, width: int) -> None:
    """A wall/floor backdrop with a few unlabelled objects, so 'background' is not one flat colour."""
    a, b = _colour(rng, (0.0, 0.6), (0.3, 1.0)), _colour(rng, (0.0, 0.6), (0.2, 0.9))
    canvas.material(a, b, int(rng.choice([GRADIENT, SMOOTH, GRAIN])))  # material 0: the wall
    if rng.random() < 0.7:
        floor = canvas.material(_colour(rng, (0, 0.5), (0.2, 0.8)), _colour(rng, (0, 0.5), (0.1, 0.6)),
                                int(rng.choice([SMOOTH, CHECKS, GRAIN])))
        y0, y1 = rng.uniform(0.45, 0.85) * height, rng.uniform(0.45, 0.85) * height
        canvas.poly(np.array([[0, y0], [width, y1], [width, height], [0, height]], np.float32), BACKGROUND, floor)
    for _ in range(rng.integers(0, 6)):
        mat = canvas.material(_colour(rng), _colour(rng), int(rng.choice([SMOOTH, STRIPES, GRADIENT])))
        c = rng.uniform([0, 0], [width, height]).astype(np.float32)
        s = rng.uniform(0.05, 0.3) * min(height, width)
        kind = rng.integers(3)
        if kind == 0:
            canvas.ellipse(c, (s, s * rng.uniform(0.3, 1.0)), rng.uniform(0, 180), BACKGROUND, mat)
        elif kind == 1:
            box = cv2.boxPoints(((float(c[0]), float(c[1])), (float(s * 2), float(s * rng.uniform(0.5, 3))),
                                 float(rng.uniform(-20, 20))))
            canvas.poly(box, BACKGROUND, mat)
        else:
            end = c + rng.normal(0, s * 2, 2).astype(np.float32)
            canvas.capsule(c, end, max(1.0, s * 0.15), BACKGROUND, mat)


def _render(canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """The RGB photo from the material map: patterns, lighting, dark seams, blur and sensor noise."""
    height, width = canvas.maps.shape[:2]
    mats = canvas.maps[..., 1]
    fields = _fields(rng, height, width)
    col_a = np.stack([m[0] for m in canvas.materials])
    col_b = np.stack([m[1] for m in canvas.materials])
    pattern = np.array([m[2] for m in canvas.materials], np.intp)
    flat = fields.reshape(len(fields), -1)
    idx = mats.reshape(-1)
    weight = flat[pattern[idx], np.arange(idx.size)].reshape(height, width, 1)
    image = col_a[mats] * (1 - weight) + col_b[mats] * weight
    light = cv2.resize(rng.random((3, 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    image *= (0.8 + 0.35 * light)[..., None]
    seam = np.zeros((height, width), bool)
    seam[1:] |= mats[1:] != mats[:-1]
    seam[:, 1:] |= mats[:, 1:] != mats[:, :-1]
    image[seam] *= 0.78
    image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.4, 0.9))
    image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(1.0, 5.0)
    return np.clip(image, 0, 255).round().astype(np.uint8)


def generate_person_scene(rng: np.random.Generator, height: int = 256, width: int = 192,
                          max_people: int = 2, name: str = "synthetic") -> Sample:
    """A SYNTHETIC scene of 1..``max_people`` frontal people with LIP labels (ids 0..19).

    People are whole (head to feet inside the frame) so that each shows hair, face, a torso
    garment and both arms and legs unless another person covers it; crops and zooms are left
    to training augmentation. Nearer (larger) people are drawn later and occlude farther ones.
    Deterministic for a given generator state.
    """
    if max_people < 1:
        raise InputError(f"max_people must be at least 1, got {max_people}")
    canvas = _Canvas(height, width)
    _background(canvas, rng, height, width)
    count = int(rng.integers(1, max_people + 1))
    sizes = np.sort(rng.uniform(0.6, 0.95, count) if count == 1 else rng.uniform(0.42, 0.9, count))
    for size in sizes:
        pose = _pose(rng)
        x0, y0, x1, y1 = _extent(pose)
        u = min(size * height / (y1 - y0), 0.98 * width / (x1 - x0), 0.98 * height / (y1 - y0))
        ox = rng.uniform(-x0 * u, max(-x0 * u, width - x1 * u))
        oy = rng.uniform(-y0 * u, max(-y0 * u, height - y1 * u))
        _draw_person(canvas, rng, pose, np.array([ox, oy], np.float32), u)
    labels = np.ascontiguousarray(canvas.maps[..., 0])
    return Sample(name, _render(canvas, rng), labels)


def _save_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def write_lip_layout(root: str | Path, n_train: int, n_val: int, seed: int, height: int = 256, width: int = 192,
                     max_people: int = 2) -> Path:
    """Write SYNTHETIC scenes in LIP's published layout (readable by ``LIPDataset``); returns ``root``.

    Scene i of a split is drawn from ``default_rng((seed, split, i))``, so the validation scenes
    do not change when the number of training scenes does.
    """
    root = Path(root)
    for split_index, (split, count) in enumerate((("train", n_train), ("val", n_val))):
        ids = []
        for i in range(count):
            name = f"synthetic_{split}_{i:06d}"
            sample = generate_person_scene(np.random.default_rng((seed, split_index, i)), height, width, max_people,
                                           name)
            _save_jpeg(root / "TrainVal_images" / f"{split}_images" / f"{name}.jpg", sample.image)
            write_label_png(root / "TrainVal_parsing_annotations" / f"{split}_segmentations" / f"{name}.png",
                            sample.labels)
            ids.append(name)
        (root / "TrainVal_images" / f"{split}_images").mkdir(parents=True, exist_ok=True)
        (root / "TrainVal_parsing_annotations" / f"{split}_segmentations").mkdir(parents=True, exist_ok=True)
        (root / f"{split}_id.txt").write_text("".join(f"{n}\n" for n in ids))
    return root


def write_folder_layout(root: str | Path, n: int, seed: int, height: int = 256, width: int = 192,
                        max_people: int = 2) -> Path:
    """Write ``n`` SYNTHETIC scenes as images/ + labels/ + manifest.json (``FolderDataset``); returns ``root``."""
    root = Path(root)
    for i in range(n):
        name = f"synthetic_{i:06d}"
        sample = generate_person_scene(np.random.default_rng((seed, i)), height, width, max_people, name)
        _save_jpeg(root / "images" / f"{name}.jpg", sample.image)
        write_label_png(root / "labels" / f"{name}.png", sample.labels)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    manifest = {
        "dataset": DATASET_TITLE,
        "classes": {str(i): name for i, name in enumerate(LIP.names)},
        "ignore_index": 255,
        "generator": f"ihp_rt.data.synthetic.generate_person_scene, seed {seed}, {width}x{height}, "
                     f"max_people {max_people}",
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return root
