"""Image inputs: paths, PIL images or arrays, opened as RGB (grayscale and 1-bit included)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from protoshot.embedders._runtime import require

if TYPE_CHECKING:
    from PIL.Image import Image


def load_rgb(item: Any, extra: str = "image") -> Image:
    """Open one image item as an RGB PIL image.

    Parameters
    ----------
    item : str | os.PathLike | PIL.Image.Image | numpy.ndarray
        A file path, an image, or a uint8 array [H, W] or [H, W, C].
    extra : str
        The extra to name if Pillow is missing.

    Raises
    ------
    ValueError
        If a file cannot be decoded as an image (the message names the file).
    TypeError
        If the item is none of the above.
    """
    pil = require("PIL.Image", extra)
    if isinstance(item, (str, os.PathLike)):
        try:
            with pil.open(item) as image:
                return image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as err:  # PIL's decode errors
            raise ValueError(f"cannot decode image {os.fspath(item)!r}: {err}") from err
    if isinstance(item, pil.Image):
        return item.convert("RGB")
    if isinstance(item, np.ndarray) and item.ndim in (2, 3):
        return pil.fromarray(np.ascontiguousarray(item)).convert("RGB")
    raise TypeError(
        f"an image item must be a path, a PIL image or a [H, W(, C)] array, "
        f"got {type(item).__name__}"
    )


def resize_center_crop(image: Image, size: int, resample: int) -> Image:
    """Resize the shorter side to ``size``, then crop the centre ``size`` x ``size`` square."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), resample=resample)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))
