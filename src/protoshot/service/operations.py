"""What an operator needs around the model: API keys, Prometheus metrics.

- :class:`ApiKeys`: with keys set, the updates (or, with ``protect_all``, every route but the
  probes) need one, as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; a missing or
  wrong key answers 401 in JSON. Keys are compared in constant time.
- :class:`Metrics`: requests by route and status, their latency, embedding batch sizes, the
  queue, shed requests, the model (embedder, method, version), its class count and last update,
  in Prometheus' text format at ``/metrics``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Routes every caller may reach, past the key check and the admission limit: liveness,
#: readiness and the metrics scrape.
PROBES = ("/healthz", "/readyz", "/metrics")
#: The web console's page and files: they hold no data (the page calls the API, with the key
#: its user types), so a browser can load them before it has a key.
CONSOLE = ("/", "/console/")
#: Methods that change the model.
UPDATES = ("POST", "PUT", "DELETE")


class ApiKeys:
    """ASGI middleware: updates need a key (every route but :data:`PROBES` with
    ``protect_all``); ``/v1/predict`` is a read, though sent with POST."""

    def __init__(self, app: ASGIApp, *, keys: Sequence[str], protect_all: bool = False) -> None:
        self.app = app
        self.keys = [key.encode() for key in check_keys(keys)]
        self.protect_all = protect_all

    def _needs_key(self, scope: Scope) -> bool:
        path = scope["path"]
        if path in PROBES or path == CONSOLE[0] or path.startswith(CONSOLE[1]):
            return False
        if self.protect_all:
            return True
        return scope["method"] in UPDATES and path != "/v1/predict"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or not self._needs_key(scope):
            await self.app(scope, receive, send)
            return
        given = _presented_key(dict(scope["headers"]))
        # compare with every key, always, so the time taken says nothing about which matched
        matches = [hmac.compare_digest(given, key) for key in self.keys]
        if not any(matches):
            detail = (
                "an API key is needed: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
            if given:
                detail = "the API key is not valid"
            response = JSONResponse(
                {"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def check_keys(keys: Sequence[str]) -> list[str]:
    """The keys, trimmed (as presented keys are).

    Raises
    ------
    ValueError
        If one is empty: an empty key would match a request that sends none.
    """
    trimmed = [key.strip() for key in keys]
    if any(not key for key in trimmed):
        raise ValueError("an API key is empty: it would let every request in")
    return trimmed


def _presented_key(headers: dict[bytes, bytes]) -> bytes:
    bearer = headers.get(b"authorization", b"")
    if bearer[:7].lower() == b"bearer ":
        return bearer[7:].strip()
    return headers.get(b"x-api-key", b"").strip()


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(
        self,
        *,
        queue_depth: Callable[[], float],
        classes: Callable[[], float],
        last_update: Callable[[], float],
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "protoshot_requests", "HTTP requests by route and status", ["route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "protoshot_request_seconds", "HTTP request latency by route", ["route"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry,
        )  # fmt: skip
        self.batch = Histogram(
            "protoshot_embedding_batch_items", "Items per embedding pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry,
        )  # fmt: skip
        self.shed = Counter(
            "protoshot_shed_requests", "Requests refused with 503 (load shedding)",
            registry=self.registry,
        )  # fmt: skip
        Gauge(
            "protoshot_queue_items", "Items waiting to be embedded", registry=self.registry
        ).set_function(queue_depth)
        Gauge(
            "protoshot_classes", "Classes of the served model", registry=self.registry
        ).set_function(classes)
        Gauge(
            "protoshot_model_last_update_timestamp_seconds",
            "When a class of the served model last changed (Unix time; 0 if not recorded)",
            registry=self.registry,
        ).set_function(last_update)
        self.model = Info(
            "protoshot_model", "The served model: embedder, method, version", registry=self.registry
        )

    def describe(self, model: Any) -> None:
        """Label ``protoshot_model_info`` with the served model (again after each update)."""
        from protoshot import __version__

        self.model.info({
            "embedder": model.embedder.spec, "fingerprint": model.embedder.fingerprint[:12],
            "method": model.method, "protoshot_version": __version__,
        })  # fmt: skip

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware: count and time every request by its route template (``/v1/classes/
    {name}/examples``, never the raw path, so names do not explode the label set)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            if status == 503:
                self.metrics.shed.inc()
