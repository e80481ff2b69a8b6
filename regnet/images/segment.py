"""Handwritten digits in a grayscale image, each made an MNIST sample.

The steps, each on whole arrays:

1. *Polarity*: the background is the bulk of the pixels; when the median is nearer the dark end
   the image is light-on-dark and is inverted, so ink is always darker than paper.
2. *Lighting*: the paper's brightness is estimated per block (a high percentile, then the brightest
   of each block's neighbours, interpolated back), and ink is the darkening relative to it, so
   shadows and uneven light do not count as ink.
3. *Ink mask*: Otsu's threshold on the lightly smoothed ink; specks and dashes are dropped.
4. *Digits*: connected components (8-connected), ordered left to right; parts stacked above one
   another (a detached bar of a 5) are merged, and so is a low piece that almost touches a
   neighbour (a stroke broken by the pen).
5. *MNIST normalisation*, as the data set was made: each digit is cropped (strokes much thinner
   than MNIST's, from a fine pen on a large photo, are widened first), scaled so its larger
   side is 20 pixels keeping the aspect ratio (Lanczos, anti-aliased), and placed in a 28 x 28 field so
   that its centre of mass is at the centre; white ink on black, in [0, 1].

Needs SciPy (``scipy.ndimage``: labelling, filters, centre of mass) and Pillow for resizing.
"""

import attrs
import numpy as np

from ..errors import DataError, MissingDependencyError
from .decode import pillow

SIDE = 28
BOX = 20
#: ink darkening (relative to the paper) below which an image is blank
MIN_INK = 0.2
#: a component smaller than this fraction of the largest one is a speck
MIN_AREA = 0.03
#: a group lower than this fraction of the tallest one is a dash or a dot, not a digit
MIN_HEIGHT = 0.3
#: two parts are one digit when their horizontal extents overlap by this fraction of the narrower
OVERLAP = 0.5
#: strokes thinner than this fraction of the digit's larger side are widened to it (MNIST's strokes:
#: 0.13 of the digit on median, 0.09 for the thinnest 5 %)
THIN = 0.09
#: a group lower than this fraction of the tallest one joins a neighbour closer than ``NEAR`` heights
FRAGMENT = 0.5
NEAR = 0.2


def ndimage():
    """``scipy.ndimage``, or an error saying how to install it."""
    try:
        from scipy import ndimage as nd  # an optional dependency: imported when images are read
    except ImportError:
        raise MissingDependencyError("reading digits from images needs SciPy: pip install 'regnet[images]'") from None
    return nd


@attrs.frozen
class Digits:
    """Digits found in an image: ``images`` float32 ``(N, 1, 28, 28)`` (MNIST layout, left to right),
    ``boxes`` int ``(N, 4)`` as ``(top, left, bottom, right)`` (bottom and right exclusive) in the
    pixels of the image as read (photos are reduced to 1 600 pixels on their longer side), and
    whether the image was ``inverted`` (it was light-on-dark)."""

    images: np.ndarray
    boxes: np.ndarray
    inverted: bool


def segment(gray: np.ndarray) -> Digits:
    """The digits in a grayscale image (float ``(H, W)``, 1 is white), as MNIST samples."""
    nd = ndimage()
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2 or min(g.shape) < 8 or not np.isfinite(g).all():
        raise DataError(f"expected a finite grayscale image of at least 8 x 8 pixels, got shape {g.shape}")
    lo, median, hi = np.percentile(g, [0.5, 50, 99.5])
    inverted = bool(median - lo < hi - median)  # the bulk (the background) is dark: light ink
    if inverted:
        g = 1 - g
    ink = np.clip(1 - g / np.maximum(background(g, nd), 1e-3), 0, 1)
    smooth = nd.gaussian_filter(ink, 1.0)
    if smooth.max() < MIN_INK:
        raise DataError(f"no digits found: the image is blank (its darkest mark is {smooth.max():.2f} below the paper)")
    mask = smooth > max(otsu(smooth), MIN_INK / 2)
    groups = digit_regions(mask, nd)
    images = np.stack([to_mnist(ink, region, nd) for region in groups])[:, None]
    boxes = np.array([_box(region) for region in groups], dtype=np.int64).reshape(-1, 4)
    return Digits(images.astype(np.float32), boxes, inverted)


