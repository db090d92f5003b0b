"""Every request body is capped while it streams, whatever its content type.

The cap is enforced on the ASGI receive channel, under every route: a declared Content-Length over the cap is
refused at the first read, before a byte of the body is taken, and a body without one (chunked) is cut off as soon
as it passes the cap. A route that never reads its body never buffers it. What went wrong is raised as BodyTooLarge
inside the route, so errors.py renders it like any other refusal (413).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(ValueError):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._max_bytes = max_bytes

    def _declared_length(self, scope: Scope) -> int | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return int(value) if value.isdigit() else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._max_bytes
        declared = self._declared_length(scope)
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            if declared is not None and declared > limit:
                raise BodyTooLarge(f"request bodies are limited to {limit} bytes; this one declares {declared}")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(f"request bodies are limited to {limit} bytes")
            return message

        await self._app(scope, capped_receive, send)
