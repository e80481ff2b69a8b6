"""An image file as a grayscale array, read safely: the pixel count is checked from the header
before anything is decoded, large photos are reduced while decoding, transparency is laid on
white and the camera's EXIF orientation is applied. Needs Pillow (``pip install 'regnet[images]'``).
"""

import os
import warnings

import numpy as np

from ..atomic import checked_path
from ..errors import DataError, MissingDependencyError, RegnetError
from ..text import escape

#: the most pixels an image may declare in its header (a 20 000 x 20 000 "decompression bomb" is
#: refused before decoding); photos from 64-megapixel cameras pass
MAX_PIXELS = 64 * 2**20
#: images are reduced to at most this many pixels on their longer side: plenty for handwriting
WORK_SIDE = 1600


def pillow():
    """The ``PIL.Image`` module, or an error saying how to install it."""
    try:
        from PIL import Image, ImageOps  # an optional dependency: imported when images are read
    except ImportError:
        raise MissingDependencyError("reading images needs Pillow: pip install 'regnet[images]'") from None
    return Image, ImageOps


def read_gray(path: "str | os.PathLike[str]", *, max_pixels: int = MAX_PIXELS, side: int = WORK_SIDE) -> np.ndarray:
    """The image at ``path`` as float32 ``(H, W)`` gray levels in [0, 1] (1 is white), its longer
    side reduced to at most ``side`` pixels."""
    Image, ImageOps = pillow()
    path = checked_path(path, error=DataError, what="an image file")
    if os.path.isdir(path):
        raise DataError(f"{escape(path)} is a directory, not an image file")
    if not os.path.isfile(path):
        raise DataError(f"image file {escape(path)} does not exist")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is the one that counts
        try:
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels or width <= 0 or height <= 0:
                    raise _too_large(path, width, height, max_pixels)
                return _gray(im, side, Image, ImageOps)
        except Image.DecompressionBombError:
            raise _too_large(path, None, None, max_pixels) from None
        except Image.UnidentifiedImageError:
            raise DataError(
                f"{escape(path)} is not an image (Pillow reads PNG, JPEG, BMP, GIF, TIFF, WebP...)"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged data
            if isinstance(exc, RegnetError):
                raise
            raise DataError(f"cannot decode the image {escape(path)}: {escape(exc)}") from None


def _too_large(path, width, height, max_pixels):
    size = f" of {width} x {height} pixels" if width is not None else ""
    return DataError(
        f"the image {escape(path)}{size} is larger than the limit of {max_pixels:,} pixels: refused "
        f"before decoding (reduce it, or raise max_pixels)"
    )


def _gray(im, side, Image, ImageOps):
    if im.format == "JPEG":
        im.draft("RGB" if im.mode == "CMYK" else im.mode, (side, side))  # decode at a reduced scale
    im = ImageOps.exif_transpose(im)
    if max(im.size) > side:
        im.thumbnail((side, side), Image.Resampling.BILINEAR)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        gray = np.asarray(im.convert("F"), dtype=np.float32)
        top = float(gray.max()) if gray.size else 0.0
        return gray / np.float32(top if top > 0 else 1.0)
    return np.asarray(im.convert("L"), dtype=np.float32) / np.float32(255)
