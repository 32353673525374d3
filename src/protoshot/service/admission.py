"""Admission control: at most ``max_in_flight`` requests are let in at once; the next ones are
answered 503 with ``Retry-After`` at once (load shedding, as production inference servers do).

Without it, a flood of clients queues in front of the worker threads, where nothing bounds the
wait: every request gets slower and throughput falls. With it, the requests let in are served
at the pace of an unloaded server, and the others learn at once to come back later.
The probes (``/healthz``, ``/readyz``, ``/metrics``) are always let in, so a loaded server still
answers them; and a request counts once its body is in (the body limit reads it first), so
clients that stall their uploads cannot hold the slots.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from protoshot.service.operations import PROBES


@dataclass
class Admission:
    """The limit, and the counts ``/healthz`` reports (changed on the event loop's thread
    only, where every ASGI call starts, so they need no lock)."""

    max_in_flight: int
    retry_after: int = 1
    in_flight: int = 0
    shed: int = 0


class AdmissionLimit:
    """ASGI middleware: refuse requests beyond ``admission.max_in_flight`` with a JSON 503."""

    def __init__(self, app: ASGIApp, *, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        state = self.admission
        if state.in_flight >= state.max_in_flight:
            state.shed += 1
            detail = (
                f"overloaded: {state.in_flight} requests in progress (limit "
                f"{state.max_in_flight}); retry later"
            )
            response = JSONResponse(
                {"detail": detail},
                status_code=503,
                headers={"Retry-After": str(state.retry_after)},
            )
            await response(scope, receive, send)
            return
        state.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            state.in_flight -= 1
