"""Request body size limit: an ASGI middleware answering 413 problem+json before a
hostile or mistaken client makes the node buffer (or parse) megabytes.

Bodies with a ``Content-Length`` above the limit are refused without reading; chunked
bodies are read up to the limit and refused when they cross it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.api.problems import problem
from cloud.errors import PayloadTooLarge


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False  # the server rejects a malformed header itself
            if too_large:
                await self._refuse(scope, receive, send)
                return
        if declared is not None or scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # A streamed body: read it up to the limit first (the app would buffer it anyway
        # to parse it), then replay it; an exception raised from ``receive`` would reach
        # the app's body parser and come out as a vague 400.
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replaying_receive() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replaying_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"the request body exceeds the limit of {self.max_bytes} bytes")
        response = problem(
            error.status, title=error.title, detail=error.detail, type_=error.type,
            instance=scope.get("path"),
        )
        await response(scope, receive, send)
