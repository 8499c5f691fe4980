"""Reading photos safely, writing label maps, and drawing overlays."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ihp_rt.clicks import Click
from ihp_rt.errors import InputError
from ihp_rt.labels import LabelSet

# 40 megapixels: beyond any photo an annotator parses, well below a decompression bomb.
MAX_PIXELS = 40_000_000
MIN_SIDE = 8


def check_image(image: object) -> np.ndarray:
    """Accept an RGB uint8 (H, W, 3) array; anything else is refused with the reason."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a NumPy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8 RGB, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image must have shape (H, W, 3), got {image.shape}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InputError(f"image is too small ({width}x{height}); each side needs at least {MIN_SIDE} px")
    if height * width > MAX_PIXELS:
        raise InputError(f"image is too large ({width}x{height}); the limit is {MAX_PIXELS:,} pixels")
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Decode a photo file to RGB uint8, honouring EXIF orientation as image viewers do."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    return decode_image(path, str(path))


def decode_image(source: str | Path | bytes, what: str = "upload") -> np.ndarray:
    """Decode a file or encoded bytes (``what`` names it in errors) to RGB uint8.

    The size is checked from the header before any pixel is decoded, so a decompression
    bomb costs nothing.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise InputError(
                        f"image {what} is too large ({width}x{height}); the limit is {MAX_PIXELS:,} pixels"
                    )
                rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except UnidentifiedImageError:
        raise InputError(f"{what} is not a readable image (no image format Pillow knows)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"{what} is not a readable image: {e}") from None
    except OSError as e:
        raise InputError(f"cannot decode image {what}: {e}") from None
    return check_image(np.ascontiguousarray(rgb))


# What Pillow's ImageOps.exif_transpose does for each EXIF orientation value.
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
EXIF_ORIENTATION = 0x0112


def exif_orientation(path: str | Path) -> int:
    """The photo's EXIF orientation (1 = as stored), read from the header only."""
    try:
        with Image.open(path) as im:
            return int(im.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, ValueError):
        return 1


def turn_like_photo(labels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply the turn that :func:`read_image` applies to a photo with this EXIF orientation."""
    method = EXIF_TRANSPOSE.get(orientation)
    if method is None:
        return labels
    return np.asarray(Image.fromarray(labels).transpose(method)).copy()


def write_label_png(path: str | Path, labels: np.ndarray) -> Path:
    """8-bit single-channel PNG of class ids (the LIP/CIHP annotation format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D uint8 array, got {labels.dtype} {labels.shape}")
    Image.fromarray(labels).save(path)
    return path


def colorize(labels: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """RGB image of a label map in the label set's palette."""
    return label_set.palette_array()[labels]


def overlay(image: np.ndarray, labels: np.ndarray, label_set: LabelSet, clicks: list[Click] = (),
            alpha: float = 0.55) -> np.ndarray:
    """The photo with parts tinted in their palette colour and clicks drawn as dots."""
    colours = colorize(labels, label_set).astype(np.float32)
    tinted = image.astype(np.float32)
    part = labels > 0
    tinted[part] = (1 - alpha) * tinted[part] + alpha * colours[part]
    out = np.ascontiguousarray(tinted.round().astype(np.uint8))
    radius = max(3, round(max(image.shape[:2]) / 120))
    for c in clicks:
        colour = tuple(int(v) for v in label_set.palette_array()[c.label])
        cv2.circle(out, (c.x, c.y), radius + 2, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, (c.x, c.y), radius, colour, -1, cv2.LINE_AA)
    return out


def write_rgb_png(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path
