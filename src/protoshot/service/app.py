"""``create_app(model_dir)``: predict, add examples, remove classes, over HTTP.

Reads never block on writes and always see one consistent model: an update is applied to a copy
of the classifier, written to the model folder atomically, and only then swapped in and
acknowledged, so a restart (or a kill) loses nothing acknowledged. Updates are serialised.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import os
import threading
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from protoshot import __version__
from protoshot.model import FewShotModel
from protoshot.service.batching import MicroBatcher


class Items(BaseModel):
    """Texts for a text model, or base64-encoded image files for an image model."""

    texts: list[str] | None = Field(None, description="Texts (text models).")
    images: list[str] | None = Field(None, description="Base64-encoded image files (image models).")


class PredictRequest(Items):
    top_k: int = Field(
        1, ge=1, le=100, description="Classes listed per input, most probable first."
    )


class TopK(BaseModel):
    label: Any
    probability: float


class PredictionOut(BaseModel):
    label: Any = Field(description="The predicted class, or null when rejected as unknown.")
    probability: float = Field(description="Probability of the best class.")
    top_k: list[TopK]
    rejected: bool = Field(
        description="True when the best probability is below the model's threshold."
    )


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]


class ClassInfo(BaseModel):
    name: Any
    shots: int


class ClassesResponse(BaseModel):
    classes: list[ClassInfo]
    embedder: str
    threshold: float | None


class UpdateResponse(BaseModel):
    name: Any
    shots: int = Field(description="Shots of the class after the update (0 once removed).")
    classes: int = Field(description="Number of classes after the update.")


class _State:
    """The current model, swapped whole on each update; ``lock`` serialises the updates."""

    def __init__(self, model: FewShotModel, model_dir: str | os.PathLike[str]) -> None:
        self.model = model
        self.model_dir = model_dir
        self.lock = threading.Lock()

    def update(self, change: Any) -> FewShotModel:
        """Apply ``change(copy)`` to a copy of the model, save it atomically, then swap it in."""
        with self.lock:
            current = self.model
            new = FewShotModel(
                current.embedder,
                copy.deepcopy(current.classifier),
                threshold=current.threshold,
                cache=current.cache,
                batch_size=current.batch_size,
            )
            change(new)
            new.save(self.model_dir, overwrite=True)
            self.model = new
            return new


def create_app(
    model_dir: str | os.PathLike[str],
    *,
    device: str | None = None,
    cache: Any = True,
    max_batch: int = 256,
    max_body_bytes: int = 32 * 2**20,
) -> FastAPI:
    """A FastAPI app serving the FewShotModel saved in ``model_dir``.

    Parameters
    ----------
    model_dir : path
        Written by ``protoshot fit`` or :meth:`FewShotModel.save`; updates are saved back to it.
    device, cache
        Passed to :meth:`FewShotModel.load`.
    max_batch : int
        Most items per request (more answer 422).
    max_body_bytes : int
        Largest request body (larger ones answer 413).
    """
    state = _State(FewShotModel.load(model_dir, device=device, cache=cache), model_dir)
    # the embedder never changes (updates swap the classifier), so one batcher serves all models
    batcher = MicroBatcher(state.model.embed, max_items=max_batch)
    app = FastAPI(
        title="protoshot",
        version=__version__,
        description="Few-shot classification with prototypes over frozen embeddings.",
    )

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return JSONResponse(
                {"detail": f"request body of {length} bytes exceeds the limit of {max_body_bytes}"},
                status_code=413,
            )
        return await call_next(request)

    def items_of(body: Items, model: FewShotModel) -> list[Any]:
        modality = model.embedder.modality
        if body.texts is not None and body.images is not None:
            raise HTTPException(422, "send either 'texts' or 'images', not both")
        given = body.texts if body.texts is not None else body.images
        if not given:
            raise HTTPException(422, "no items: send a non-empty 'texts' or 'images' list")
        if len(given) > max_batch:
            raise HTTPException(
                422, f"{len(given)} items exceed the limit of {max_batch} per request"
            )
        if body.images is not None:
            if modality == "text":
                raise HTTPException(
                    422, f"{model.embedder.spec} embeds text: send 'texts', not images"
                )
            return [_decode_image(i, data) for i, data in enumerate(body.images)]
        if modality == "image":
            raise HTTPException(
                422, f"{model.embedder.spec} embeds images: send base64 'images', not texts"
            )
        return list(given)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness, and the micro-batcher's counts (requests served by how many embedding passes)."""
        return {
            "status": "ok",
            "classes": len(state.model.classes),
            "embedding_passes": batcher.passes,
            "embedded_requests": batcher.requests,
        }

    @app.get("/v1/classes", response_model=ClassesResponse)
    def list_classes() -> dict[str, Any]:
        """The classes and their shot counts."""
        model = state.model
        return {
            "classes": [{"name": k, "shots": v} for k, v in model.class_counts().items()],
            "embedder": model.embedder.spec,
            "threshold": model.threshold,
        }

    @app.post("/v1/predict", response_model=PredictResponse)
    def predict(body: PredictRequest) -> dict[str, Any]:
        """Classify a batch of texts or base64 images."""
        model = state.model  # one consistent model for the whole request
        items = items_of(body, model)
        vectors = _library(lambda: batcher.embed(items))
        predictions = model.predict_embeddings(vectors, top_k=body.top_k)
        return {"predictions": [p.to_dict() for p in predictions]}

    @app.post("/v1/classes/{name}/examples", response_model=UpdateResponse)
    def add_examples(name: str, body: Items) -> dict[str, Any]:
        """Add shots to class ``name`` (created if new); saved before the answer."""
        items = items_of(body, state.model)
        vectors = _library(lambda: batcher.embed(items))  # outside the lock: the slow part
        label = _library(lambda: state.model.as_class_values([name])[0])
        new = _library(
            lambda: state.update(lambda m: m.classifier.partial_fit(vectors, [label] * len(items)))
        )
        return {"name": label, "shots": new.class_counts()[label], "classes": len(new.classes)}

    @app.delete("/v1/classes/{name}", response_model=UpdateResponse)
    def remove_class(name: str) -> dict[str, Any]:
        """Remove class ``name``; saved before the answer."""
        label = _library(lambda: state.model.as_class_values([name])[0])
        if label not in state.model.classes:
            raise HTTPException(404, f"no class {name!r}")
        if len(state.model.classes) == 1:
            raise HTTPException(409, f"{name!r} is the last class; a model needs at least one")
        new = _library(lambda: state.update(lambda m: m.remove_classes([label])))
        return {"name": label, "shots": 0, "classes": len(new.classes)}

    return app


def _library(call: Any) -> Any:
    """Run a library call; its ValueError/TypeError become a 422 with the message."""
    try:
        return call()
    except (ValueError, TypeError) as err:
        raise HTTPException(422, str(err)) from err


def _decode_image(index: int, data: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise HTTPException(422, f"image {index} is not valid base64: {err}") from err
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (UnidentifiedImageError, OSError) as err:
        raise HTTPException(422, f"image {index} is not a readable image file") from err
    return image
