"""``create_app(model_dir)``: predict, add examples, remove classes, over HTTP.

Reads never block on writes and always see one consistent model: an update is applied to a copy
of the classifier, appended to the model folder's journal and flushed to disk, and only then
swapped in and acknowledged, so a restart (or a kill) loses nothing acknowledged. Updates are
serialised; the journal is folded into a new snapshot in the background.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from protoshot import __version__
from protoshot.cache import CacheArg
from protoshot.embedders import Embedder
from protoshot.model import FewShotModel, Prediction
from protoshot.service.admission import Admission, AdmissionLimit
from protoshot.service.batching import MicroBatcher, Overloaded
from protoshot.service.body_limit import BodyLimit
from protoshot.service.inputs import Budget, request_items
from protoshot.service.operations import ApiKeys, Metrics, RequestMetrics, check_keys
from protoshot.service.schemas import (
    ClassDetail,
    ClassesResponse,
    Description,
    Error,
    Health,
    Items,
    PredictRequest,
    PredictResponse,
    UpdateResponse,
)
from protoshot.service.uploads import MultipartPredict
from protoshot.store import FolderLock

log = logging.getLogger("protoshot.serve")
T = TypeVar("T")
Responses = dict[int | str, dict[str, Any]]  # OpenAPI entries for the error answers


def _error(description: str) -> dict[str, Any]:
    return {"model": Error, "description": description}


_INVALID = _error("Invalid request: no items, too many, the wrong kind, or undecodable images")
_UNSAVED = _error("The update could not be saved; the model is unchanged")
_BUSY = _error("Overloaded: too many items wait to be embedded; retry after `Retry-After` s")
_READ_ONLY = _error("The server is read-only: updates are disabled")
_READ_ERRORS: Responses = {
    413: _error("Request body, image or the request's text or pixel budget too large"),
    422: _INVALID,
    503: _BUSY,
}
_ADD_ERRORS: Responses = {**_READ_ERRORS, 403: _READ_ONLY, 500: _UNSAVED}
_REMOVE_ERRORS: Responses = {
    403: _READ_ONLY,
    404: _error("No such class"),
    409: _error("The last class cannot be removed"),
    422: _INVALID,
    500: _UNSAVED,
}
#: Seconds a shed request is told to wait before trying again.
RETRY_AFTER = 1
#: The web console's files, and the headers they are sent with.
CONSOLE_DIR = Path(__file__).parent / "console"
CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


class _State:
    """The current model, swapped whole on each update; ``lock`` serialises the updates.

    An update is one journal entry in the model folder, flushed to disk before it is
    acknowledged. When the journal outgrows its snapshot, a background thread writes a new one
    from the current model without holding the lock, then takes it only to install the snapshot
    (moving the entries appended meanwhile): neither predictions nor updates wait for the write.
    """

    def __init__(
        self,
        model: FewShotModel,
        model_dir: str | os.PathLike[str],
        read_only: bool,
        on_update: Callable[[FewShotModel], None],
    ) -> None:
        self.model = model
        self.model_dir = model_dir
        self.read_only = read_only
        self.on_update = on_update  # told of each model swapped in (the metrics' labels)
        self.lock = threading.Lock()
        self.compacting: threading.Thread | None = None

    def update(self, change: Callable[[FewShotModel], object]) -> FewShotModel:
        """Apply ``change`` to a copy of the model, commit it to the folder, then swap it in.

        If ``change`` or the commit fails, the served model and the folder stay as they were.
        """
        if self.read_only:
            raise HTTPException(403, "this server is read-only: updates are disabled")
        with self.lock:
            new = self.model.copy()
            _library(lambda: change(new))
            try:
                new.commit(self.model_dir, compact=False)
            except (OSError, ValueError) as err:  # the reason, never the server's paths
                reason = (
                    err.strerror or type(err).__name__
                    if isinstance(err, OSError)
                    else "the folder was changed by another writer"
                )
                raise HTTPException(
                    500, f"the update could not be saved ({reason}), so the model is unchanged"
                ) from err
            self.model = new
            self.on_update(new)
            if self.compacting is None and new.needs_compaction(self.model_dir):
                self.compacting = threading.Thread(
                    target=self._compact, name="protoshot-compaction", daemon=True
                )
                self.compacting.start()
            return new

    def _compact(self) -> None:
        """Fold the journal into a new snapshot of the current model (see the class)."""
        try:
            with self.lock:
                model = self.model
            compaction = model.classifier.write_snapshot(self.model_dir)
            with self.lock:
                self.model.classifier.install_snapshot(self.model_dir, compaction)
        except (OSError, ValueError) as err:  # the journal stays: it is replayed as it is
            log.warning("compaction of %s failed, the journal is kept: %s", self.model_dir, err)
        finally:
            self.compacting = None

    def wait_for_compaction(self) -> None:
        """Let a compaction under way finish (at shutdown)."""
        running = self.compacting
        if running is not None:
            running.join()


def create_app(
    model_dir: str | os.PathLike[str],
    *,
    device: str | None = None,
    cache: CacheArg = True,
    max_batch: int = 256,
    max_body_bytes: int = 32 * 2**20,
    budget: Budget | None = None,
    max_waiting: int | None = None,
    read_only: bool = False,
    allow_download: bool = False,
    max_in_flight: int = 32,
    api_keys: Sequence[str] = (),
    protect_all: bool = False,
    cors_origins: Sequence[str] = (),
    index: str | None = None,
) -> FastAPI:
    """A FastAPI app serving the FewShotModel saved in ``model_dir``.

    Parameters
    ----------
    model_dir : path
        Written by ``protoshot fit`` or :meth:`FewShotModel.save`; updates are saved back to it.
        The app holds the folder (see :class:`protoshot.store.FolderLock`) until it shuts down, so a
        second server or a ``protoshot add`` / ``remove`` / ``calibrate`` of the same folder is refused.
    device, cache
        Passed to :meth:`FewShotModel.load`.
    max_batch : int
        Most items per request (more answer 422), and per forward pass.
    max_body_bytes : int
        Largest request body (larger ones answer 413).
    budget : Budget, optional
        Characters of text and decoded pixels one request may hold in all (more answer 413);
        its ``items`` is ``max_batch``.
    max_waiting : int, optional
        Most items waiting to be embedded; a request beyond it answers 503 with
        ``Retry-After`` (default ``4 * max_batch``).
    read_only : bool
        Serve predictions only (updates answer 403); also when ``model_dir`` is not writable.
    allow_download : bool
        Let the folder's embedder be fetched from a model hub (see :meth:`FewShotModel.load`).
    max_in_flight : int
        Most requests in progress at once; the next answer 503 with ``Retry-After`` at once
        (:mod:`protoshot.service.admission`), so the wait of those let in stays bounded.
    api_keys, protect_all
        With keys, updates need one (every route but the probes with ``protect_all``); see
        :class:`~protoshot.service.operations.ApiKeys`.
    cors_origins
        Origins a browser may call the API from (none by default).
    index : {"auto", "flat", "ivf"}, optional
        Answer predictions through a prototype index (:meth:`FewShotModel.use_index`, faiss),
        for 10^5 classes and more: probabilities are over the retrieved candidates.

    Raises
    ------
    FileNotFoundError, ValueError
        If ``model_dir`` holds no model, a corrupt one, or one from a newer protoshot.
    FolderInUseError
        If another process serves or updates ``model_dir``.
    """
    budget = replace(budget or Budget(), items=max_batch)
    api_keys = check_keys(api_keys)  # refused now, not at the first request
    read_only = read_only or not os.access(model_dir, os.W_OK)
    model = FewShotModel.load(model_dir, device=device, cache=cache, allow_download=allow_download)
    if index is not None:
        model.use_index(index)
    metrics = Metrics(
        queue_depth=lambda: batcher.waiting, classes=lambda: len(state.model.classes),
        last_update=lambda: float(state.model.classifier.updated_.max()),
    )  # fmt: skip
    metrics.describe(model)
    state = _State(model, model_dir, read_only, on_update=metrics.describe)
    lock = None if read_only else FolderLock(model_dir, "protoshot serve")
    # the embedder never changes (updates swap the classifier), so one batcher serves all models
    waiting = 4 * max_batch if max_waiting is None else max_waiting

    def embed_pass(items: list[Any]) -> np.ndarray:
        metrics.batch.observe(len(items))
        return state.model.embed(items)  # texts of similar lengths are run together

    batcher = MicroBatcher(embed_pass, max_items=max_batch, max_waiting=waiting)
    ready = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.model.embed([_warm_up_item(state.model.embedder.modality)])  # first pass is slow
        ready.set()
        yield
        batcher.close()
        state.wait_for_compaction()
        if lock is not None:
            lock.release()

    app = FastAPI(
        title="protoshot",
        version=__version__,
        description="Few-shot classification with prototypes over frozen embeddings. Updates "
        "are saved to the model folder before they are acknowledged.",
        lifespan=lifespan,
        docs_url=None,  # served below from the package's own assets: no CDN, works offline
        redoc_url=None,
    )
    _offline_docs(app)
    _console(app)
    admission = Admission(max_in_flight, RETRY_AFTER)
    # the first added is the innermost: metrics see every answer, CORS answers a browser's
    # preflight before the key check, the body is read (within its limit) before a request
    # counts against the admission limit, and uploads become the JSON request last
    app.add_middleware(MultipartPredict)
    app.add_middleware(AdmissionLimit, admission=admission)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(ApiKeys, keys=list(api_keys), protect_all=protect_all)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"],
            allow_headers=["*"],
        )  # fmt: skip
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(Exception)(_internal_error)
    app.state.read_only = read_only

    def embed(items: list[Any]) -> np.ndarray:
        try:
            return _library(lambda: batcher.embed(items))
        except Overloaded as err:
            raise _overloaded(err) from err

    async def classify(model: FewShotModel, items: list[Any], top_k: int) -> list[Prediction]:
        """``items`` embedded and classified by ``model`` in the micro-batcher's next pass,
        awaited on the event loop (no worker thread waits for the pass)."""
        try:
            return await asyncio.wrap_future(batcher.submit(items, _Classify(model, top_k)))
        except Overloaded as err:
            raise _overloaded(err) from err
        except (ValueError, TypeError) as err:
            raise HTTPException(422, str(err)) from err

    @app.get("/healthz", response_model=Health)
    def healthz() -> dict[str, Any]:
        """Liveness, and the micro-batcher's counts (requests served by how many passes)."""
        return {
            "status": "ok",
            "classes": len(state.model.classes),
            "embedding_passes": batcher.passes,
            "embedded_requests": batcher.requests,
            "shed_requests": batcher.shed + admission.shed,
            "read_only": state.read_only,
        }

    @app.get("/readyz", responses={503: _error("Still loading or warming up the model")})
    def readyz() -> dict[str, str]:
        """Readiness: the model and its embedder are loaded and have embedded once (put a load
        balancer behind this; ``/healthz`` is liveness)."""
        if not ready.is_set():
            raise HTTPException(503, "warming up")
        return {"status": "ready"}

    @app.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics: requests by route and status, latency, embedding batch sizes,
        queue depth, shed requests, class count."""
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

    @app.get("/v1/classes", response_model=ClassesResponse)
    def list_classes() -> dict[str, Any]:
        """The classes, their shot counts and when each last changed."""
        model = state.model
        updated = model.class_updated()
        return {
            "classes": [
                {"name": k, "shots": v, "updated": updated[k]}
                for k, v in model.class_counts().items()
            ],
            "model": _info(model),
        }

    @app.get(
        "/v1/classes/{name:path}",
        response_model=ClassDetail,
        responses={404: _error("No such class"), 422: _INVALID},
    )
    def get_class(name: str) -> dict[str, Any]:
        """One class: its shots, when it last changed, whether a name or description is its
        prior."""
        model = state.model
        label = _library(lambda: model.as_class_values([name])[0])
        if label not in model.classes:
            raise HTTPException(404, f"no class {name!r}")
        position = model.classes.index(label)
        named = bool(model.classifier.named_[position])
        return {
            "name": label,
            "shots": model.class_counts()[label],
            "updated": model.class_updated()[label],
            "described": named,
            "model": _info(model),
        }

    @app.post("/v1/predict", response_model=PredictResponse, responses=_READ_ERRORS)
    async def predict(body: PredictRequest) -> dict[str, Any]:
        """Classify a batch of texts or base64 images; or upload image files as
        ``multipart/form-data`` (any field names, and an optional ``top_k`` field)."""
        model = state.model  # one consistent model for the whole request
        items = await _request_items(body, model.embedder, budget)
        predictions = await classify(model, items, body.top_k)
        return {"predictions": [p.to_dict() for p in predictions], "model": _info(model)}

    @app.post(
        "/v1/classes/{name:path}/examples", response_model=UpdateResponse, responses=_ADD_ERRORS
    )
    def add_examples(name: str, body: Items) -> dict[str, Any]:
        """Add shots to class `name` (created if new); saved to the model folder before the answer."""
        if state.read_only:  # refused before any work
            raise HTTPException(403, "this server is read-only: updates are disabled")
        vectors = embed(request_items(body, state.model.embedder, budget=budget))
        label = _library(lambda: state.model.as_class_values([name])[0])
        new = state.update(lambda m: m.add_embeddings(vectors, [label] * len(vectors)))
        return {"name": label, "shots": new.class_counts()[label], "classes": len(new.classes)}

    @app.put(
        "/v1/classes/{name:path}/description",
        response_model=UpdateResponse,
        responses=_ADD_ERRORS,
    )
    def describe_class(name: str, body: Description) -> dict[str, Any]:
        """Describe class `name` in words (text models): a new class needs no shots when the
        method uses names (zero-shot); saved to the model folder before the answer."""
        if state.model.embedder.modality != "text":
            raise HTTPException(422, "descriptions need a text model")
        label = _library(lambda: state.model.as_class_values([name])[0])
        new = state.update(lambda m: m.add_descriptions({label: body.text}))
        return {"name": label, "shots": new.class_counts()[label], "classes": len(new.classes)}

    @app.delete(
        "/v1/classes/{name:path}",
        response_model=UpdateResponse,
        responses=_REMOVE_ERRORS,
    )
    def remove_class(name: str) -> dict[str, Any]:
        """Remove class `name`; saved to the model folder before the answer."""
        label = _library(lambda: state.model.as_class_values([name])[0])

        def remove(model: FewShotModel) -> None:  # checked on the model the lock holds
            if label not in model.classes:
                raise HTTPException(404, f"no class {name!r}")
            if len(model.classes) == 1:
                raise HTTPException(409, f"{name!r} is the last class; a model needs at least one")
            model.remove_classes([label])

        new = state.update(remove)
        return {"name": label, "shots": 0, "classes": len(new.classes)}

    return app


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the assets of the ``swagger-ui-bundle`` package, so the page
    works where no CDN can be reached."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), "docs")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="protoshot API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def _console(app: FastAPI) -> None:
    """The web console at ``/``: static files shipped in the package (no build step, no CDN)
    that call the API from the browser, so they hold no data and need no key themselves. They
    may not be framed by another site (a framed page could be clicked into removing a class)
    and load nothing from elsewhere."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    class ConsoleFiles(StaticFiles):
        def file_response(self, *args: Any, **kwargs: Any) -> Response:
            response = super().file_response(*args, **kwargs)
            response.headers.update(CONSOLE_HEADERS)
            return response

    app.mount("/console", ConsoleFiles(directory=CONSOLE_DIR), "console")

    @app.get("/", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(CONSOLE_DIR / "index.html", headers=CONSOLE_HEADERS)


def _warm_up_item(modality: str) -> Any:
    """One small item of the embedder's kind, to make its first (slowest) pass at start-up."""
    if modality == "image":
        from PIL import Image

        return Image.new("RGB", (32, 32))
    return "ready"


@dataclass(frozen=True)
class _Classify:
    """Classify vectors with ``model`` at ``top_k``: the requests of one embedding pass that
    share both are classified in one call (see :mod:`protoshot.service.batching`)."""

    model: FewShotModel
    top_k: int

    def __call__(self, vectors: np.ndarray) -> list[Prediction]:
        with _one_torch_thread():
            return self.model.predict_embeddings(vectors, top_k=self.top_k)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Let torch use one thread in the block, then as many as before.

    The classifier's tensors are small (a pass's vectors against the prototypes). Spread over
    torch's threads, which must wait for cores the embedder and the event loop are using, a
    small classification waits far longer than it computes.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


