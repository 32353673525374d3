"""From a request's ``texts`` / ``images`` to the items an embedder takes, or a clear 4xx."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from protoshot.embedders import Embedder
from protoshot.service.schemas import Items

MAX_IMAGE_PIXELS = 50_000_000  # a small compressed file may decode to gigabytes


@dataclass(frozen=True)
class Budget:
    """What one request may ask for, in total: items, characters of text, decoded pixels.

    Per request, not per item: twenty images each under a per-image limit can still decode to
    gigabytes, and one long text holds the only embedding worker for everyone.
    """

    items: int = 256
    chars: int = 1_000_000
    pixels: int = 100_000_000


def request_items(body: Items, embedder: Embedder, *, budget: Budget) -> list[Any]:
    """The texts (as given) or the decoded PIL images of a request, within ``budget``.

    Image sizes are read from the file headers first, so a request over its pixel budget is
    refused before any image is decoded.

    Raises
    ------
    HTTPException
        422 for no items, too many, both kinds, the wrong kind for the embedder, an
        undecodable image or text that is not valid Unicode; 413 for a request over its
        character or pixel budget, or an image of more than ``MAX_IMAGE_PIXELS`` pixels.
    """
    if body.texts is not None and body.images is not None:
        raise HTTPException(422, "send either 'texts' or 'images', not both")
    given = body.texts if body.texts is not None else body.images
    if not given:
        raise HTTPException(422, "no items: send a non-empty 'texts' or 'images' list")
    if len(given) > budget.items:
        raise HTTPException(
            422, f"{len(given)} items exceed the limit of {budget.items} per request"
        )
    if body.images is not None:
        if embedder.modality == "text":
            raise HTTPException(422, f"{embedder.spec} embeds text: send 'texts', not images")
        opened = [open_image(data, index) for index, data in enumerate(body.images)]
        pixels = sum(image.width * image.height for image in opened)
        if pixels > budget.pixels:
            raise HTTPException(
                413, f"the images hold {pixels:,} pixels in all, over the limit of "
                f"{budget.pixels:,} per request",
            )  # fmt: skip
        return [decode(image, index) for index, image in enumerate(opened)]
    if embedder.modality == "image":
        raise HTTPException(422, f"{embedder.spec} embeds images: send base64 'images', not texts")
    texts = list(given)
    chars = sum(len(text) for text in texts)
    if chars > budget.chars:
        raise HTTPException(
            413, f"the texts hold {chars:,} characters in all, over the limit of "
            f"{budget.chars:,} per request",
        )  # fmt: skip
    for index, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise HTTPException(
                422, f"text {index} is not valid Unicode (it holds a lone surrogate)"
            ) from None
    return texts


def open_image(data: str, index: int) -> Any:
    """A base64-encoded image file opened lazily: its header is read, its pixels are not."""
    from PIL import Image

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise HTTPException(422, f"image {index} is not valid base64: {err}") from err
    try:
        image = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError as err:
        raise HTTPException(413, f"image {index} is too large: {err}") from err
    except (OSError, SyntaxError, ValueError) as err:  # PIL's header errors
        raise HTTPException(422, f"image {index} is not a readable image file") from err
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise HTTPException(
            413,
            f"image {index} has {image.width} x {image.height} pixels, more than the "
            f"limit of {MAX_IMAGE_PIXELS:,}",
        )
    return image


def decode(image: Any, index: int) -> Any:
    """Decode an opened image's pixels (a 422 for a file whose body is broken)."""
    from PIL import Image

    try:
        image.load()
    except Image.DecompressionBombError as err:
        raise HTTPException(413, f"image {index} is too large: {err}") from err
    except (OSError, SyntaxError, ValueError) as err:  # PIL's decode errors
        raise HTTPException(422, f"image {index} is not a readable image file") from err
    return image
