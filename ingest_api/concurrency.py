"""A bound on the requests one API process works on at once.

Past the bound a request is answered at once (503 OVERLOADED, Retry-After) instead of queueing inside the process,
where each would hold its body, its parsed events and its connection. Liveness (/health) is exempt: the load
balancer must not take a busy replica for a dead one.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send


class Overloaded(RuntimeError):
    """The process is already working on as many requests as it takes."""


class ConcurrencyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_requests: int,
        reject: Callable[[Overloaded], Response],
        exempt_paths: frozenset[str] = frozenset(),
    ) -> None:
        self._app = app
        self._max_requests = max_requests
        self._reject = reject
        self._exempt_paths = exempt_paths
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._exempt_paths:
            await self._app(scope, receive, send)
            return
        if self.in_flight >= self._max_requests:
            response = self._reject(Overloaded(f"this replica is serving {self.in_flight} requests; retry shortly"))
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self.in_flight -= 1
