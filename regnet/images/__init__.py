"""Digits from a photo: read the handwritten digits in an image with an MNIST model.

``load_digits(path)`` gives the digits of an image as MNIST samples, float32 ``(N, 1, 28, 28)``
ordered left to right; ``find_digits(path)`` adds where each one is; ``read_digits(model, path)``
predicts them. Needs the optional extra ``regnet[images]`` (Pillow decodes the files, SciPy
labels the connected components).

    >>> reading = regnet.images.read_digits(regnet.zoo.load("cnn-mnist"), "photo.jpg")  # doctest: +SKIP
    >>> reading.text, reading.confidence  # doctest: +SKIP
    ('2026', array([0.999, 0.998, 1.   , 0.997], dtype=float32))
"""

import os

import attrs
import numpy as np

from ..atomic import checked_path
from ..errors import DataError, ShapeError
from ..text import escape, shape
from .decode import MAX_PIXELS, read_gray
from .segment import SIDE, Digits, segment

#: file name endings ``regnet predict`` reads as images
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

__all__ = ["load_digits", "find_digits", "read_digits", "Reading", "Digits", "is_image", "format_reading"]


def find_digits(path: "str | os.PathLike[str]", *, max_pixels: int = MAX_PIXELS) -> Digits:
    """The digits in the image file ``path``: MNIST samples, boxes and polarity (see ``Digits``)."""
    path = checked_path(path, error=DataError, what="an image file")
    gray = read_gray(path, max_pixels=max_pixels)
    try:
        return segment(gray)
    except DataError as exc:  # "no digits found: ..." says nothing of which image
        raise DataError(f"{escape(path)}: {exc}") from None


def load_digits(path: "str | os.PathLike[str]", *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The digits in the image file ``path`` as MNIST samples, float32 ``(N, 1, 28, 28)``, left to right."""
    return find_digits(path, max_pixels=max_pixels).images


@attrs.frozen
class Reading:
    """What a model read in an image: ``text`` (the digits, left to right), per digit its class
    (``digits``), ``confidence`` (the probability of that class) and ``probabilities`` (all classes),
    and the ``found`` digits."""

    text: str
    digits: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray
    found: Digits


def read_digits(model, path: "str | os.PathLike[str]", *, max_pixels: int = MAX_PIXELS) -> Reading:
    """Find the digits in the image ``path`` and classify each with ``model`` (an MNIST model:
    input ``(1, 28, 28)``, one output per digit class)."""
    want = (1, SIDE, SIDE)
    if tuple(model.input_shape) != want:
        raise ShapeError(
            f"digits from an image are MNIST samples of shape {shape(want)}, but the model takes "
            f"{shape(model.input_shape)}: use an MNIST model (e.g. regnet.zoo.load('cnn-mnist'))"
        )
    out = tuple(model.output_shape)
    if len(out) != 1 or out[0] < 2:
        raise ShapeError(f"the model's output {shape(out)} is not one probability per digit class")
    found = find_digits(path, max_pixels=max_pixels)
    probabilities = np.asarray(model.predict(found.images), dtype=np.float32)
    digits = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(digits)), digits]
    return Reading("".join(str(int(d)) for d in digits), digits, confidence, probabilities, found)


def is_image(path: "str | os.PathLike[str]") -> bool:
    """Whether ``path`` names an image file by its ending (``.png``, ``.jpg``, ...)."""
    return os.fspath(path).lower().endswith(EXTENSIONS)


def format_reading(reading: Reading) -> str:
    """What ``regnet predict MODEL photo.png`` prints: the digits read, then each with its probability."""
    inverted = " (light on dark, inverted)" if reading.found.inverted else ""
    lines = [f"read: {reading.text}  ({len(reading.digits)} digit(s){inverted})"]
    for i, (d, p, box) in enumerate(zip(reading.digits, reading.confidence, reading.found.boxes)):
        top, left, bottom, right = (int(v) for v in box)
        lines.append(f"  {i + 1}: {int(d)}  probability {p:.4f}  (x {left}-{right}, y {top}-{bottom})")
    return "\n".join(lines)
