"""Multipart uploads on ``/v1/predict``: ``curl -F file=@a.png -F file=@b.png -F top_k=3``.

The files become the base64 ``images`` of the JSON request (and a ``top_k`` field its
``top_k``), so one route, one schema and one set of checks serve both: the same budgets, the
same errors, the same answers.
"""

from __future__ import annotations

import base64
import json

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from protoshot.service.body_limit import replay

#: The route that takes uploads.
PREDICT = "/v1/predict"


class MultipartPredict:
    """ASGI middleware: a multipart ``POST /v1/predict`` is turned into its JSON form."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        if scope["type"] != "http" or scope["path"] != PREDICT or not multipart:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            form = await request.form()
        except Exception as err:  # python-multipart's parse errors have several types
            await _invalid(f"the multipart body cannot be read: {err}", scope, receive, send)
            return
        files = [v for k, v in form.multi_items() if isinstance(v, UploadFile) and k != "top_k"]
        if not files:
            await _invalid("the multipart body holds no file", scope, receive, send)
            return
        body: dict[str, object] = {
            "images": [base64.b64encode(await f.read()).decode() for f in files]
        }
        top_k = form.get("top_k")
        if isinstance(top_k, str):
            body["top_k"] = top_k  # validated with the JSON request, like any other field
        data = json.dumps(body).encode()
        headers[b"content-type"] = b"application/json"
        headers[b"content-length"] = str(len(data)).encode()
        scope["headers"] = list(headers.items())  # in place: the metrics read the route set on it
        await self.app(scope, replay(data, receive), send)


async def _invalid(detail: str, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