async def _request_items(body: Items, embedder: Embedder, budget: Budget) -> list[Any]:
    """:func:`request_items` for a handler on the event loop: texts are checked there (that
    is cheap), images are decoded in a worker thread (that can take seconds)."""
    if body.images is None:
        return request_items(body, embedder, budget=budget)
    return await run_in_threadpool(request_items, body, embedder, budget=budget)


def _overloaded(err: Overloaded) -> HTTPException:
    """The 503 for a request the micro-batcher's queue has no room for."""
    return HTTPException(
        503, f"overloaded: {err}; retry later", headers={"Retry-After": str(RETRY_AFTER)}
    )


def _info(model: FewShotModel) -> dict[str, Any]:
    return {
        "embedder": model.embedder.spec,
        "method": model.method,
        "modality": model.embedder.modality,
        "classes": len(model.classes),
        "threshold": model.threshold,
    }


def _library(call: Callable[[], T]) -> T:
    """Run a library call; its ValueError/TypeError become a 422 with the message."""
    try:
        return call()
    except (ValueError, TypeError) as err:
        raise HTTPException(422, str(err)) from err


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything unexpected: a one-line JSON 500 that names the kind of failure, never the
    server's paths or a traceback (those go to the server's log). Updates swap the model in
    only after they are saved, so an error leaves the model as it was."""
    detail = f"internal error ({type(exc).__name__}); the model is unchanged"
    return JSONResponse({"detail": detail}, status_code=500)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Pydantic's validation errors as one line: ``body.top_k: Input should be ...``."""
    messages = []
    for error in exc.errors():
        if error["type"] == "json_invalid":
            reason = error.get("ctx", {}).get("error", "")
            messages.append(f"the body is not valid JSON: {reason}")
        else:
            messages.append(f"{'.'.join(map(str, error['loc']))}: {error['msg']}")
    return JSONResponse({"detail": "; ".join(messages)}, status_code=422)
