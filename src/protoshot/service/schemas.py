"""The service's request and response bodies (they make the OpenAPI schema at ``/docs``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

# a class label as the model stores it: the classes of one model are all of one kind
Label = str | int | float | bool


class Items(BaseModel):
    """Texts for a text model, or base64-encoded image files for an image model."""

    texts: list[str] | None = Field(
        None, description="Texts to embed (text models). Send either `texts` or `images`."
    )
    images: list[str] | None = Field(
        None,
        description="Image files (PNG, JPEG, ...) encoded in base64 (image models), "
        "decoded in memory.",
    )


class PredictRequest(Items):
    """Items to classify."""

    top_k: int = Field(
        1, ge=1, le=100, description="Classes listed per input, most probable first."
    )


class TopK(BaseModel):
    """One of the most probable classes of an input."""

    label: Label = Field(description="The class.")
    probability: float = Field(description="Its probability (softmax of the scores).")


class PredictionOut(BaseModel):
    """The answer for one input."""

    label: Label | None = Field(
        description="The predicted class, or null when rejected as unknown."
    )
    probability: float = Field(description="Probability of the most probable class.")
    top_k: list[TopK] = Field(description="The `top_k` most probable classes, best first.")
    rejected: bool = Field(
        description="True when no class is similar enough: the best class similarity is below the model's rejection threshold."
    )


class Description(BaseModel):
    """A class described in words, embedded by the model's text embedder."""

    text: str = Field(min_length=1, max_length=2000, description="What the class is about.")


class ModelInfo(BaseModel):
    """The model that answered."""

    embedder: str = Field(description="Spec of the frozen embedder (e.g. `minilm`).")
    method: str = Field(
        description="The classification method; for `auto`, what it chose (`auto: named-linear`)."
    )
    modality: str = Field(description="What it embeds: `text`, `image` or `any`.")
    classes: int = Field(description="Number of classes.")
    threshold: float | None = Field(
        description="Rejection threshold on the best class similarity (null: never reject)."
    )


class PredictResponse(BaseModel):
    """Predictions, in the order of the inputs."""

    predictions: list[PredictionOut] = Field(description="One per input, in input order.")
    model: ModelInfo


class ClassInfo(BaseModel):
    """A class and its support size."""

    name: Label = Field(description="The class label.")
    shots: int = Field(description="Support examples averaged into its prototype.")
    updated: datetime | None = Field(
        description="When it last gained shots or a description (UTC; null if not recorded)."
    )


class ClassesResponse(BaseModel):
    """Every class of the model."""

    classes: list[ClassInfo] = Field(description="Sorted by name.")
    model: ModelInfo


class UpdateResponse(BaseModel):
    """The state of a class after an update (already saved to the model folder)."""

    name: Label = Field(description="The class label.")
    shots: int = Field(description="Shots of the class after the update (0 once removed).")
    classes: int = Field(description="Number of classes after the update.")


class ClassDetail(ClassInfo):
    """One class of the served model."""

    described: bool = Field(description="Whether its name or a description is embedded as a prior.")
    model: ModelInfo


class Health(BaseModel):
    """Liveness, and how well concurrent requests are batched."""

    status: str = Field(description="`ok` while the service answers.")
    classes: int = Field(description="Number of classes.")
    embedding_passes: int = Field(description="Embedding passes made since the start.")
    embedded_requests: int = Field(description="Requests those passes served.")
    shed_requests: int = Field(description="Requests refused with 503 as the queue was full.")
    read_only: bool = Field(description="Whether updates are disabled.")


class Error(BaseModel):
    """What went wrong, in one line."""

    detail: str = Field(description="The reason, with the offending value.")
