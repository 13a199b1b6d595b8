"""Bearer-token middleware: every route but the health probes needs `Authorization: Bearer TOKEN`."""

from __future__ import annotations

import hmac

from infertune.serve.codec import error_body

OPEN_PATHS = ("/v2/health/",)


class BearerToken:
    """Pure ASGI, so it costs one header lookup per request."""

    def __init__(self, app, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        message = ("missing Authorization header: send 'Authorization: Bearer <token>'" if not given else
                   "wrong token in the Authorization header")
        body = error_body(message)
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})