def background(g: np.ndarray, nd) -> np.ndarray:
    """The paper's brightness at every pixel of a dark-on-light image."""
    h, w = g.shape
    block = max(4, round(max(h, w) / 16))
    ph, pw = -h % block, -w % block
    padded = np.pad(g, ((0, ph), (0, pw)), mode="edge")
    hb, wb = padded.shape[0] // block, padded.shape[1] // block
    tiles = padded.reshape(hb, block, wb, block).transpose(0, 2, 1, 3).reshape(hb, wb, block * block)
    grid = nd.maximum_filter(np.percentile(tiles, 90, axis=-1).astype(np.float32), size=3, mode="nearest")
    full = nd.zoom(grid, (padded.shape[0] / hb, padded.shape[1] / wb), order=1, mode="nearest", grid_mode=True)
    return full[:h, :w]


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the level that best separates two classes."""
    hist = np.histogram(values, bins=bins, range=(0.0, 1.0))[0].astype(np.float64)
    centres = (np.arange(bins) + 0.5) / bins
    weight = np.cumsum(hist)
    mass = np.cumsum(hist * centres)
    total, total_mass = weight[-1], mass[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mass * weight - total * mass) ** 2 / (weight * (total - weight))
    between[~np.isfinite(between)] = 0
    return float(centres[int(np.argmax(between))] + 0.5 / bins)


def digit_regions(mask: np.ndarray, nd) -> list:
    """Boolean masks (full image size) of each digit, left to right."""
    labels, n = nd.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        raise DataError("no digits found: no ink stands out from the background")
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    slices = nd.find_objects(labels)
    keep = np.flatnonzero(area >= max(4, MIN_AREA * area.max()))
    parts = sorted((slices[k][1].start, slices[k][1].stop, slices[k][0].start, slices[k][0].stop, k + 1) for k in keep)
    groups: list[list] = []  # [left, right, top, bottom, [labels]]
    for left, right, top, bottom, label in parts:
        if groups:
            g = groups[-1]
            overlap = min(right, g[1]) - max(left, g[0])
            if overlap >= OVERLAP * min(right - left, g[1] - g[0]):
                g[0], g[1], g[2], g[3] = min(left, g[0]), max(right, g[1]), min(top, g[2]), max(bottom, g[3])
                g[4].append(label)
                continue
        groups.append([left, right, top, bottom, [label]])
    tallest = max(g[3] - g[2] for g in groups)
    groups = _attach_fragments(groups, tallest)
    groups = [g for g in groups if g[3] - g[2] >= MIN_HEIGHT * tallest]
    return [np.isin(labels, g[4]) for g in groups]


def _attach_fragments(groups, tallest):
    """Merge each low group (a broken-off piece of a stroke) into the neighbour it almost touches."""
    i = 0
    while i < len(groups):
        g = groups[i]
        if len(groups) > 1 and g[3] - g[2] < FRAGMENT * tallest:
            sides = [j for j in (i - 1, i + 1) if 0 <= j < len(groups)]
            gap, j = min((groups[j][0] - g[1] if j > i else g[0] - groups[j][1], j) for j in sides)
            if gap <= NEAR * tallest:
                other = groups[j]
                other[0], other[1] = min(g[0], other[0]), max(g[1], other[1])
                other[2], other[3] = min(g[2], other[2]), max(g[3], other[3])
                other[4].extend(g[4])
                del groups[i]
                i = 0
                continue
        i += 1
    return groups


def _box(region):
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1


def stroke_width(mask: np.ndarray, nd) -> float:
    """The mean width of the strokes in a binary mask: twice the area over the boundary length."""
    edge = int(np.count_nonzero(mask & ~nd.binary_erosion(mask)))
    return 2.0 * int(np.count_nonzero(mask)) / max(edge, 1)


def to_mnist(ink: np.ndarray, region: np.ndarray, nd) -> np.ndarray:
    """One digit as MNIST made its samples: 20 x 20 box keeping the aspect ratio, centre of mass
    at the centre of 28 x 28."""
    Image, _ = pillow()
    top, left, bottom, right = _box(region)
    near = nd.binary_dilation(region[top:bottom, left:right], iterations=2)  # keep the anti-aliased rim
    crop = ink[top:bottom, left:right] * near
    core = crop[region[top:bottom, left:right]]
    crop = np.clip(crop / max(float(np.percentile(core, 90)), 1e-3), 0, 1).astype(np.float32)  # stroke cores at 1
    h, w = crop.shape
    grow = round((THIN * max(h, w) - stroke_width(region[top:bottom, left:right], nd)) / 2)
    if grow >= 1:  # a fine pen: widen the strokes towards MNIST's (as thick as 0.13 of the digit)
        crop = nd.maximum_filter(np.pad(crop, grow), size=2 * grow + 1)
        h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    small = np.clip(small, 0, None)
    cy, cx = nd.center_of_mass(small) if small.sum() > 0 else (small.shape[0] / 2, small.shape[1] / 2)
    y0 = int(np.clip(round(SIDE / 2 - cy - 0.5), 0, SIDE - small.shape[0]))
    x0 = int(np.clip(round(SIDE / 2 - cx - 0.5), 0, SIDE - small.shape[1]))
    out = np.zeros((SIDE, SIDE), np.float32)
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out / max(float(out.max()), 1e-6)
