"""From a request's ``texts`` / ``images`` to the items an embedder takes, or a clear 4xx."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from fastapi import HTTPException

from protoshot.embedders import Embedder
from protoshot.service.schemas import Items

MAX_IMAGE_PIXELS = 50_000_000  # a small compressed file may decode to gigabytes


def request_items(body: Items, embedder: Embedder, *, max_items: int) -> list[Any]:
    """The texts (as given) or the decoded PIL images of a request.

    Raises
    ------
    HTTPException
        422 for no items, too many, both kinds, the wrong kind for the embedder or an
        undecodable image; 413 for an image of more than ``MAX_IMAGE_PIXELS`` pixels.
    """
    if body.texts is not None and body.images is not None:
        raise HTTPException(422, "send either 'texts' or 'images', not both")
    given = body.texts if body.texts is not None else body.images
    if not given:
        raise HTTPException(422, "no items: send a non-empty 'texts' or 'images' list")
    if len(given) > max_items:
        raise HTTPException(422, f"{len(given)} items exceed the limit of {max_items} per request")
    if body.images is not None:
        if embedder.modality == "text":
            raise HTTPException(422, f"{embedder.spec} embeds text: send 'texts', not images")
        return [decode_image(data, index) for index, data in enumerate(body.images)]
    if embedder.modality == "image":
        raise HTTPException(422, f"{embedder.spec} embeds images: send base64 'images', not texts")
    return list(given)


def decode_image(data: str, index: int) -> Any:
    """A base64-encoded image file as a decoded PIL image, in memory."""
    from PIL import Image

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise HTTPException(422, f"image {index} is not valid base64: {err}") from err
    try:
        image = Image.open(io.BytesIO(raw))
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise HTTPException(
                413,
                f"image {index} has {image.width} x {image.height} pixels, more than the "
                f"limit of {MAX_IMAGE_PIXELS:,}",
            )
        image.load()
    except Image.DecompressionBombError as err:
        raise HTTPException(413, f"image {index} is too large: {err}") from err
    except (OSError, SyntaxError, ValueError) as err:  # PIL's decode errors
        raise HTTPException(422, f"image {index} is not a readable image file") from err
    return image
