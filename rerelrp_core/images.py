"""Turning image files (uploads, image folders) into model inputs, with Pillow only.

Every failure raises :class:`ImageError` with a sentence a user can act on. Pillow's
decompression-bomb limit stays on: a file claiming more pixels than ``MAX_PIXELS`` is refused.
"""
import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError

MAX_PIXELS = 40_000_000  # about 6300 x 6300; larger files are refused before decoding
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(UserError):
    """The file is not an image we can use; the message says why."""


def open_image(data):
    """Decode ``data`` (bytes) into a fully loaded RGB or L Pillow image.

    Handles EXIF rotation, palette, CMYK, 16-bit and alpha images (alpha is composited on black, the
    background of the bundled data sets), and takes the first frame of animations.
    """
    if not data:
        raise ImageError("The file is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.seek(0)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"The image is too large to open safely (limit {MAX_PIXELS:,} pixels).") from None
    except UnidentifiedImageError:
        raise ImageError("The file is not an image Pillow can read "
                         "(supported: PNG, JPEG, BMP, GIF, WebP, TIFF).") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"The image file is truncated or corrupt ({error}).") from None
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        image = Image.fromarray((array / top * 255).astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float64))
        span = (array.max() - array.min()) or 1.0
        image = Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image


def to_input(image, size, channels, invert="auto"):
    """Resize a Pillow image to ``size`` x ``size`` (keeping its aspect ratio, padded) and return a
    float tensor (channels, size, size) in [0, 1].

    ``invert``: ``"auto"`` inverts images whose border is brighter than mid-grey, so a dark object on
    white paper looks like the bundled data (bright object on black); True/False force it.
    """
    image = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    if invert == "auto":
        border = np.concatenate([array[0].ravel(), array[-1].ravel(),
                                 array[:, 0].ravel(), array[:, -1].ravel()])
        invert = bool(border.mean() > 0.5)
    if invert:
        array = 1.0 - array
    padded = Image.fromarray((array * 255).round().astype(np.uint8))
    padded = ImageOps.pad(padded, (size, size), method=Image.Resampling.LANCZOS, color=0)
    tensor = torch.from_numpy(np.asarray(padded, dtype=np.float32) / 255.0)
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def load_image(data, size, channels, invert=False):
    """Bytes of an image file -> model input tensor (channels, size, size); see :func:`to_input`."""
    return to_input(open_image(data), size, channels, invert=invert)
