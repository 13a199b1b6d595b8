"""Bearer-token middleware: every route but the health probes needs `Authorization: Bearer TOKEN`."""

from __future__ import annotations

import hmac

from infertune.serve.codec import error_body

OPEN_PATHS = ("/v2/health/",)


class BearerToken:
    """Pure ASGI, so it costs one header lookup per request."""

    def __init__(self, app, token: str):
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, token = given.strip().partition(b" ")
        # the scheme is case-insensitive (RFC 7235); the token is compared in constant time
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.expected):
            return await self.app(scope, receive, send)
        message = ("missing Authorization header: send 'Authorization: Bearer <token>'" if not given else
                   "wrong token in the Authorization header" if scheme.lower() == b"bearer" else
                   "the Authorization header must use the Bearer scheme: 'Authorization: Bearer <token>'")
        body = error_body(message)
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})
